"""The scheduler process: APScheduler jobs that fire the window transitions on time.

APScheduler 3.x cannot share a job store between processes, so jobs live in memory and the
database is the truth: jobs are rebuilt from the live meetings at start and every
SCHEDULER_REFRESH_SECONDS (picking up meetings made or cancelled by other processes), and a
meeting scheduled or cancelled through this process's Coach re-plans its jobs at once (a Coach
meetings observer). Every job only calls `WindowKeeper.advance`, which claims each transition
in the store, so a job that runs twice, late, or in two processes at once tells a user once.

Misfires: a job that runs late by up to SCHEDULER_MISFIRE_GRACE_SECONDS (default an hour) still
runs (`coalesce` folds repeats into one run). A job that misses even that is not lost: the next
refresh sees the transition is due and runs a catch-up, which handles lateness itself (see
scheduler.windows: late closes are silent).

Recaps and notices: each refresh also starts a one-off job for every recap still owed and
every notice still undelivered (scheduler.outbox) that is free to try (a failed try whose
back-off is over, or one whose process stopped); each is claimed in the store first, so
schedulers refreshing at the same moment try it once. Jobs, not awaits, so a slow model or
platform does not hold up the refresh. A notice is thus tried again within
SCHEDULER_REFRESH_SECONDS of its next-try time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from core.coach import Coach
from core.config import Settings
from core.metrics import NOTICES_PENDING, WINDOWS_OPEN
from core.models import Meeting, MeetingStatus
from core.session import MeetingsChanged
from core.texts import counted
from core.turn_order import Clock
from core.windows import due_steps, step_times
from scheduler.notify import Delivery, Notifiers
from scheduler.windows import WindowKeeper

log = logging.getLogger(__name__)

# Meetings whose window closed up to this long ago and still await their close are closed
# (silently when past the misfire grace); older ones are left as they are.
CATCH_UP_LOOKBACK = timedelta(days=7)
REFRESH_JOB_ID = "refresh"
CATCH_UP = "catch-up"
RECAP = "recap"
NOTICE = "notice"


def real_now() -> datetime:
    return datetime.now(UTC)


class SchedulerService:
    """Keeps one date job per pending step of every live meeting, in memory.

    Job times come from the injected clock: a step due at `when` runs after `when - clock()`
    of real time, so a test clock set just before a window drives the real scheduler.
    """

    def __init__(
        self,
        keeper: WindowKeeper,
        *,
        refresh_seconds: float,
        misfire_grace_seconds: int,
        clock: Clock,
    ) -> None:
        self.keeper = keeper
        self.windows = keeper.windows
        self.policy = keeper.policy
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "misfire_grace_time": misfire_grace_seconds,
                "coalesce": True,
                "max_instances": 1,
            },
        )
        self._jobs: defaultdict[str, set[str]] = defaultdict(set)  # meeting id -> job ids
        self._meetings_of: defaultdict[str, set[str]] = defaultdict(set)  # user id -> meetings

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    async def start(self) -> None:
        """Start inside the running loop, plan every live meeting, then refresh periodically."""
        self._scheduler.start()
        await self.refresh()
        self._scheduler.add_job(
            self.refresh,
            "interval",
            seconds=self.refresh_seconds,
            id=REFRESH_JOB_ID,
            replace_existing=True,
        )

    async def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the next loop turn

    async def refresh(self) -> None:
        """Re-plan from the database: add what is new, drop what was cancelled or closed, and
        start the recaps still owed."""
        now = self.clock()
        try:
            meetings = await self.windows.live_meetings(now - CATCH_UP_LOOKBACK)
        except Exception:
            log.exception("refreshing scheduler jobs failed; keeping the current ones")
            return
        WINDOWS_OPEN.set(sum(m.status is MeetingStatus.OPEN for m in meetings))
        live = {m.id for m in meetings}
        for gone in set(self._jobs) - live:
            self._drop(gone)
        for meeting in meetings:
            self.plan(meeting, now)
        await self.catch_up_recaps(now)
        await self.retry_notices(now)

    async def catch_up_recaps(self, now: datetime) -> None:
        """A job, due at once, for each recap still owed (not tracked with the window jobs: it
        is for a closed meeting, and a refresh must not drop it)."""
        try:
            pending = await self.keeper.pending_recaps(now)
        except Exception:
            log.exception("looking for recaps to catch up on failed; trying at the next refresh")
            return
        for meeting in pending:
            self._run_soon(self._recap, meeting.id, f"{meeting.id}:{RECAP}", "recap of meeting")

    async def retry_notices(self, now: datetime) -> None:
        """A job, due at once, for each notice waiting to be tried again (scheduler.outbox)."""
        try:
            pending = await self.keeper.outbox.pending(now)
        except Exception:
            log.exception("looking for notices to try again failed; trying at the next refresh")
            return
        NOTICES_PENDING.set(len(pending))
        for notice in pending:
            self._run_soon(self._notice, notice.id, f"{NOTICE}:{notice.id}", "notice")

    def plan(self, meeting: Meeting, now: datetime) -> None:
        """Jobs for the steps still ahead, plus one catch-up run if a step is already due."""
        self._meetings_of[meeting.user_id].add(meeting.id)
        wanted: set[str] = set()
        for step, when in step_times(meeting, self.policy).items():
            if when > now:
                wanted.add(self._add(meeting.id, step.value, when, now))
        if due_steps(meeting, now, self.policy):
            wanted.add(self._add(meeting.id, CATCH_UP, now, now))
        for stale in self._jobs[meeting.id] - wanted:
            self._remove(stale)
        self._jobs[meeting.id] = wanted
        if not wanted:
            self._drop(meeting.id)

    def meetings_changed(self, change: MeetingsChanged) -> None:
        """The Coach's observer: re-plan at once for meetings made or cancelled here."""
        now = self.clock()
        for meeting in change.added:
            self.plan(meeting, now)
        for meeting in change.cancelled:
            self._drop(meeting.id)
        if change.forgotten:
            for meeting_id in list(self._meetings_of.get(change.user_id, ())):
                self._drop(meeting_id)
            self._meetings_of.pop(change.user_id, None)

    def job_ids(self) -> set[str]:
        return {job.id for job in self._scheduler.get_jobs()} - {REFRESH_JOB_ID}

    async def _run(self, meeting_id: str, step: str) -> None:
        try:
            await self.keeper.advance(meeting_id, self.clock())
        except Exception:
            log.exception("window step %s of meeting %s failed", step, meeting_id)

    async def _recap(self, meeting_id: str) -> None:
        try:
            await self.keeper.catch_up_recap(meeting_id, self.clock())
        except Exception:  # its claim runs out, and a later refresh tries again
            log.exception("recap of meeting %s failed", meeting_id)

    async def _notice(self, key: str) -> None:
        try:
            await self.keeper.outbox.retry(key, self.clock())
        except Exception:  # its claim runs out, and a later refresh tries again
            log.exception("notice %s failed", key)

    def _run_soon(
        self, job: Callable[[str], Awaitable[None]], arg: str, job_id: str, name: str
    ) -> None:
        """A one-off job due at once; a refresh that finds the same work replaces it."""
        self._scheduler.add_job(
            job,
            DateTrigger(run_date=real_now()),
            args=[arg],
            id=job_id,
            name=f"{name} {arg}",
            replace_existing=True,
        )

    def _add(self, meeting_id: str, step: str, when: datetime, now: datetime) -> str:
        job_id = f"{meeting_id}:{step}"
        self._scheduler.add_job(
            self._run,
            DateTrigger(run_date=real_now() + (when - now)),
            args=[meeting_id, step],
            id=job_id,
            name=f"{step} window of meeting {meeting_id}",
            replace_existing=True,
        )
        return job_id

    def _remove(self, job_id: str) -> None:
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    def _drop(self, meeting_id: str) -> None:
        for job_id in self._jobs.pop(meeting_id, set()):
            self._remove(job_id)
        for meetings in self._meetings_of.values():
            meetings.discard(meeting_id)


async def run_scheduler(coach: Coach, settings: Settings, notifiers: Notifiers) -> None:
    """Run the scheduler for this coach until cancelled; `notifiers` reach the users."""
    # APScheduler logs every job run at INFO (the refresh alone, each minute); ours say more.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    log.info("scheduler: %s", notifiers.describe())
    keeper = WindowKeeper(
        coach,
        Delivery(notifiers, delays=settings.notify_retry_seconds),
        late_grace=timedelta(seconds=settings.scheduler_misfire_grace_seconds),
        notice_backoff=[timedelta(seconds=s) for s in settings.notice_backoff_seconds],
    )
    service = SchedulerService(
        keeper,
        refresh_seconds=settings.scheduler_refresh_seconds,
        misfire_grace_seconds=settings.scheduler_misfire_grace_seconds,
        clock=coach.windows.now,
    )
    coach.meeting_observers.append(service.meetings_changed)
    try:
        await service.start()
        log.info("scheduler started: %s", counted(len(service.job_ids()), "window job"))
        await asyncio.Event().wait()  # until cancelled
    finally:
        coach.meeting_observers.remove(service.meetings_changed)
        await service.stop()
