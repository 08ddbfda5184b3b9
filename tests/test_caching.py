"""Prompt caching that pays: the tools and the persona form a stable prefix above the model's
caching minimum, so from the second turn (of any user) the request reads it from the cache.
Through the real Coach and anthropic SDK against the fake API, asserting on what is stored
with each reply; and the price arithmetic the bench reports."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.commands import run_command
from core.caching import Prices, cache_min_tokens, prefix_tokens
from core.models import Role, Usage
from core.persona import Persona
from core.proposals import TOOLS
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic, Reply, ToolUse
from tests.support import FakeClock, coach_on, collect, make_settings, person

# Real tokenizers count English at more tokens than characters / 4, but leave a margin anyway:
# a persona edit that brings the prefix near the minimum should fail here, not in production.
MARGIN = 1.25


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(str(tmp_path / "coach.db"))
    yield store
    await store.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    settings = make_settings()
    async with FakeAnthropic(cache_min_tokens=settings.cache_min_tokens) as fake:
        yield fake


async def usages(store: SQLiteStore, user_id: str) -> list[Usage]:
    """What each stored reply says it used, oldest first."""
    messages = await store.recent_messages(user_id, 100)
    replies = [m for m in messages if m.role is Role.ASSISTANT]
    return [m.meta.usage for m in replies if m.meta.usage is not None]


def test_the_default_prefix_clears_the_default_models_minimum() -> None:
    settings = make_settings(anthropic_model="claude-sonnet-5-5")
    persona = Persona.load()
    prefix = prefix_tokens(TOOLS, [{"type": "text", "text": persona.prompt}])
    assert settings.cache_min_tokens == 1024
    assert prefix >= MARGIN * settings.cache_min_tokens, prefix


def test_the_minimum_follows_the_model_family_unless_set() -> None:
    assert cache_min_tokens("claude-haiku-5-5") == 2048
    assert cache_min_tokens("claude-opus-5-5") == cache_min_tokens("claude-sonnet-5-5") == 1024
    assert make_settings(anthropic_model="claude-haiku-5-5").cache_min_tokens == 2048
    assert make_settings(anthropic_cache_min_tokens=4096).cache_min_tokens == 4096


async def test_from_the_second_turn_every_user_reads_the_prefix_from_the_cache(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    clock = FakeClock()
    async with coach_on(store, fake.base_url, clock) as coach:
        ana, ben = person("ana"), person("ben")
        await run_command(coach, ana, "/goal add Run a 5k by March")
        await collect(coach, ana, "Hi Rally, I want to get fit")
        clock.advance(minutes=2)
        await collect(coach, ana, "Three runs a week sounds right")
        await run_command(coach, ben, "/timezone Asia/Tokyo")
        await run_command(coach, ben, "/goal add Write 500 words a day")
        clock.advance(minutes=3)
        await collect(coach, ben, "Morning! Let's plan my writing")
        ana_usage = await usages(store, (await coach.user(ana)).id)
        ben_usage = await usages(store, (await coach.user(ben)).id)

    first, second = ana_usage
    assert first.cache_creation_input_tokens >= fake.cache_min_tokens
    assert first.cache_read_input_tokens == 0
    assert second.cache_creation_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    # Another user, with other goals, timezone and time: the same prefix, read from the cache.
    (ben_first,) = ben_usage
    assert ben_first.cache_read_input_tokens == first.cache_creation_input_tokens
    assert ben_first.cache_creation_input_tokens == 0
    # What is not cached (the per-user block and the conversation) is the smaller part.
    assert second.input_tokens < second.cache_read_input_tokens


async def test_nothing_per_user_or_time_varying_is_in_the_cached_prefix(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    clock = FakeClock()
    async with coach_on(store, fake.base_url, clock) as coach:
        for name, goal in (("U0ANA", "Run a 5k by March"), ("U0BEN", "Write 500 words a day")):
            await run_command(coach, person(name), f"/goal add {goal}")
            await collect(coach, person(name), f"hello from {name}")
            clock.advance(hours=5)
    ana, ben = (request.body for request in fake.requests)
    assert ana["tools"] == ben["tools"] == TOOLS
    assert ana["system"][0] == ben["system"][0]  # the block carrying the cache mark
    marks = [i for i, block in enumerate(ana["system"]) if "cache_control" in block]
    assert marks == [0]
    prefix = str(ana["tools"]) + ana["system"][0]["text"]
    for per_user in ("Run a 5k", "Write 500", "U0ANA", "U0BEN", "2026", "UTC", "Active goals"):
        assert per_user not in prefix, per_user
    assert "Run a 5k" in ana["system"][1]["text"] and "Write 500" in ben["system"][1]["text"]


async def test_a_proposal_rounds_second_request_reads_the_cache_too(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    fake.enqueue(
        ToolUse((("propose_goal", {"text": "Run a 5k by March"}),), text="Love it!"),
        Reply("Tap confirm when it looks right."),
    )
    async with coach_on(store, fake.base_url) as coach:
        me = person()
        await collect(coach, me, "I want to run a 5k by March")
        (usage,) = await usages(store, (await coach.user(me)).id)
    # Two rounds, summed: the first wrote the prefix, the second (after the tool result) read it.
    assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens > 0


async def test_a_persona_under_the_minimum_is_not_cached_and_says_so(
    store: SQLiteStore, fake: FakeAnthropic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    short = tmp_path / "persona.md"
    short.write_text("# Persona\nYou are Tess, a brisk coach.\n\n# Welcome\nHi from Tess!\n")
    # Without the tools' share: a short persona can still clear the minimum with many tools.
    minimum = prefix_tokens(TOOLS, []) + 100
    fake.cache_min_tokens = minimum
    with caplog.at_level(logging.WARNING, logger="core.caching"):
        async with coach_on(
            store, fake.base_url, persona_path=short, anthropic_cache_min_tokens=minimum
        ) as coach:
            me = person()
            await collect(coach, me, "one")
            await collect(coach, me, "two")
            found = await usages(store, (await coach.user(me)).id)
    assert "prompt caching will not apply" in caplog.text
    assert all(u.cache_creation_input_tokens == u.cache_read_input_tokens == 0 for u in found)


def test_cost_with_and_without_caching_at_list_prices() -> None:
    prices = make_settings().prices
    assert prices == Prices(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)
    turn = Usage(
        input_tokens=200, cache_read_input_tokens=1800, cache_creation_input_tokens=0,
        output_tokens=100,
    )
    assert prices.cost(turn) == pytest.approx((200 * 3 + 1800 * 0.3 + 100 * 15) / 1e6)
    assert prices.cost_uncached(turn) == pytest.approx((2000 * 3 + 100 * 15) / 1e6)
    written = Usage(input_tokens=200, cache_creation_input_tokens=1800, output_tokens=100)
    assert prices.cost(written) > prices.cost_uncached(written)  # a write costs 1.25x
