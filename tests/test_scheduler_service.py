"""The APScheduler wiring (scheduler.service), with real jobs a fraction of a second away.

The clock runs in real time from a chosen instant (just before a window opens, say), so the
real AsyncIOScheduler fires the real jobs within a second; no test sleeps for minutes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from core.models import MeetingStatus, User
from core.recap import RECAP_INSTRUCTIONS
from core.store import Store
from core.windows import reminder_at
from scheduler.notify import Notifiers
from scheduler.service import SchedulerService, run_scheduler
from tests.conftest import StoreTarget
from tests.fakes.anthropic_api import FakeAnthropic, HttpError, Reply
from tests.fakes.notifier import RecordingNotifier
from tests.metrics import sample
from tests.scheduler_world import ALICE, BOB, World, anthropic_llm, make_settings, utc

MONDAY = utc(2026, 6, 1, 8, 0)
LEAD = timedelta(seconds=0.3)  # how far ahead of a step the clock is set
WAIT_SECONDS = 5.0


class RunningClock:
    """Real time, shifted so that `now` reads `start` at the moment it is set."""

    def __init__(self, start: datetime) -> None:
        self.set(start)

    def set(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset

    @property
    def now(self) -> datetime:
        return self()

    @now.setter
    def now(self, value: datetime) -> None:
        self.set(value)


async def eventually(check: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def service_for(world: World, refresh_seconds: float = 3600) -> SchedulerService:
    return SchedulerService(
        world.keeper,
        refresh_seconds=refresh_seconds,
        misfire_grace_seconds=3600,
        clock=world.clock,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def world(store: Store, fake: FakeAnthropic) -> AsyncIterator[World]:
    llm = anthropic_llm(fake.base_url)
    yield World(store, RunningClock(MONDAY), llm)  # type: ignore[arg-type]
    await llm.aclose()


@pytest.fixture
async def services() -> AsyncIterator[list[SchedulerService]]:
    """Services a test starts; all stopped at the end."""
    started: list[SchedulerService] = []
    yield started
    for service in started:
        await service.stop()


async def start(services: list[SchedulerService], service: SchedulerService) -> SchedulerService:
    services.append(service)
    await service.start()
    return service


async def test_the_open_job_fires_when_the_window_opens(
    world: World, services: list[SchedulerService]
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    opens = world.coach.policy.opens_at(meeting)
    world.clock.now = opens - LEAD
    sent_at: list[datetime] = []
    notify = world.notifier.notify

    async def stamped(user: User, text: str, *, key: str | None = None) -> None:
        # Read on the injected clock, so that a slow start cannot hide a job that fired early.
        sent_at.append(world.clock.now)
        await notify(user, text, key=key)

    world.notifier.notify = stamped  # type: ignore[method-assign]
    service = await start(services, service_for(world))
    assert service.job_ids() == {f"{meeting.id}:{step}" for step in ("open", "remind", "close")}

    await eventually(lambda: len(world.notifier.sent) == 1)
    assert sent_at[0] >= opens
    assert "available until 10:45 (Europe/Paris)" in world.notifier.texts()[0]
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None and stored.status is MeetingStatus.OPEN


async def test_the_reminder_job_fires_ten_minutes_before_close(
    world: World, services: list[SchedulerService]
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    remind = reminder_at(meeting, world.coach.policy)
    assert remind is not None
    await world.keeper.advance(meeting.id, world.coach.policy.opens_at(meeting))  # opened
    world.clock.now = remind - LEAD
    await start(services, service_for(world))
    await eventually(lambda: len(world.notifier.sent) == 2)
    assert world.notifier.texts()[1].startswith("⏳")


async def test_the_close_job_closes_and_sends_the_recap(
    world: World, fake: FakeAnthropic, services: list[SchedulerService]
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    policy = world.coach.policy
    await world.keeper.advance(meeting.id, policy.opens_at(meeting))
    world.clock.now = meeting.start
    await world.chat("I commit to two runs before Friday.")
    await world.keeper.advance(meeting.id, policy.closes_at(meeting) - timedelta(minutes=5))
    fake.enqueue(Reply("Committed to: two runs before Friday."))
    world.clock.now = policy.closes_at(meeting) - LEAD
    await start(services, service_for(world))
    await eventually(lambda: len(world.notifier.sent) == 4)
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "⏳", "🔴", "📝"]
    assert world.notifier.texts()[3].endswith("Committed to: two runs before Friday.")


async def test_a_meeting_scheduled_here_gets_its_jobs_at_once(
    world: World, services: list[SchedulerService]
) -> None:
    service = await start(services, service_for(world))
    world.coach.meeting_observers.append(service.meetings_changed)
    assert service.job_ids() == set()

    await world.tracking_user()
    [meeting] = await world.meetings()
    assert service.job_ids() == {f"{meeting.id}:{step}" for step in ("open", "remind", "close")}

    await world.coach.cancel(ALICE, "1")
    assert service.job_ids() == set()

    await world.coach.schedule(ALICE, "wed 9am for 30m weekly")
    assert len(service.job_ids()) == 3 * world.settings.weekly_occurrences
    await world.coach.forget(ALICE)
    assert service.job_ids() == set()


async def test_refresh_picks_up_meetings_of_another_process(
    store_target: StoreTarget, services: list[SchedulerService]
) -> None:
    here = World(await store_target.open(), RunningClock(MONDAY))  # type: ignore[arg-type]
    elsewhere = World(await store_target.open(), RunningClock(MONDAY))  # type: ignore[arg-type]
    service = await start(services, service_for(here, refresh_seconds=0.2))

    await elsewhere.tracking_user()
    [meeting] = await elsewhere.meetings()
    await eventually(lambda: len(service.job_ids()) == 3)
    assert all(job.startswith(meeting.id) for job in service.job_ids())

    await elsewhere.coach.cancel(ALICE, "1")
    await eventually(lambda: service.job_ids() == set())


async def test_restart_inside_a_window_announces_it_once(
    world: World, services: list[SchedulerService]
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    world.clock.now = world.coach.policy.opens_at(meeting) + timedelta(minutes=20)
    first = await start(services, service_for(world))
    await eventually(lambda: len(world.notifier.sent) == 1)
    await first.stop()

    second = await start(services, service_for(world))
    assert second.job_ids() == {f"{meeting.id}:remind", f"{meeting.id}:close"}
    await second.refresh()
    assert sample("momentum_windows_open") == 1  # what /metrics shows: this one window
    await asyncio.sleep(0.3)
    assert len(world.notifier.sent) == 1
    assert "available until 10:45 (Europe/Paris)" in world.notifier.texts()[0]


async def test_restart_after_a_missed_window_sends_one_message(
    world: World, services: list[SchedulerService]
) -> None:
    await world.tracking_user()
    [meeting] = await world.meetings()
    world.clock.now = world.coach.policy.closes_at(meeting) + timedelta(minutes=30)
    await start(services, service_for(world))
    await eventually(lambda: len(world.notifier.sent) == 1)
    await asyncio.sleep(0.3)
    [text] = world.notifier.texts()
    assert text.startswith("Sorry, I couldn't ping you: your coaching window ran from 08:30")
    stored = await world.store.get_meeting(meeting.id)
    assert stored is not None and stored.status is MeetingStatus.CLOSED


async def two_worlds(
    store_target: StoreTarget, clock: RunningClock, notifier: RecordingNotifier
) -> list[World]:
    """Two scheduler processes' worlds on one database, one clock and one platform."""
    return [
        World(await store_target.open(), clock, notifier=notifier)  # type: ignore[arg-type]
        for _ in range(2)
    ]


