"""A user's turns in order: the line each message joins at arrival, the lease in the store that
keeps two processes (two Coach instances on one database) from answering one user at once,
and the records of replies in flight that a crash leaves behind."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.coach import Coach, utc_now
from core.events import Denied, Done, ReplyEvent, Welcome
from core.models import Identity, Platform, Role
from core.reply import Reply
from core.store import Store
from core.turn_order import Owner, TurnLine, order_key, owner_gone, this_process
from tests.conftest import StoreTarget
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support import T0, FakeClock, coach_on, person

BURST = 20


def coach_reply(body: dict[str, Any]) -> str:
    said = body["messages"][-1]["content"]
    return f"Coach: {said}"


@pytest.fixture
async def llm() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(reply=coach_reply) as fake:
        yield fake


@pytest.fixture
async def coach(tmp_path: Any, llm: FakeAnthropic) -> AsyncIterator[Coach]:
    """One Coach on a SQLite file, with room in its context for every turn of a burst."""
    from core.store.sqlite import SQLiteStore

    store = await SQLiteStore.open(str(tmp_path / "c.db"))
    try:
        async with coach_on(store, llm.base_url, history_context_messages=2 * BURST) as coach:
            yield coach
    finally:
        await store.close()


async def drain(reply: Reply, start_after: float = 0.0) -> list[ReplyEvent]:
    """Iterate a reply after a pause, as an adapter does after its own platform calls."""
    await asyncio.sleep(start_after)
    async with aclosing(reply) as events:
        return [event async for event in events]


async def conversation(coach: Coach, who: Identity) -> list[tuple[Role, str]]:
    user = await coach.user(who)
    return [(m.role, m.text) for m in await coach.store.messages_between(user.id)]


def turns_in(request_messages: list[dict[str, str]]) -> list[str]:
    return [m["content"] for m in request_messages]


def expected_history(texts: list[str]) -> list[tuple[Role, str]]:
    """message, reply, message, reply: the reply names the message (`coach_reply`)."""
    return [pair for t in texts for pair in ((Role.USER, t), (Role.ASSISTANT, f"Coach: {t}"))]


# --- The line in this process -------------------------------------------------------------


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 30)), max_size=60))
def test_the_first_in_each_line_is_the_earliest_joined_still_there(
    ops: list[tuple[bool, int, int]],
) -> None:
    line = TurnLine()
    present: dict[int, list[Any]] = {0: [], 1: [], 2: []}
    for join, speaker, pick in ops:
        if join:
            present[speaker].append(line.join(str(speaker), T0))
        elif present[speaker]:
            line.leave(present[speaker].pop(pick % len(present[speaker])))
        for who, tickets in present.items():
            assert line.waiting(str(who)) == len(tickets)
            places = line._lines.get(str(who), [])
            assert [p.reached.is_set() for p in places] == [i == 0 for i in range(len(places))]


@given(
    st.lists(
        st.tuples(st.datetimes(timezones=st.just(UTC)), st.integers(0, 10**9)),
        min_size=2,
        max_size=20,
    )
)
def test_ticket_order_sorts_by_sent_time_then_arrival(stamps: list[tuple[datetime, int]]) -> None:
    keys = [order_key(sent, arrival) for sent, arrival in stamps]
    by_key = sorted(range(len(stamps)), key=lambda i: keys[i])
    by_value = sorted(range(len(stamps)), key=lambda i: (stamps[i][0], stamps[i][1]))
    assert [stamps[i] for i in by_key] == [stamps[i] for i in by_value]


def ended_pid() -> int:
    """The pid of a process that has ended (a pid nobody else is likely to have now)."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )
    return int(ended.stdout)


def test_a_process_is_known_gone_only_on_this_host() -> None:
    me = this_process()
    dead = Owner(me.host, ended_pid(), "x")
    assert owner_gone(str(dead))
    assert not owner_gone(str(me))
    assert not owner_gone(str(Owner(me.host, os.getppid(), "x")))  # alive
    assert not owner_gone(str(Owner("another-host", dead.pid, "x")))  # unsure
    assert owner_gone(str(Owner(me.host, me.pid, "earlier")))  # our pid, an earlier life
    assert not owner_gone("garbage")


# --- One Coach --------------------------------------------------------------------------


async def test_a_burst_is_answered_in_arrival_order_whatever_the_adapter_awaits(
    coach: Coach, llm: FakeAnthropic
) -> None:
    """Twenty messages arrive in order; the adapter's own awaits (a status, a lookup) finish
    in random order before each reply is read. Answers still go in arrival order, each with
    every earlier turn in its context, and history reads message, reply, message, reply."""
    texts = [f"m{n}" for n in range(BURST)]
    replies = [coach.reply(person(), text) for text in texts]  # arrival
    rng = random.Random(7)
    results = await asyncio.gather(*(drain(reply, rng.uniform(0, 0.05)) for reply in replies))
    assert all(isinstance(events[-1], Done) for events in results)
    asked = [r.body["messages"] for r in llm.requests]
    assert [turns_in(m)[-1] for m in asked] == texts
    for n, messages in enumerate(asked):
        earlier = [t for pair in expected_history(texts[:n]) for t in pair[1:]]
        assert turns_in(messages) == [*earlier, texts[n]]
    assert await conversation(coach, person()) == expected_history(texts)


