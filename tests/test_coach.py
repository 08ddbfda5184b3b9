"""The Coach's reply, end to end: real SQLite store, real anthropic SDK, loopback fake API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bots.commands import AccessView, run_command
from core.coach import Coach
from core.events import Chunk, Denied, Done, Failed, Welcome
from core.models import Meeting, Phase, Role
from core.safety import SAFETY_REPLY
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import Drop, FakeAnthropic, HttpError, Stall, StreamError
from tests.support import FakeClock, coach_on, collect, person


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(str(tmp_path / "coach.db"))
    yield store
    await store.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def coach(store: SQLiteStore, fake: FakeAnthropic) -> AsyncIterator[Coach]:
    async with coach_on(store, fake.base_url) as coach:
        yield coach


def kinds(events: list[object]) -> list[str]:
    return [type(event).__name__ for event in events]


async def stored(coach: Coach, name: str = "U1") -> list[tuple[Role, str, bool]]:
    user = await coach.user(person(name))
    return [(m.role, m.text, m.complete) for m in await coach.store.messages_between(user.id)]


# First contact and the normal turn


async def test_first_message_gets_welcome_then_streamed_reply(coach: Coach) -> None:
    events = await collect(coach, person(), "Hi coach")
    assert kinds(events)[0] == "Welcome"
    assert "AI" in events[0].text and "/goal add" in events[0].text  # type: ignore[union-attr]
    assert kinds(events)[1:].count("Chunk") > 1  # streamed in pieces
    done = events[-1]
    assert isinstance(done, Done) and done.text == "Coach: Hi coach"
    assert "".join(e.text for e in events if isinstance(e, Chunk)) == done.text

    again = await collect(coach, person(), "Second")
    assert "Welcome" not in kinds(again)


async def test_reply_is_stored_with_metadata(coach: Coach, fake: FakeAnthropic) -> None:
    await collect(coach, person(), "Hello")
    user = await coach.user(person())
    messages = await coach.store.messages_between(user.id)
    assert [(m.role, m.text) for m in messages] == [
        (Role.USER, "Hello"),
        (Role.ASSISTANT, "Coach: Hello"),
    ]
    meta = messages[1].meta
    assert meta.model == "claude-sonnet-5-5" and meta.platform == "console"
    assert meta.stop_reason == "end_turn" and meta.latency_ms is not None
    assert meta.usage is not None and meta.usage.output_tokens > 0
    assert meta.usage.input_tokens > 0 and meta.first_token_ms is not None
    assert "temperature" not in fake.last_request.body


async def test_context_has_persona_phase_goals_local_time_and_last_ten_messages(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    clock = FakeClock()
    async with coach_on(store, fake.base_url, clock) as coach:
        me = person()
        await run_command(coach, me, "/timezone Asia/Kolkata")
        for n in range(7):
            await run_command(coach, me, f"/goal add goal number {n}")
        for n in range(6):  # 12 stored messages
            await collect(coach, me, f"message {n}")
            clock.advance(minutes=1)
        await collect(coach, me, "the new one")

    body = fake.last_request.body
    static, dynamic = body["system"]
    assert static["cache_control"] == {"type": "ephemeral"} and "Rally" in static["text"]
    assert "cache_control" not in dynamic
    assert "goal setting" in dynamic["text"]
    assert [line for line in dynamic["text"].splitlines() if line[:1].isdigit()] == [
        f"{n + 1}. goal number {n}" for n in range(5)
    ]
    assert "(Asia/Kolkata)" in dynamic["text"] and "14:36" in dynamic["text"]  # 09:06 UTC
    turns = [(m["role"], m["content"]) for m in body["messages"]]
    assert len(turns) == 11 and turns[-1] == ("user", "the new one")
    assert turns[0] == ("user", "message 1") and turns[-2] == ("assistant", "Coach: message 5")


async def test_current_meeting_is_in_context_and_on_the_stored_reply(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    clock = FakeClock()
    async with coach_on(store, fake.base_url, clock) as coach:
        me = person()
        await run_command(coach, me, "/goal add Ship it")
        await run_command(coach, me, "/schedule tomorrow 9am")
        assert isinstance(await run_command(coach, me, "/track"), AccessView)
        clock.advance(hours=23, minutes=45)  # 08:45 next day: window open
        events = await collect(coach, me, "Ready")
        assert isinstance(events[-1], Done)
        meeting = (await coach.meetings(me))[0]
        user = await coach.user(me)
        reply = (await coach.store.recent_messages(user.id, 1))[0]
    assert reply.meta.meeting_id == meeting.id
    assert "tracking" in fake.last_request.body["system"][1]["text"]
    assert (
        "Current meeting: Tue 24 Nov 2026, 09:00 (UTC), 45 minutes"
        in (fake.last_request.body["system"][1]["text"])
    )


# Access and safety


async def test_tracking_user_outside_window_is_denied_with_next_opening(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    async with coach_on(store, fake.base_url) as coach:
        me = person()
        await run_command(coach, me, "/timezone Europe/Paris")
        await run_command(coach, me, "/goal add Ship it")
        await run_command(coach, me, "/schedule tomorrow 9am")
        await run_command(coach, me, "/track")
        events = await collect(coach, me, "Are you there?")
    denied = events[-1]
    assert isinstance(denied, Denied) and not denied.standing.access.allowed
    assert "Tue 24 Nov 2026, 08:30 (Europe/Paris)" in denied.standing.describe()
    assert fake.requests == [] and await stored(coach) == []


async def test_tracking_without_meetings_says_how_to_schedule(coach: Coach) -> None:
    await coach.store.update_user((await coach.user(person())).id, phase=Phase.TRACKING)
    events = await collect(coach, person(), "hello?")
    assert isinstance(events[-1], Denied) and "/schedule" in events[-1].standing.describe()


async def test_crisis_gets_safety_reply_even_when_window_closed(
    coach: Coach, fake: FakeAnthropic
) -> None:
    await coach.store.update_user((await coach.user(person())).id, phase=Phase.TRACKING)
    events = await collect(coach, person(), "honestly I want to die")
    assert kinds(events) == ["SafetyReply"] and "988" in events[0].text  # no cheery welcome
    assert fake.requests == []
    assert await stored(coach) == [
        (Role.USER, "honestly I want to die", True),
        (Role.ASSISTANT, SAFETY_REPLY, True),
    ]
    assert kinds(await collect(coach, person(), "thanks"))[0] == "Welcome"  # comes next time


# Bad input


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
async def test_empty_message_is_refused_and_nothing_stored(coach: Coach, text: str) -> None:
    events = await collect(coach, person(), text)
    assert isinstance(events[-1], Failed) and events[-1].kind == "empty"
    assert await stored(coach) == []


async def test_too_long_message_is_refused_with_the_limit(coach: Coach) -> None:
    events = await collect(coach, person(), "x" * 4001)
    assert isinstance(events[-1], Failed) and "4,000" in events[-1].user_text
    assert await stored(coach) == []


async def test_repeated_event_id_gets_one_reply(coach: Coach, fake: FakeAnthropic) -> None:
    first = await collect(coach, person(), "Hi", event_id="Ev1")
    second = await collect(coach, person(), "Hi", event_id="Ev1")
    assert isinstance(first[-1], Done)
    assert kinds(second) == ["Failed"] and second[0].kind == "duplicate"  # type: ignore[union-attr]
    assert len(fake.requests) == 1 and len(await stored(coach)) == 2


async def test_unconfigured_coach_says_what_to_set_and_commands_still_work(
    store: SQLiteStore,
) -> None:
    async with coach_on(store, None) as coach:
        events = await collect(coach, person(), "hello")
        assert kinds(events) == ["Failed"] and "ANTHROPIC_API_KEY" in events[0].user_text
        assert not (await coach.user(person())).welcomed  # the welcome waits for a real reply
        result = await run_command(coach, person(), "/goal add Read more")
        assert "Read more" in str(result)


# The model failing, one way after another


async def test_overloaded_before_stream_tells_user_and_keeps_message(
    coach: Coach, fake: FakeAnthropic
) -> None:
    fake.enqueue(HttpError(529))
    events = await collect(coach, person(), "Hi")
    assert kinds(events)[-1] == "Failed" and "unavailable" in events[-1].user_text  # type: ignore[union-attr]
    assert await stored(coach) == [(Role.USER, "Hi", True)]


async def test_overload_is_retried_by_the_sdk_when_retries_allowed(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    fake.enqueue(HttpError(529, retry_after=0.05))
    async with coach_on(store, fake.base_url, anthropic_max_retries=1) as coach:
        events = await collect(coach, person(), "Hi")
    assert isinstance(events[-1], Done) and len(fake.requests) == 2


async def test_rate_limited_tells_user_to_retry_later(coach: Coach, fake: FakeAnthropic) -> None:
    fake.enqueue(HttpError(429, retry_after=30))
    events = await collect(coach, person(), "Hi")
    assert isinstance(events[-1], Failed) and events[-1].kind == "rate_limited"
    assert "try again in a minute" in events[-1].user_text
    assert await stored(coach) == [(Role.USER, "Hi", True)]


@pytest.mark.parametrize("fault", [StreamError(after=3), Drop(after=3)], ids=["error", "drop"])
async def test_failure_mid_stream_keeps_partial_reply_marked_incomplete(
    coach: Coach, fake: FakeAnthropic, fault: StreamError | Drop
) -> None:
    fake.reply = "One two three four five six seven eight nine ten"
    fake.enqueue(fault)
    events = await collect(coach, person(), "Tell me more")
    shown = "".join(e.text for e in events if isinstance(e, Chunk))
    assert shown and isinstance(events[-1], Failed) and events[-1].kind == "interrupted"
    messages = await stored(coach)
    assert messages[-2] == (Role.USER, "Tell me more", True)
    assert messages[-1] == (Role.ASSISTANT, shown, False)


async def test_stalled_stream_times_out_within_the_stall_limit(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    fake.enqueue(Stall(after=2, seconds=30))
    async with coach_on(store, fake.base_url, llm_stall_seconds=0.3) as coach:
        started = time.monotonic()
        events = await collect(coach, person(), "Hi there coach")
        elapsed = time.monotonic() - started
    assert elapsed < 3
    assert isinstance(events[-1], Failed) and events[-1].kind == "timeout"
    messages = await stored(coach)
    assert messages[-1][0] is Role.ASSISTANT and messages[-1][2] is False


async def test_whole_reply_deadline_applies_even_when_tokens_keep_coming(
    store: SQLiteStore, fake: FakeAnthropic
) -> None:
    fake.token_delay = 0.05
    fake.reply = "word " * 200
    async with coach_on(store, fake.base_url, llm_deadline_seconds=0.4) as coach:
        events = await collect(coach, person(), "Go")
    assert isinstance(events[-1], Failed) and events[-1].kind == "timeout"


async def test_old_temperature_setting_is_ignored_not_sent(
    store: SQLiteStore, fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    async with coach_on(store, fake.base_url, anthropic_temperature=0.7) as coach:
        coach.settings.warn_about_ignored()
        events = await collect(coach, person(), "Hi")
    assert isinstance(events[-1], Done)
    assert "temperature" not in fake.last_request.body
    assert "ANTHROPIC_TEMPERATURE=0.7 is ignored" in caplog.text


# Ordering


async def test_one_users_messages_are_answered_in_order_with_context(
    coach: Coach, fake: FakeAnthropic
) -> None:
    fake.token_delay = 0.01
    await collect(coach, person(), "warm up")  # welcome out of the way
    first, second = await asyncio.gather(
        collect(coach, person(), "first"), collect(coach, person(), "second")
    )
    assert isinstance(first[-1], Done) and isinstance(second[-1], Done)
    later = fake.requests[-1].body["messages"]
    assert [m["content"] for m in later[-3:]] == ["first", "Coach: first", "second"]
    texts = [text for _, text, _ in await stored(coach)]
    assert texts[-4:] == ["first", "Coach: first", "second", "Coach: second"]


async def test_different_users_are_served_concurrently(coach: Coach, fake: FakeAnthropic) -> None:
    fake.ttft = 0.2
    results = await asyncio.gather(*(collect(coach, person(f"U{n}"), "hi") for n in range(5)))
    assert all(isinstance(events[-1], Done) for events in results)
    # Every request reached the model before any reply finished: nobody waited in line.
    assert max(r.received_at for r in fake.requests) < min(r.finished_at for r in fake.requests)


async def test_meetings_in_context_are_the_users_own(coach: Coach) -> None:
    # A meeting of another user never opens this user's window.
    other = await coach.user(person("U2"))
    await coach.store.add_meetings(
        [
            Meeting(
                user_id=other.id,
                start=coach.clock() + timedelta(minutes=10),
                duration_minutes=30,
                closes_at=coach.clock() + timedelta(minutes=100),
            )
        ]
    )
    await coach.store.update_user((await coach.user(person())).id, phase=Phase.TRACKING)
    events = await collect(coach, person(), "hi")
    assert isinstance(events[-1], Denied)


async def test_persona_file_gives_the_welcome_and_the_prompt(
    store: SQLiteStore, fake: FakeAnthropic, tmp_path: Path
) -> None:
    persona = tmp_path / "persona.md"
    persona.write_text("# Persona\nYou are Tess.\n\n# Welcome\nHello from Tess!\n")
    async with coach_on(store, fake.base_url, persona_path=persona) as coach:
        events = await collect(coach, person(), "hi")
    assert isinstance(events[0], Welcome) and events[0].text == "Hello from Tess!"
    assert fake.last_request.body["system"][0]["text"] == "You are Tess."