async def test_two_schedulers_racing_on_one_store_notify_exactly_once(
    store_target: StoreTarget, services: list[SchedulerService]
) -> None:
    notifier = RecordingNotifier()
    clock = RunningClock(MONDAY)
    worlds = await two_worlds(store_target, clock, notifier)
    await worlds[0].tracking_user()
    [meeting] = await worlds[0].meetings()
    clock.now = worlds[0].coach.policy.opens_at(meeting) - LEAD
    for world in worlds:
        await start(services, service_for(world, refresh_seconds=0.1))
    await eventually(lambda: len(notifier.sent) == 1)
    await asyncio.sleep(0.5)  # both fired, and refreshed a few times
    assert len(notifier.sent) == 1


async def closed_with_a_failed_recap(world: World, fake: FakeAnthropic) -> datetime:
    """Alice talked in her window; at its close the model was down. When it closed."""
    await world.tracking_user()
    [meeting] = await world.meetings()
    closes = world.coach.policy.closes_at(meeting)
    await world.at(world.coach.policy.opens_at(meeting), meeting)
    world.clock.now = meeting.start
    await world.chat("I commit to two runs before Friday.")
    fake.enqueue(HttpError(529))
    await world.at(closes, meeting)
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "🔴"]
    return closes


def recap_requests(fake: FakeAnthropic) -> int:
    return len([r for r in fake.requests if RECAP_INSTRUCTIONS in r.system_text])


async def test_the_next_refresh_sends_a_recap_that_failed_at_the_close(
    world: World, fake: FakeAnthropic, services: list[SchedulerService]
) -> None:
    closes = await closed_with_a_failed_recap(world, fake)
    world.clock.now = closes + timedelta(seconds=30)  # the back-off (1 minute) is not over
    service = await start(services, service_for(world))
    await asyncio.sleep(0.2)
    assert recap_requests(fake) == 1

    fake.enqueue(Reply("Committed to: two runs before Friday."))
    world.clock.now = closes + timedelta(minutes=2)
    await service.refresh()
    await eventually(lambda: len(world.notifier.sent) == 3)
    for _ in range(3):
        await service.refresh()
    await asyncio.sleep(0.3)
    assert [t[:1] for t in world.notifier.texts()] == ["🟢", "🔴", "📝"]
    assert world.notifier.texts()[2].endswith("Committed to: two runs before Friday.")
    assert recap_requests(fake) == 2