async def test_a_burst_of_first_messages_is_welcomed_once(coach: Coach) -> None:
    replies = [coach.reply(person("new"), f"hi {n}") for n in range(5)]
    results = await asyncio.gather(*(drain(r) for r in replies))
    welcomes = [e for events in results for e in events if isinstance(e, Welcome)]
    assert len(welcomes) == 1 and isinstance(results[0][0], Welcome)


async def test_a_reply_closed_unread_gives_its_place_up(coach: Coach) -> None:
    """An adapter that gives up on a message before reading its reply (its own call
    failed) must not block the user's line."""
    dropped = coach.reply(person(), "never read")
    events = asyncio.create_task(drain(coach.reply(person(), "read")))
    await dropped.aclose()
    assert isinstance((await asyncio.wait_for(events, 5))[-1], Done)


# --- Two processes on one database: two Coach instances ------------------------------------


async def trip_before_a_turn(coach: Coach, who: Identity) -> float:
    """How long the store work before a turn takes (the user, the meetings), at its slowest
    of a few tries."""
    slowest = 0.0
    for _ in range(3):
        started = time.perf_counter()
        user, _ = await coach.store.get_or_create_user(who, utc_now())
        await coach.store.list_meetings(user.id, closing_after=utc_now())
        slowest = max(slowest, time.perf_counter() - started)
    return slowest


async def two_coaches(
    store_target: StoreTarget, llm: FakeAnthropic, clock: Any, **settings: Any
) -> tuple[Coach, Coach, list[Any]]:
    stores = [await store_target.open(), await store_target.open()]
    contexts = [coach_on(s, llm.base_url, clock, **settings) for s in stores]
    coaches = [await c.__aenter__() for c in contexts]
    return coaches[0], coaches[1], contexts


async def test_two_processes_answer_one_users_burst_in_order(
    store_target: StoreTarget, llm: FakeAnthropic
) -> None:
    """Messages of one user, 10 ms apart, land alternately on two processes (a load
    balancer), each reply taking several times that: answered one at a time, in the order
    sent, each with every earlier turn. (Two messages reaching two processes at the same
    instant can go either way: the order between processes is the order they reach the
    store. So the gap is 10 ms, or three of this store's trips before a turn if those are
    slower, as the pure-Python Mongo emulator's are on a busy machine.)"""
    llm.token_delay = 0.02
    a, b, contexts = await two_coaches(
        store_target, llm, utc_now, history_context_messages=2 * BURST
    )
    try:
        who = person("U1", Platform.SLACK)
        gap = max(0.01, 3 * await trip_before_a_turn(a, who))
        texts = [f"m{n} is a message" for n in range(12)]
        replies = []
        for n, text in enumerate(texts):
            replies.append((a, b)[n % 2].reply(who, text))
            await asyncio.sleep(gap)
        results = await asyncio.wait_for(asyncio.gather(*(drain(r) for r in replies)), 30)
        assert all(isinstance(events[-1], Done) for events in results)
        requests = llm.requests
        assert [r.last_user_text for r in requests] == texts
        for before, after in itertools.pairwise(requests):
            assert before.finished_at is not None and before.finished_at <= after.received_at
        for n, request in enumerate(requests):
            assert len(request.body["messages"]) == 2 * n + 1  # every earlier turn
        assert await conversation(a, who) == expected_history(texts)
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)


async def test_a_lease_left_by_a_dead_process_runs_out(
    store_target: StoreTarget, llm: FakeAnthropic
) -> None:
    """A process died holding the user's lease: the next message waits for it to run out
    (nothing renews it), then is answered."""
    clock = FakeClock()
    a, _, contexts = await two_coaches(store_target, llm, clock, turn_lease_seconds=30)
    try:
        who = person("U1", Platform.SLACK)
        user = await a.user(who)
        until = clock() + timedelta(seconds=30)
        assert await a.store.claim_turn(user.id, "dead", "0", clock(), until)
        answer = asyncio.create_task(drain(a.reply(who, "hello")))
        await asyncio.sleep(0.5)
        assert llm.requests == [] and not answer.done()  # waiting for the lease
        clock.advance(seconds=31)
        events = await asyncio.wait_for(answer, 10)
        assert isinstance(events[-1], Done) and llm.last_request.last_user_text == "hello"
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)


async def test_a_long_reply_keeps_its_lease_while_it_streams(
    store_target: StoreTarget, llm: FakeAnthropic
) -> None:
    """Real time, a lease of 0.6 s and a reply of about 2 s: the holder renews it, so the
    other process's message waits for the whole reply instead of starting after 0.6 s."""
    llm.token_delay = 0.4
    a, b, contexts = await two_coaches(store_target, llm, utc_now, turn_lease_seconds=0.6)
    try:
        who = person("U1", Platform.SLACK)
        await a.user(who)  # created beforehand, so both find the same user
        first = asyncio.create_task(drain(a.reply(who, "one two three four five")))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(drain(b.reply(who, "next")))
        await asyncio.wait_for(asyncio.gather(first, second), 20)
        one, two = llm.requests
        assert one.finished_at is not None and one.finished_at <= two.received_at
        assert one.finished_at - one.received_at > 1.2  # longer than two leases
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)


