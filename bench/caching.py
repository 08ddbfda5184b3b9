"""Prompt caching, measured: a coaching conversation of N turns and a second user's, through
the real Coach (real SQLite store, real anthropic SDK) against the fake Anthropic, which
caches the tools + persona prefix as the API does (tests/fakes/anthropic_api.py: characters
/ 4, above the model's minimum). Per turn: the input, cache-write, cache-read and output
tokens the reply stored; then the share of input read from the cache from turn 2 on and the
cost per 100 turns at the list prices in the settings, with the cache and without it.

    python -m bench --sections caching --out /tmp/caching    # this section alone
"""

from __future__ import annotations

import tempfile
from contextlib import aclosing
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core.caching import prefix_tokens
from core.coach import Coach
from core.config import Settings
from core.events import Done
from core.models import Identity, Platform, Role, Usage
from core.persona import Persona
from core.proposals import TOOLS
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic, Reply, ToolUse
from tests.support import FakeClock, make_llm

# What the users say, in turn; a conversation longer than this goes round again.
LINES = (
    "Hi Rally! I want to get fit this year but I never stick with it.",
    "Running, I think. I used to run at school.",
    "Let's make it a goal: run 5 km without stopping by the end of March.",
    "Three runs a week feels like a lot. Maybe two?",
    "Tuesday and Saturday mornings, before work.",
    "What if it rains? That is usually where it falls apart.",
    "OK: on a rainy day I do 20 minutes of stairs at home instead.",
    "I did my first run! 2 km, walked a bit in the middle.",
    "My knees were a bit sore the day after. Is that normal?",
    "Let's talk again on Friday to see how the week went.",
)
REPLY = (
    "That is a great start, and it is realistic. Here is what I hear: you want a goal you can "
    "feel this month, and a plan small enough that a busy week does not break it. Let's pin "
    "the next step down: **two runs this week, 20 minutes each**, easy pace, walking breaks "
    "allowed. Which two mornings can you protect?"
)
GOAL_LINE = 2  # the line on which the coach proposes the goal (two rounds, one turn)
SECOND_USER_TURNS = 3


def _settings(workdir: Path) -> Settings:
    # The model, its prices and minimum from the environment (or their defaults), no .env.
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        anthropic_api_key=SecretStr("bench-key"),
        anthropic_max_retries=0,
        database_url=f"sqlite:///{workdir / 'bench.db'}",
    )


async def _turn(coach: Coach, store: SQLiteStore, who: Identity, text: str) -> Usage:
    async with aclosing(coach.reply(who, text)) as events:
        done = [event async for event in events if isinstance(event, Done)]
    assert done, f"no reply to {text!r}"
    user = await coach.user(who)
    (stored,) = await store.recent_messages(user.id, 1)
    assert stored.role is Role.ASSISTANT and stored.meta.usage is not None
    return stored.meta.usage


def _row(turn: int, user: str, usage: Usage, settings: Settings) -> dict[str, Any]:
    total_input = (
        usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    )
    return {
        "turn": turn,
        "user": user,
        "input": usage.input_tokens,
        "cache_write": usage.cache_creation_input_tokens,
        "cache_read": usage.cache_read_input_tokens,
        "output": usage.output_tokens,
        "read_share": round(usage.cache_read_input_tokens / total_input, 3),
        "cost_usd": settings.prices.cost(usage),
        "cost_uncached_usd": settings.prices.cost_uncached(usage),
    }


async def run_caching(turns: int) -> dict[str, Any]:
    """`turns` turns of one user, then SECOND_USER_TURNS of another; the figures."""
    with tempfile.TemporaryDirectory(prefix="momentum-caching-") as workdir:
        settings = _settings(Path(workdir))
        persona = Persona.load(settings.persona_path)
        store = await SQLiteStore.open(str(Path(workdir) / "bench.db"))
        clock = FakeClock()
        rows: list[dict[str, Any]] = []
        try:
            async with FakeAnthropic(cache_min_tokens=settings.cache_min_tokens) as fake:
                llm = make_llm(settings, fake.base_url)
                coach = Coach(store, llm, persona, settings, clock=clock)
                plan = [("A", n) for n in range(turns)]
                plan += [("B", n) for n in range(SECOND_USER_TURNS)]
                for turn, (user, n) in enumerate(plan, start=1):
                    if n % len(LINES) == GOAL_LINE:
                        goal = {"text": "Run 5 km without stopping by the end of March"}
                        fake.enqueue(ToolUse((("propose_goal", goal),), text="Love it!"))
                    fake.enqueue(Reply(REPLY))
                    who = Identity(platform=Platform.CONSOLE, external_id=f"bench-{user}")
                    usage = await _turn(coach, store, who, LINES[n % len(LINES)])
                    rows.append(_row(turn, user, usage, settings))
                    clock.advance(minutes=1)  # turns a minute apart: within the cache's 5 min
                await llm.aclose()
        finally:
            await store.close()
    return _figures(rows, settings, persona)


def _figures(rows: list[dict[str, Any]], settings: Settings, persona: Persona) -> dict[str, Any]:
    later = rows[1:]
    read = sum(r["cache_read"] for r in later)
    total = sum(r["input"] + r["cache_write"] + r["cache_read"] for r in later)
    per_turn = sum(r["cost_usd"] for r in rows) / len(rows)
    per_turn_uncached = sum(r["cost_uncached_usd"] for r in rows) / len(rows)
    prices = settings.prices
    return {
        "model": settings.anthropic_model,
        "prices_per_mtok": {
            "input": prices.input, "output": prices.output,
            "cache_write": prices.cache_write, "cache_read": prices.cache_read,
        },
        "cache_min_tokens": settings.cache_min_tokens,
        "prefix_tokens": prefix_tokens(TOOLS, [{"type": "text", "text": persona.prompt}]),
        "turns": rows,
        "turns_reading_cache_from_2": sum(1 for r in later if r["cache_read"] > 0),
        "read_share_from_turn_2": round(read / total, 3) if total else 0.0,
        "cost_per_100_turns_usd": {
            "cached": round(100 * per_turn, 4),
            "uncached": round(100 * per_turn_uncached, 4),
            "saving": round(1 - per_turn / per_turn_uncached, 3) if per_turn_uncached else 0.0,
        },
    }