async def test_two_schedulers_refreshing_on_a_pending_recap_send_it_once(
    store_target: StoreTarget, fake: FakeAnthropic, services: list[SchedulerService]
) -> None:
    notifier = RecordingNotifier()
    clock = RunningClock(MONDAY)
    llm = anthropic_llm(fake.base_url)
    try:
        worlds = [
            World(await store_target.open(), clock, llm, notifier=notifier)  # type: ignore[arg-type]
            for _ in range(2)
        ]
        closes = await closed_with_a_failed_recap(worlds[0], fake)
        clock.now = closes + timedelta(minutes=2)
        await asyncio.gather(
            *(start(services, service_for(world, refresh_seconds=0.1)) for world in worlds)
        )
        await eventually(lambda: len(notifier.sent) == 3)
        await asyncio.sleep(0.5)  # both refreshed a few times
    finally:
        for service in services:
            await service.stop()
        await llm.aclose()
    assert [t[:1] for t in notifier.texts()] == ["🟢", "🔴", "📝"]
    assert recap_requests(fake) == 2


async def test_a_slow_notification_does_not_hold_up_other_users(
    store: Store, services: list[SchedulerService]
) -> None:
    stuck = RecordingNotifier(gate=asyncio.Event())
    fine = RecordingNotifier()
    world = World(store, RunningClock(MONDAY))  # type: ignore[arg-type]
    world.delivery.notifiers = Notifiers({ALICE.platform: stuck, BOB.platform: fine})
    await world.tracking_user(ALICE)
    await world.tracking_user(BOB)
    [meeting] = await world.meetings(ALICE)
    world.clock.now = world.coach.policy.opens_at(meeting) - LEAD
    await start(services, service_for(world))
    await eventually(lambda: len(fine.sent) == 1)
    assert stuck.attempts == 1 and stuck.sent == []
    stuck.gate.set()  # type: ignore[union-attr]
    await eventually(lambda: len(stuck.sent) == 1)


async def test_run_scheduler_attaches_to_the_coach_until_cancelled(world: World) -> None:
    settings = make_settings(scheduler_refresh_seconds=5)
    task = asyncio.create_task(run_scheduler(world.coach, settings, Notifiers({})))
    await eventually(lambda: len(world.coach.meeting_observers) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert world.coach.meeting_observers == []


async def refused_at_the_opening(world: World) -> datetime:
    """Alice's platform refused every quick try of "your window is open"; when it opened."""
    world.notifier.failures = 4
    await world.tracking_user()
    [meeting] = await world.meetings()
    opens = world.coach.policy.opens_at(meeting)
    await world.keeper.advance(meeting.id, opens)
    assert world.notifier.attempts == 4 and world.notifier.sent == []
    return opens


async def test_a_restarted_scheduler_delivers_a_refused_notice_once(
    world: World, services: list[SchedulerService]
) -> None:
    opens = await refused_at_the_opening(world)
    # The process stopped; a new one starts after the notice's back-off (1 minute).
    world.clock.now = opens + timedelta(minutes=2)
    restarted = World(world.store, world.clock, notifier=world.notifier)
    service = await start(services, service_for(restarted))
    await eventually(lambda: len(world.notifier.sent) == 1)
    for _ in range(3):
        await service.refresh()
    await asyncio.sleep(0.3)
    assert world.notifier.texts() == [
        "🟢 Your coaching window is open: I'm available until 10:45 (Europe/Paris). "
        "What's on your mind?"
    ]
    again = World(world.store, world.clock, notifier=world.notifier)
    await (await start(services, service_for(again))).refresh()
    await asyncio.sleep(0.3)
    assert len(world.notifier.sent) == 1


async def test_two_schedulers_refreshing_on_a_refused_notice_send_it_once(
    store_target: StoreTarget, services: list[SchedulerService]
) -> None:
    notifier = RecordingNotifier()
    clock = RunningClock(MONDAY)
    worlds = await two_worlds(store_target, clock, notifier)
    opens = await refused_at_the_opening(worlds[0])
    clock.now = opens + timedelta(minutes=2)
    await asyncio.gather(
        *(start(services, service_for(world, refresh_seconds=0.1)) for world in worlds)
    )
    await eventually(lambda: len(notifier.sent) == 1)
    await asyncio.sleep(0.5)  # both refreshed a few times
    assert len(notifier.sent) == 1