async def test_denied_and_empty_messages_do_not_hold_the_line(coach: Coach) -> None:
    empty = coach.reply(person(), "   ")
    after = coach.reply(person(), "hello")
    events = await asyncio.wait_for(drain(after), 5)  # before `empty` is read
    assert isinstance(events[-1], Done)
    assert [type(e).__name__ for e in await drain(empty)] == ["Failed"]


# --- Replies in flight ----------------------------------------------------------------------


async def test_a_streaming_reply_is_recorded_where_it_shows_until_it_ends(
    store: Store, llm: FakeAnthropic
) -> None:
    llm.token_delay = 0.05
    async with coach_on(store, llm.base_url) as coach:
        reply = coach.reply(person("U1", Platform.SLACK), "hello", event_id="C1:1.0",
                            place={"channel": "D1"})
        async with aclosing(reply) as events:
            seen = [await anext(events)]  # the welcome
            seen.append(await anext(events))  # the first words
            await reply.shown_at(kind="message", ts="1.1")
            (record,) = await store.in_flight(Platform.SLACK)
            assert record.place == {"channel": "D1", "kind": "message", "ts": "1.1"}
            assert record.event_key == "slack:C1:1.0" and record.owner == str(this_process())
            seen += [event async for event in events]
        assert isinstance(seen[-1], Done)
        assert await store.in_flight(Platform.SLACK) == []


async def test_a_reply_cut_off_by_a_crash_is_handed_for_repair_and_kept_incomplete(
    store: Store, llm: FakeAnthropic
) -> None:
    """What a process that died mid-reply leaves: the record of its reply. Another process
    takes it (once), the platform finishes it, and the Coach keeps the reply as incomplete,
    frees the user's turn and lets a redelivery of the message be answered."""
    clock = FakeClock()
    async with coach_on(store, llm.base_url, clock) as coach:
        who = person("U1", Platform.SLACK)
        user = await coach.user(who)
        await store.update_user(user.id, welcomed=True)
        assert await store.claim_event("slack:C1:1.0", clock(), clock() + timedelta(days=1))
        await store.claim_turn(user.id, "t1", "0", clock(), clock() + timedelta(seconds=15))
        dead_pid = ended_pid()
        me = this_process()
        from core.models import InFlight

        await store.add_in_flight(
            InFlight(id="t1", user_id=user.id, platform=Platform.SLACK,
                     owner=str(Owner(me.host, dead_pid, "x")), event_key="slack:C1:1.0",
                     place={"channel": "D1", "ts": "1.1"}, text="Half a", started_at=clock(),
                     expires_at=clock() + timedelta(seconds=15))
        )
        assert await coach.interrupted_replies(Platform.DISCORD) == []
        (taken,) = await coach.interrupted_replies(Platform.SLACK)
        assert await coach.interrupted_replies(Platform.SLACK) == []  # taken: once
        await coach.repaired(taken, "Half a reply")
        (kept,) = await store.messages_between(user.id)
        assert (kept.role, kept.text, kept.complete) == (Role.ASSISTANT, "Half a reply", False)
        assert await store.in_flight(Platform.SLACK) == []
        events = await asyncio.wait_for(drain(coach.reply(who, "hi", event_id="C1:1.0")), 5)
        assert isinstance(events[-1], Done)  # the redelivery is answered, the lease was free


async def test_an_expired_record_of_another_host_is_repaired_after_its_lease(
    store: Store, llm: FakeAnthropic
) -> None:
    clock = FakeClock()
    async with coach_on(store, llm.base_url, clock) as coach:
        user = await coach.user(person("U1", Platform.DISCORD))
        from core.models import InFlight

        await store.add_in_flight(
            InFlight(id="t1", user_id=user.id, platform=Platform.DISCORD,
                     owner="elsewhere:1:x", place={"channel": "1"}, started_at=clock(),
                     expires_at=clock() + timedelta(seconds=15))
        )
        assert await coach.interrupted_replies(Platform.DISCORD) == []  # maybe alive
        clock.advance(seconds=15)
        (taken,) = await coach.interrupted_replies(Platform.DISCORD)
        await coach.repaired(taken, None)  # nothing readable, nothing said: nothing kept
        assert await store.messages_between(user.id) == []


async def test_denied_messages_wait_for_nobody(coach: Coach) -> None:
    from core.models import Phase

    user = await coach.user(person())
    await coach.store.update_user(user.id, phase=Phase.TRACKING, welcomed=True)
    held = coach.reply(person(), "first")  # ahead in line, never read
    events = await asyncio.wait_for(drain(coach.reply(person(), "second")), 5)
    assert isinstance(events[-1], Denied)
    await held.aclose()


