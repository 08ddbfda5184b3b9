"""Meeting-window transitions (scheduler.windows), driven by a hand-moved clock.

The store is real (both backends), the recap goes through the real Anthropic SDK against the
loopback FakeAnthropic, and users are reached through a recording Notifier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from core.models import Meeting, MeetingStatus, Role
from core.recap import RECAP_INSTRUCTIONS
from core.store import Store
from core.windows import RECAP_CATCH_UP, RECAP_LEASE, recap_retry_at, reminder_at
from scheduler.notify import Delivery, Notifiers
from scheduler.windows import WindowKeeper
from tests.conftest import StoreTarget
from tests.fakes.anthropic_api import FakeAnthropic, HttpError, Reply, Stall
from tests.fakes.notifier import RecordingNotifier
from tests.scheduler_world import (
    ALICE,
    BOB,
    LATE_GRACE,
    Clock,
    World,
    anthropic_llm,
    talked_in_window,
    utc,
)

MONDAY = utc(2026, 6, 1, 8, 0)  # 10:00 in Paris; "tomorrow 9am" is Tue 2 Jun, 07:00 UTC
SECOND = timedelta(seconds=1)
RECAP = "Great session!\nCommitted to:\n- Run Wednesday 7am\nNext steps:\n- Lay out shoes tonight"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def world(store: Store, fake: FakeAnthropic) -> AsyncIterator[World]:
    llm = anthropic_llm(fake.base_url)
    yield World(store, Clock(MONDAY), llm)
    await llm.aclose()


async def test_one_off_meeting_opens_reminds_closes_and_recaps(
    world: World, fake: FakeAnthropic
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    opens, closes = world.coach.policy.opens_at(meeting), world.coach.policy.closes_at(meeting)
    remind = reminder_at(meeting, world.coach.policy)
    assert (opens, remind, closes) == (
        utc(2026, 6, 2, 6, 30),
        utc(2026, 6, 2, 8, 35),
        utc(2026, 6, 2, 8, 45),
    )

    await world.at(opens - SECOND, meeting)
    assert world.notifier.sent == []

    await world.at(opens, meeting)
    assert world.notifier.texts() == [
        "🟢 Your coaching window is open: I'm available until 10:45 (Europe/Paris). "
        "What's on your mind?"
    ]
    world.clock.now = opens + timedelta(minutes=40)
    assert await world.chat("I ran twice this week. I will run Wednesday at 7am.")

    await world.at(remind, meeting)
    assert world.notifier.texts()[-1].startswith(
        "⏳ Heads-up: your coaching window closes at 10:45 (Europe/Paris)."
    )

    fake.enqueue(Reply(RECAP))
    await world.at(closes, meeting)
    texts = world.notifier.texts()
    assert texts[2] == (
        "🔴 Your coaching window closed at 10:45 (Europe/Paris). "
        "No meeting is scheduled yet. Book one with `/schedule tomorrow 9am`."
    )
    assert texts[3] == (
        "📝 Recap of your coaching meeting on Tue 2 Jun 2026, 09:00 (Europe/Paris):\n\n" + RECAP
    )
    # The recap's request (the window's notes are asked for after it: tests/test_notes.py).
    request = next(r for r in fake.requests if RECAP_INSTRUCTIONS in r.system_text)
    assert "[09:10] User: I ran twice this week. I will run Wednesday at 7am." in (
        request.last_user_text
    )
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None
    assert stored.status is MeetingStatus.CLOSED
    assert (stored.reminder_sent, stored.recap_sent, stored.recap) == (True, True, RECAP)
    history = await world.store.recent_messages(stored.user_id, 10)
    assert history[-1].role is Role.ASSISTANT and history[-1].meta.kind == "recap"

    # Jobs that fire again (a retry, a second process, a refresh) change nothing.
    for when in (opens, remind, closes, closes + timedelta(minutes=5)):
        await world.at(when, meeting)
    assert len(world.notifier.sent) == 4
    assert len([r for r in fake.requests if RECAP_INSTRUCTIONS in r.system_text]) == 1


async def test_weekly_meeting_closes_with_the_next_opening(world: World) -> None:
    await world.tracking_user(when="tue 9am for 30m weekly")
    meetings = await world.meetings()
    assert len(meetings) == world.settings.weekly_occurrences
    first = meetings[0]
    policy = world.coach.policy
    for step in (policy.opens_at(first), reminder_at(first, policy), policy.closes_at(first)):
        assert step is not None
        await world.at(step, *meetings)
    assert world.notifier.texts() == [
        "🟢 Your coaching window is open: I'm available until 10:30 (Europe/Paris). "
        "What's on your mind?",
        "⏳ Heads-up: your coaching window closes at 10:30 (Europe/Paris). "
        "Anything to wrap up or commit to before then?",
        "🔴 Your coaching window closed at 10:30 (Europe/Paris). "
        "Your next window opens Tue 9 Jun 2026, 08:30 (Europe/Paris).",
    ]  # no conversation, so no recap
    statuses = [m.status for m in await world.meetings()]
    assert statuses == [MeetingStatus.CLOSED] + [MeetingStatus.SCHEDULED] * 7

    second = meetings[1]
    await world.at(policy.opens_at(second), *meetings)
    assert world.notifier.texts()[-1].startswith("🟢")
    assert "10:30 (Europe/Paris)" in world.notifier.texts()[-1]


async def test_cancel_before_open_sends_nothing(world: World) -> None:
    from bots.commands import run_command

    await world.tracking_user()
    await world.coach.schedule(ALICE, "wed 9am")
    [tuesday, _] = await world.meetings()
    await run_command(world.coach, ALICE, "/cancel 1")

    policy = world.coach.policy
    for when in (policy.opens_at(tuesday), policy.closes_at(tuesday)):
        await world.at(when, tuesday)
    assert world.notifier.sent == []
    stored = await world.store.get_meeting(tuesday.id)
    assert stored is not None and stored.status is MeetingStatus.CANCELLED


async def test_cancel_while_open_says_the_window_closed_and_ends_the_jobs(
    world: World, fake: FakeAnthropic
) -> None:
    from bots.commands import as_text, run_command

    await world.tracking_user()
    [meeting] = await world.meetings()
    policy = world.coach.policy
    await world.at(policy.opens_at(meeting), meeting)
    world.clock.now = meeting.start
    await world.chat("Quick check-in")

    reply = as_text(await run_command(world.coach, ALICE, "/cancel 1"))
    assert "Cancelled: Tue 2 Jun 2026, 09:00 (Europe/Paris)." in reply
    assert "your coaching window is closed now" in reply
    assert "you have no meeting scheduled" in reply

    requests = len(fake.requests)
    await world.at(policy.closes_at(meeting), meeting)
    assert len(world.notifier.sent) == 1  # only the opening; no close, no recap
    assert len(fake.requests) == requests


async def test_restart_inside_a_window_announces_it_once(store: Store) -> None:
    first = World(store, Clock(MONDAY))
    await first.tracking_user()
    [meeting] = await first.meetings()
    inside = first.coach.policy.opens_at(meeting) + timedelta(minutes=20)

    # The scheduler was down at the opening; each restart runs the catch-up.
    for _ in range(2):
        restarted = World(store, Clock(inside), notifier=first.notifier)
        await restarted.at(inside, meeting)
    assert first.notifier.texts() == [
        "🟢 Your coaching window is open: I'm available until 10:45 (Europe/Paris). "
        "What's on your mind?"
    ]


async def test_restart_after_the_reminder_time_does_not_remind_on_top(store: Store) -> None:
    world = World(store, Clock(MONDAY))
    await world.tracking_user()
    [meeting] = await world.meetings()
    remind = reminder_at(meeting, world.coach.policy)
    assert remind is not None
    await world.at(remind + timedelta(minutes=2), meeting)
    assert len(world.notifier.sent) == 1 and "until 10:45" in world.notifier.texts()[0]
    stored = await store.get_meeting(meeting.id)
    assert stored is not None and stored.reminder_sent


async def test_restart_after_a_missed_window_sends_one_message_and_the_recap(
    world: World, fake: FakeAnthropic
) -> None:
    await world.tracking_user()
    await world.coach.schedule(ALICE, "2026-06-09 09:00")
    [meeting, _] = await world.meetings()
    policy = world.coach.policy
    # Nobody ran the scheduler, but the gate let Alice talk in her window.
    world.clock.now = meeting.start
    await world.chat("Done: three runs. Next: a 6 km run on Saturday.")

    fake.enqueue(Reply(RECAP))
    await world.at(policy.closes_at(meeting) + timedelta(minutes=20), meeting)
    assert world.notifier.texts() == [
        "Sorry, I couldn't ping you: your coaching window ran from 08:30 (Europe/Paris) to "
        "10:45 (Europe/Paris) while my scheduler was offline. "
        "Your next window opens Tue 9 Jun 2026, 08:30 (Europe/Paris).",
        "📝 Recap of your coaching meeting on Tue 2 Jun 2026, 09:00 (Europe/Paris):\n\n" + RECAP,
    ]
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None and stored.status is MeetingStatus.CLOSED


async def test_a_window_missed_long_ago_closes_silently(world: World) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    late = world.coach.policy.closes_at(meeting) + LATE_GRACE + SECOND
    await world.at(late, meeting)
    assert world.notifier.sent == []
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None and stored.status is MeetingStatus.CLOSED


async def test_two_schedulers_on_one_store_notify_exactly_once(
    store_target: StoreTarget, fake: FakeAnthropic
) -> None:
    notifier = RecordingNotifier()
    llm = anthropic_llm(fake.base_url)
    try:
        worlds = [
            World(await store_target.open(), Clock(MONDAY), llm, notifier=notifier)
            for _ in range(2)
        ]
        await worlds[0].tracking_user()
        [meeting] = await worlds[0].meetings()
        policy = worlds[0].coach.policy
        worlds[0].clock.now = meeting.start
        await worlds[0].chat("I will swim on Friday.")
        remind = reminder_at(meeting, policy)
        assert remind is not None
        fake.enqueue(Reply(RECAP))
        for when in (policy.opens_at(meeting), remind, policy.closes_at(meeting)):
            await asyncio.gather(*(w.at(when, meeting) for w in worlds for _ in range(3)))
    finally:
        await llm.aclose()
    kinds = [text[:1] for text in notifier.texts()]
    assert kinds == ["🟢", "⏳", "🔴", "📝"]
    assert len([r for r in fake.requests if RECAP_INSTRUCTIONS in r.system_text]) == 1


async def test_a_notifier_that_fails_twice_then_succeeds(world: World) -> None:
    world.notifier.failures = 2
    await world.tracking_user()
    [meeting] = await world.meetings()
    await world.at(world.coach.policy.opens_at(meeting), meeting)
    assert world.notifier.attempts == 3
    assert world.sleeps == [1.0, 5.0]
    assert len(world.notifier.sent) == 1


async def test_users_on_a_platform_without_notifier_are_skipped_with_a_log_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(store, Clock(MONDAY))
    world.keeper = WindowKeeper(world.coach, Delivery(Notifiers({})), late_grace=LATE_GRACE)
    await world.tracking_user(BOB)
    [meeting] = await world.meetings(BOB)
    with caplog.at_level(logging.INFO, logger="scheduler"):
        await world.at(world.coach.policy.opens_at(meeting), meeting)
    assert "no discord notifier: user" in caplog.text
    stored = await store.get_meeting(meeting.id)
    assert stored is not None and stored.status is MeetingStatus.OPEN


def recap_requests(fake: FakeAnthropic) -> int:
    return len([r for r in fake.requests if RECAP_INSTRUCTIONS in r.system_text])


async def recap_failed_at_close(world: World, fake: FakeAnthropic) -> tuple[Meeting, datetime]:
    """Alice talked in her window, and the model was down when it closed: a recap is owed."""
    meeting = await talked_in_window(world)
    closes = world.coach.policy.closes_at(meeting)
    fake.enqueue(HttpError(529))
    await world.at(closes, meeting)
    return meeting, closes


async def test_recap_retry_times_follow_the_time_since_the_close() -> None:
    closed = MONDAY
    minute = timedelta(minutes=1)
    assert recap_retry_at(closed, closed) == closed + minute
    assert recap_retry_at(closed, closed + 2 * minute) == closed + 7 * minute
    assert recap_retry_at(closed, closed + 7 * minute) == closed + 37 * minute
    assert (
        recap_retry_at(closed, closed + 5 * 60 * minute) == closed + 5 * 60 * minute + 30 * minute
    )


async def test_llm_down_at_close_then_back_the_catch_up_sends_the_recap_once(
    world: World, fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    meeting = await talked_in_window(world)
    closes = world.coach.policy.closes_at(meeting)
    fake.enqueue(HttpError(529))
    with caplog.at_level(logging.WARNING, logger="scheduler"):
        await world.at(closes, meeting)
    assert "next try after" in caplog.text
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "🔴"]
    assert world.sleeps == []  # no process waits in-line for the model any more
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None
    assert (stored.status, stored.recap_sent, stored.recap) == (MeetingStatus.CLOSED, False, None)
    assert stored.recap_claimed_until == closes + timedelta(minutes=1)

    await world.catch_up(closes + timedelta(seconds=30))  # back-off not over: no try
    assert recap_requests(fake) == 1
    fake.enqueue(HttpError(529))
    await world.catch_up(closes + timedelta(minutes=1))  # still down: next in 5 minutes
    await world.catch_up(closes + timedelta(minutes=5))
    assert recap_requests(fake) == 2
    fake.enqueue(Reply(RECAP))
    await world.catch_up(closes + timedelta(minutes=6))
    for later in (7, 60, 24 * 60 - 1):
        await world.catch_up(closes + timedelta(minutes=later))
    assert recap_requests(fake) == 3
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "🔴", "📝"]
    assert world.notifier.texts()[-1].endswith(RECAP)
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None and stored.recap_sent and stored.recap == RECAP
    history = await world.store.recent_messages(stored.user_id, 10)
    assert [m.meta.kind for m in history].count("recap") == 1


async def test_a_restart_after_a_failed_recap_sends_it_once(
    store: Store, fake: FakeAnthropic
) -> None:
    llm = anthropic_llm(fake.base_url)
    try:
        first = World(store, Clock(MONDAY), llm)
        _, closes = await recap_failed_at_close(first, fake)
        # The process stops. Each restart has a new coach and keeper on the same database.
        fake.enqueue(Reply(RECAP))
        for minutes in (3, 4, 30):
            restarted = World(store, Clock(closes), llm, notifier=first.notifier)
            await restarted.catch_up(closes + timedelta(minutes=minutes))
    finally:
        await llm.aclose()
    assert [t[:1] for t in first.notifier.texts()] == ["🟢", "🔴", "📝"]
    assert recap_requests(fake) == 2


async def test_a_closer_that_stopped_mid_recap_is_taken_over_when_its_claim_runs_out(
    world: World, fake: FakeAnthropic
) -> None:
    meeting = await talked_in_window(world)
    closes = world.coach.policy.closes_at(meeting)
    # What a closer leaves behind when it stops right after its close claim.
    await world.store.claim_transition(
        meeting.id,
        MeetingStatus.OPEN,
        MeetingStatus.CLOSED,
        recap_claimed_until=closes + RECAP_LEASE,
    )
    await world.catch_up(closes + RECAP_LEASE - SECOND)
    assert recap_requests(fake) == 0
    fake.enqueue(Reply(RECAP))
    await world.catch_up(closes + RECAP_LEASE)
    await world.catch_up(closes + RECAP_LEASE + timedelta(minutes=30))
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "📝"]
    assert recap_requests(fake) == 1


async def test_two_schedulers_racing_on_a_pending_recap_call_the_model_once(
    store_target: StoreTarget, fake: FakeAnthropic
) -> None:
    notifier = RecordingNotifier()
    llm = anthropic_llm(fake.base_url)
    try:
        worlds = [
            World(await store_target.open(), Clock(MONDAY), llm, notifier=notifier)
            for _ in range(2)
        ]
        meeting = await talked_in_window(worlds[0])
        closes = worlds[0].coach.policy.closes_at(meeting)
        fake.enqueue(HttpError(529), Reply(RECAP))
        await worlds[0].at(closes, meeting)
        later = closes + timedelta(minutes=2)
        await asyncio.gather(*(w.catch_up(later) for w in worlds for _ in range(3)))
    finally:
        await llm.aclose()
    assert [t[:1] for t in notifier.texts()] == ["🟢", "🔴", "📝"]
    assert recap_requests(fake) == 2  # the failed one at the close, then exactly one


async def test_a_try_that_outlives_its_claim_may_call_the_model_twice_but_sends_once(
    store_target: StoreTarget, fake: FakeAnthropic
) -> None:
    notifier = RecordingNotifier()
    clock = Clock(MONDAY)
    llm = anthropic_llm(fake.base_url)
    try:
        slow, other = [
            World(await store_target.open(), clock, llm, notifier=notifier) for _ in range(2)
        ]
        meeting, closes = await recap_failed_at_close(slow, fake)
        retry = closes + timedelta(minutes=1)
        fake.enqueue(Stall(after=1, seconds=0.5), Reply(RECAP))
        clock.now = retry
        stalled = asyncio.create_task(slow.keeper.catch_up_recap(meeting.id, retry))
        for _ in range(500):  # until the slow try's request has reached the model
            if recap_requests(fake) == 2:
                break
            await asyncio.sleep(0.01)
        # The slow try's claim runs out while it waits: another process takes over.
        assert await other.keeper.catch_up_recap(meeting.id, retry + RECAP_LEASE)
        assert not await stalled
    finally:
        await llm.aclose()
    assert recap_requests(fake) == 3
    assert [t[:1] for t in notifier.texts()] == ["🟢", "🔴", "📝"]
    assert notifier.texts()[-1].endswith(RECAP)
    stored = await slow.store.get_meeting(meeting.id)
    assert stored is not None and stored.recap == RECAP


async def test_a_recap_beyond_the_catch_up_is_given_up(
    world: World, fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    meeting = await talked_in_window(world)
    closes = world.coach.policy.closes_at(meeting)
    fake.enqueue(HttpError(529), HttpError(529))
    await world.at(closes, meeting)
    with caplog.at_level(logging.ERROR, logger="scheduler"):
        await world.catch_up(closes + RECAP_CATCH_UP - timedelta(minutes=10))
    assert "giving up" in caplog.text
    fake.enqueue(Reply(RECAP))
    for after in (SECOND, timedelta(hours=1), timedelta(days=3)):
        await world.catch_up(closes + RECAP_CATCH_UP + after)
    assert recap_requests(fake) == 2
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "🔴"]


async def test_a_meeting_closed_beyond_the_look_back_is_not_recapped(
    store: Store, fake: FakeAnthropic
) -> None:
    llm = anthropic_llm(fake.base_url)
    try:
        first = World(store, Clock(MONDAY), llm)
        _, closes = await recap_failed_at_close(first, fake)
        # The model and every scheduler were gone for more than the catch-up.
        back = World(store, Clock(MONDAY), llm, notifier=first.notifier)
        await back.catch_up(closes + RECAP_CATCH_UP + SECOND)
        assert await back.keeper.pending_recaps(closes + RECAP_CATCH_UP + SECOND) == []
    finally:
        await llm.aclose()
    assert recap_requests(fake) == 1
    assert [t[:1] for t in first.notifier.texts()] == ["🟢", "🔴"]


async def test_no_conversation_means_no_recap_and_no_more_looks(
    world: World, fake: FakeAnthropic
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    closes = world.coach.policy.closes_at(meeting)
    await world.at(world.coach.policy.opens_at(meeting), meeting)
    await world.at(closes, meeting)
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None and not stored.recap_sent
    assert stored.recap_claimed_until == stored.closes_at + RECAP_CATCH_UP
    for after in (timedelta(minutes=1), timedelta(hours=1), RECAP_CATCH_UP - SECOND):
        assert await world.keeper.pending_recaps(closes + after) == []
        await world.catch_up(closes + after)
    assert recap_requests(fake) == 0
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "🔴"]


async def test_a_silent_late_close_is_not_recapped_later_either(
    world: World, fake: FakeAnthropic
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    world.clock.now = meeting.start  # no scheduler ran, but the gate let Alice talk
    await world.chat("I'll stretch every morning.")
    late = world.coach.policy.closes_at(meeting) + LATE_GRACE + SECOND
    await world.at(late, meeting)
    for after in (timedelta(minutes=1), timedelta(hours=2)):
        await world.catch_up(late + after)
    assert world.notifier.sent == []
    assert recap_requests(fake) == 0


async def test_goal_setting_users_get_a_nudge_and_the_recap_only(
    world: World, fake: FakeAnthropic
) -> None:
    await world.coach.set_timezone(ALICE, "Europe/Paris")
    await world.coach.schedule(ALICE, "tomorrow 9am")
    [meeting] = await world.meetings()
    policy = world.coach.policy
    await world.at(policy.opens_at(meeting), meeting)
    world.clock.now = meeting.start
    await world.chat("Let's shape my running goal.")
    fake.enqueue(Reply(RECAP))
    remind = reminder_at(meeting, policy)
    assert remind is not None
    await world.at(remind, meeting)
    await world.at(policy.closes_at(meeting), meeting)
    assert [t[:1] for t in world.notifier.texts()] == ["📅", "📝"]
    assert world.notifier.texts()[0] == (
        "📅 Your coaching meeting is at 09:00 (Europe/Paris). I'm here whenever you're ready."
    )


async def test_touching_windows_stay_open_through_the_seam(world: World) -> None:
    await world.tracking_user(when="tomorrow 9am for 30m")
    # 9:00-9:30 closes at 10:30; 11:00 opens at 10:30: one window from 08:30 to 12:45.
    await world.coach.schedule(ALICE, "tomorrow 11:00 for 45m")
    first, second = await world.meetings()
    policy = world.coach.policy
    steps = sorted(
        {
            when
            for m in (first, second)
            for when in (policy.opens_at(m), reminder_at(m, policy), policy.closes_at(m))
            if when is not None
        }
    )
    for when in steps:
        await world.at(when, first, second)
    assert world.notifier.texts() == [
        "🟢 Your coaching window is open: I'm available until 12:45 (Europe/Paris). "
        "What's on your mind?",
        "Your meeting at 11:00 (Europe/Paris) is next, so I stay available until "
        "12:45 (Europe/Paris).",
        "⏳ Heads-up: your coaching window closes at 12:45 (Europe/Paris). "
        "Anything to wrap up or commit to before then?",
        "🔴 Your coaching window closed at 12:45 (Europe/Paris). "
        "No meeting is scheduled yet. Book one with `/schedule tomorrow 9am`.",
    ]
