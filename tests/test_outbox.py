"""Window notices at least once (scheduler.outbox): kept in the store when the platform refuses
them, tried again later by any scheduler, after restarts, until delivered or no longer true.

The store is real (both backends); the platform is a recording Notifier that can refuse; the
clock is moved by hand, and the quick in-process waits are recorded, not slept.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.models import (
    Meeting,
    MeetingStatus,
    Notice,
    NoticeFacts,
    NoticeKind,
    NoticeState,
    User,
)
from core.store import Store
from core.windows import reminder_at
from scheduler.notices import (
    NOTICE_BACKOFF,
    NOTICE_GIVE_UP,
    WHILE_OPEN,
    expiry,
    later_keys,
    next_try_at,
    notice_key,
    render,
    stale_reason,
)
from scheduler.notify import Delivery, Notifiers
from scheduler.windows import WindowKeeper
from tests.conftest import StoreTarget
from tests.fakes.anthropic_api import FakeAnthropic, Reply
from tests.fakes.notifier import RecordingNotifier
from tests.metrics import sample
from tests.scheduler_world import (
    ALICE,
    PARIS,
    Clock,
    World,
    anthropic_llm,
    talked_in_window,
    utc,
)

MONDAY = utc(2026, 6, 1, 8, 0)  # "tomorrow 9am" in Paris opens Tue 2 Jun 06:30 UTC
MINUTE = timedelta(minutes=1)
OPEN_TEXT = (
    "🟢 Your coaching window is open: I'm available until 10:45 (Europe/Paris). "
    "What's on your mind?"
)
RECAP = "Committed to:\n- Stretch every morning"


@pytest.fixture
async def world(store: Store) -> World:
    return World(store, Clock(MONDAY))


async def failing_open(world: World) -> Meeting:
    """Alice tracks; her platform refuses everything when her window opens."""
    world.notifier.failures = 10_000
    await world.tracking_user()
    [meeting] = await world.meetings()
    await world.at(world.coach.policy.opens_at(meeting), meeting)
    return meeting


async def open_notice(store: Store, meeting: Meeting) -> Notice:
    notice = await store.get_notice(notice_key(meeting.id, NoticeKind.OPEN))
    assert notice is not None
    return notice


# In the store, retried later, across restarts


async def test_a_notice_refused_past_the_quick_tries_is_kept_and_delivered_later(
    world: World,
) -> None:
    failed, delivered = notices("failed"), notices("delivered")
    meeting = await failing_open(world)
    opens = world.coach.policy.opens_at(meeting)
    assert world.notifier.attempts == 4 and world.sleeps == [1.0, 5.0, 30.0]
    assert (notices("failed"), notices("delivered")) == (failed + 1, delivered)  # /metrics
    assert world.notifier.sent == []
    kept = await open_notice(world.store, meeting)
    assert (kept.state, kept.attempts, kept.next_try_at) == (
        NoticeState.PENDING,
        1,
        opens + NOTICE_BACKOFF[0],
    )
    assert kept.last_error is not None and "503" in kept.last_error

    await world.retry_notices(opens + 30 * timedelta(seconds=1))  # back-off not over
    assert world.notifier.attempts == 4
    world.notifier.failures = 0  # the platform is back
    await world.retry_notices(opens + MINUTE)
    assert world.notifier.texts() == [OPEN_TEXT]
    assert notices("delivered") == delivered + 1
    delivered_notice = await open_notice(world.store, meeting)
    assert (delivered_notice.state, delivered_notice.attempts) == (NoticeState.DELIVERED, 2)
    assert set(world.notifier.keys) == {delivered_notice.id}  # one key for every try


def notices(outcome: str) -> float:
    return sample("momentum_notices_total", outcome=outcome)


async def test_a_restarted_scheduler_delivers_what_the_stopped_one_kept(store: Store) -> None:
    first = World(store, Clock(MONDAY))
    meeting = await failing_open(first)
    opens = first.coach.policy.opens_at(meeting)
    # The process stops; later ones have a new coach, keeper and notifier on the same store.
    second = World(store, Clock(opens))
    await second.retry_notices(opens + 2 * MINUTE)
    assert second.notifier.texts() == [OPEN_TEXT]
    for minutes in (3, 30, 60):
        third = World(store, Clock(opens), notifier=second.notifier)
        await third.retry_notices(opens + minutes * MINUTE)
        await third.at(opens + minutes * MINUTE, meeting)
    assert second.notifier.texts() == [OPEN_TEXT]
    assert first.notifier.sent == []


async def test_an_open_notice_still_refused_when_the_window_closes_is_dropped_never_sent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    meeting = await failing_open(world)
    closes = world.coach.policy.closes_at(meeting)
    tries = [world.coach.policy.opens_at(meeting)]
    for _ in range(20):  # bounded, so a notice no longer retried fails the test, not hangs it
        notice = await open_notice(world.store, meeting)
        if notice.state is not NoticeState.PENDING or notice.next_try_at >= closes:
            break
        tries.append(notice.next_try_at)
        await world.retry_notices(notice.next_try_at)
    # 1, 5, then every 30 minutes; the last try is moved to the close, not past it.
    assert [t - tries[0] for t in tries[1:]] == [MINUTE * m for m in (1, 6, 36, 66, 96, 126)]
    assert notice.next_try_at == closes and notice.state is NoticeState.PENDING

    world.notifier.failures = 0  # the platform is back just as the window closes
    with caplog.at_level(logging.WARNING, logger="scheduler"):
        await world.retry_notices(closes)
        await world.at(closes, meeting)
    assert "dropped the open notice" in caplog.text
    assert "no longer true: the window closed at 2026-06-02T08:45:00+00:00" in caplog.text
    dropped = await open_notice(world.store, meeting)
    assert dropped.state is NoticeState.DROPPED
    assert [t[:1] for t in world.notifier.texts()] == ["🔴"]  # the close, never the opening
    for later in (MINUTE, 60 * MINUTE):
        await world.retry_notices(closes + later)
    assert [t[:1] for t in world.notifier.texts()] == ["🔴"]


async def test_two_schedulers_racing_one_pending_notice_send_it_once(
    store_target: StoreTarget,
) -> None:
    notifier = RecordingNotifier()
    clock = Clock(MONDAY)
    worlds = [World(await store_target.open(), clock, notifier=notifier) for _ in range(2)]
    meeting = await failing_open(worlds[0])
    notifier.failures = 0
    later = worlds[0].coach.policy.opens_at(meeting) + 2 * MINUTE
    await asyncio.gather(*(w.retry_notices(later) for w in worlds for _ in range(3)))
    assert notifier.texts() == [OPEN_TEXT]


async def test_a_try_holding_the_notice_keeps_others_off_it(world: World) -> None:
    """While one process sends (slowly), another refreshing sees nothing to take."""
    meeting = await failing_open(world)
    world.notifier.failures = 0
    world.notifier.gate = asyncio.Event()
    retry = world.coach.policy.opens_at(meeting) + MINUTE
    key = notice_key(meeting.id, NoticeKind.OPEN)
    slow = asyncio.create_task(world.keeper.outbox.retry(key, retry))
    await asyncio.sleep(0.05)
    other = World(world.store, Clock(retry), notifier=world.notifier)
    assert await other.keeper.outbox.pending(retry + MINUTE) == []
    await other.retry_notices(retry + MINUTE)
    world.notifier.gate.set()
    assert await slow
    assert world.notifier.texts() == [OPEN_TEXT]


async def test_a_delivered_notice_is_never_sent_again(world: World) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    opens = world.coach.policy.opens_at(meeting)
    await world.at(opens, meeting)
    assert world.notifier.texts() == [OPEN_TEXT]
    user = await world.coach.user(ALICE)
    # A second process making the same step's notice (its claim raced ours) sends nothing.
    facts = NoticeFacts(start=meeting.start, until=world.coach.policy.closes_at(meeting))
    assert not await world.keeper.outbox.post(user, meeting, NoticeKind.OPEN, facts, opens)
    for minutes in (1, 10, 60):  # refreshes and restarts
        restarted = World(world.store, Clock(opens), notifier=world.notifier)
        await restarted.retry_notices(opens + minutes * MINUTE)
        await restarted.at(opens + minutes * MINUTE, meeting)
    assert world.notifier.texts() == [OPEN_TEXT]


# No longer true: dropped, with a log line


async def test_a_cancelled_meetings_pending_notice_is_dropped(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    meeting = await failing_open(world)
    await world.coach.cancel(ALICE, "1")
    world.notifier.failures = 0
    with caplog.at_level(logging.WARNING, logger="scheduler"):
        await world.retry_notices(world.coach.policy.opens_at(meeting) + MINUTE)
    assert "its meeting was cancelled" in caplog.text
    assert world.notifier.sent == []
    assert (await open_notice(world.store, meeting)).state is NoticeState.DROPPED


async def test_a_waiting_open_notice_is_dropped_once_the_window_moved_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """"Closes soon" went out; a late "is open" after it would be out of order."""
    meeting = await failing_open(world)
    remind = reminder_at(meeting, world.coach.policy)
    assert remind is not None
    world.notifier.failures = 0
    await world.at(remind, meeting)
    with caplog.at_level(logging.WARNING, logger="scheduler"):
        await world.retry_notices(remind + MINUTE)
    assert "superseded by the closing_soon notice" in caplog.text
    assert [t[:1] for t in world.notifier.texts()] == ["⏳"]
    assert (await open_notice(world.store, meeting)).state is NoticeState.DROPPED


async def test_forget_deletes_the_users_pending_notices(world: World) -> None:
    meeting = await failing_open(world)
    await world.coach.forget(ALICE)
    world.notifier.failures = 0
    await world.retry_notices(world.coach.policy.opens_at(meeting) + MINUTE)
    assert world.notifier.sent == []
    assert await world.store.get_notice(notice_key(meeting.id, NoticeKind.OPEN)) is None


async def test_a_closed_notice_refused_for_a_day_is_given_up_with_an_error(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    policy = world.coach.policy
    await world.at(policy.opens_at(meeting), meeting)
    world.notifier.failures = 10_000
    closes = policy.closes_at(meeting)
    await world.at(closes, meeting)
    closed = await world.store.get_notice(notice_key(meeting.id, NoticeKind.CLOSED))
    assert closed is not None and closed.expires_at == closes + NOTICE_GIVE_UP

    world.notifier.failures = 0
    with caplog.at_level(logging.ERROR, logger="scheduler"):
        await world.retry_notices(closes + NOTICE_GIVE_UP)
    assert "giving up the closed notice" in caplog.text
    assert [t[:1] for t in world.notifier.texts()] == ["🟢"]


async def test_a_closed_notice_sent_the_next_morning_names_the_day(world: World) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    policy = world.coach.policy
    await world.at(policy.opens_at(meeting), meeting)
    world.notifier.failures = 4  # the quick tries at the close
    closes = policy.closes_at(meeting)
    await world.at(closes, meeting)
    await world.retry_notices(closes + timedelta(hours=20))  # 06:45 in Paris, Wednesday
    assert world.notifier.texts()[-1] == (
        "🔴 Your coaching window closed at Tue 2 Jun 2026, 10:45 (Europe/Paris). "
        "No meeting is scheduled yet. Book one with `/schedule tomorrow 9am`."
    )


async def test_a_recap_refused_at_the_close_is_delivered_later_and_stored_once(
    store: Store,
) -> None:
    async with FakeAnthropic() as fake:
        llm = anthropic_llm(fake.base_url)
        try:
            world = World(store, Clock(MONDAY), llm)
            meeting = await talked_in_window(world)
            policy = world.coach.policy
            fake.enqueue(Reply(RECAP))
            world.notifier.failures = 8  # the close message's and the recap's quick tries
            closes = policy.closes_at(meeting)
            await world.at(closes, meeting)
            assert [t[:1] for t in world.notifier.texts()] == ["🟢"]
            restarted = World(store, Clock(closes), llm, notifier=world.notifier)
            await restarted.retry_notices(closes + MINUTE)
            await restarted.catch_up(closes + 2 * MINUTE)
        finally:
            await llm.aclose()
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "🔴", "📝"]
    assert world.notifier.texts()[-1].endswith(RECAP)
    history = await store.recent_messages(meeting.user_id, 10)
    assert [m.meta.kind for m in history].count("recap") == 1


async def test_a_user_without_a_notifier_is_dropped_at_once(store: Store) -> None:
    world = World(store, Clock(MONDAY))
    world.keeper = WindowKeeper(world.coach, Delivery(Notifiers({})), late_grace=MINUTE)
    await world.tracking_user()
    [meeting] = await world.meetings()
    await world.at(world.coach.policy.opens_at(meeting), meeting)
    notice = await open_notice(store, meeting)
    assert notice.state is NoticeState.DROPPED and notice.last_error == "no slack notifier"


# The pure decisions

T = datetime(2026, 6, 2, 6, 30, tzinfo=UTC)
moments = st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60).map(lambda m: T + MINUTE * m)
waits = st.lists(st.integers(min_value=1, max_value=24 * 60), min_size=1, max_size=5).map(
    lambda ms: tuple(MINUTE * m for m in sorted(ms))
)


def test_next_try_follows_the_back_off_and_never_passes_the_expiry() -> None:
    far = T + timedelta(days=1)
    assert [next_try_at(n, T, far) - T for n in (1, 2, 3, 4, 10)] == [
        MINUTE,
        5 * MINUTE,
        30 * MINUTE,
        30 * MINUTE,
        30 * MINUTE,
    ]
    assert next_try_at(3, T, T + 10 * MINUTE) == T + 10 * MINUTE
    assert next_try_at(1, T, T - MINUTE) == T  # expired meanwhile: the next refresh drops it


@given(attempts=st.integers(min_value=1, max_value=50), now=moments, expires=moments, wait=waits)
def test_next_try_is_soon_enough_and_grows_with_the_tries(
    attempts: int, now: datetime, expires: datetime, wait: tuple[timedelta, ...]
) -> None:
    at = next_try_at(attempts, now, expires, wait)
    assert now <= at <= now + wait[-1]
    assert at <= max(expires, now)
    assert next_try_at(attempts + 1, now, expires, wait) >= at


def user() -> User:
    return User(identity=ALICE, timezone=PARIS, created_at=MONDAY)


def a_meeting(status: MeetingStatus = MeetingStatus.OPEN) -> Meeting:
    start = T + timedelta(minutes=30)
    return Meeting(
        user_id="u",
        start=start,
        duration_minutes=45,
        status=status,
        closes_at=start + timedelta(minutes=105),
    )


def a_notice(kind: NoticeKind, facts: NoticeFacts, made: datetime = T) -> Notice:
    return Notice(
        id=notice_key("m", kind),
        user_id="u",
        meeting_id="m",
        kind=kind,
        facts=facts,
        created_at=made,
        expires_at=expiry(kind, facts, made),
        next_try_at=made,
    )


CLOSE = T + timedelta(minutes=135)


@given(kind=st.sampled_from(sorted(WHILE_OPEN)), now=moments, status=st.sampled_from(MeetingStatus))
def test_window_notices_are_true_until_the_close_they_announce_unless_cancelled(
    kind: NoticeKind, now: datetime, status: MeetingStatus
) -> None:
    notice = a_notice(kind, NoticeFacts(start=T + 30 * MINUTE, until=CLOSE))
    stale = stale_reason(notice, a_meeting(status), user(), now)
    should_drop = status is MeetingStatus.CANCELLED or now >= CLOSE
    assert (stale is not None) == should_drop
    assert stale is None or not stale.given_up  # no longer true is no error


def test_after_the_fact_notices_are_given_up_after_a_day_or_at_the_next_opening() -> None:
    closed = a_notice(NoticeKind.CLOSED, NoticeFacts(closed=CLOSE), made=CLOSE)
    over = a_meeting(MeetingStatus.CLOSED)
    assert stale_reason(closed, over, user(), CLOSE + NOTICE_GIVE_UP - MINUTE) is None
    late = stale_reason(closed, over, user(), CLOSE + NOTICE_GIVE_UP)
    assert late is not None and late.given_up

    soon = CLOSE + 3 * 60 * MINUTE
    missed = a_notice(
        NoticeKind.MISSED, NoticeFacts(opened=T, closed=CLOSE, next_opens=soon), made=CLOSE
    )
    assert stale_reason(missed, over, user(), soon - MINUTE) is None
    superseded = stale_reason(missed, over, user(), soon)
    assert superseded is not None and "next window opened" in superseded.reason

    recap = a_notice(NoticeKind.RECAP, NoticeFacts(start=T, recap="ok"), made=CLOSE)
    assert recap.expires_at == CLOSE + NOTICE_GIVE_UP


def test_every_notice_is_dropped_without_its_user_or_meeting() -> None:
    notice = a_notice(NoticeKind.OPEN, NoticeFacts(until=CLOSE))
    assert stale_reason(notice, a_meeting(), None, T) is not None
    assert stale_reason(notice, None, user(), T) is not None
    assert stale_reason(notice, a_meeting(), user(), T) is None


def test_a_window_notice_gives_way_to_the_windows_later_steps() -> None:
    opened = a_notice(NoticeKind.OPEN, NoticeFacts(until=CLOSE))
    soon = a_notice(NoticeKind.CLOSING_SOON, NoticeFacts(until=CLOSE))
    closed = a_notice(NoticeKind.CLOSED, NoticeFacts(closed=CLOSE), made=CLOSE)
    assert later_keys(opened) == ["m:remind", "m:close"]
    assert later_keys(soon) == ["m:close"]
    assert later_keys(closed) == later_keys(a_notice(NoticeKind.RECAP, NoticeFacts())) == []
    stale = stale_reason(opened, a_meeting(), user(), T, superseded_by=soon)
    assert stale is not None and not stale.given_up


def test_the_text_is_rendered_when_sent_in_the_users_zone_then() -> None:
    notice = a_notice(NoticeKind.CLOSING_SOON, NoticeFacts(until=CLOSE))
    assert render(notice, ZoneInfo(PARIS), CLOSE - 10 * MINUTE).startswith(
        "⏳ Heads-up: your coaching window closes at 10:45 (Europe/Paris)."
    )
    assert "09:45 (Europe/London)" in render(notice, ZoneInfo("Europe/London"), T)
