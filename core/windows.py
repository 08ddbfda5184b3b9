"""Pure: the steps of a meeting window (open, closing-soon reminder, close) and when each is
due, and the recap's timing. The scheduler (scheduler/windows.py) carries the steps out; the
access policy beside this (core/access.py) decides who may talk in the meantime."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from core.access import WindowPolicy
from core.models import Meeting, MeetingStatus

REMINDER_BEFORE_CLOSE = timedelta(minutes=10)
# Longer than a close message with its retries plus the LLM deadline, so a live try keeps it.
RECAP_LEASE = timedelta(minutes=10)
RECAP_RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
RECAP_CATCH_UP = timedelta(hours=24)
# Meetings this far back are enough to tell whether another window is open or touching.
NEIGHBOURS_LOOKBACK = timedelta(days=1)
LIVE = (MeetingStatus.SCHEDULED, MeetingStatus.OPEN)


class Step(StrEnum):
    OPEN = "open"
    REMIND = "remind"
    CLOSE = "close"


def reminder_at(meeting: Meeting, policy: WindowPolicy) -> datetime | None:
    """When to send the closing-soon reminder; None if the window is too short for one."""
    when = policy.closes_at(meeting) - REMINDER_BEFORE_CLOSE
    return when if when > policy.opens_at(meeting) else None


def step_times(meeting: Meeting, policy: WindowPolicy) -> dict[Step, datetime]:
    """When each step still to be done for this meeting is due."""
    if meeting.status not in LIVE:
        return {}
    times: dict[Step, datetime] = {}
    if meeting.status is MeetingStatus.SCHEDULED:
        times[Step.OPEN] = policy.opens_at(meeting)
    remind = reminder_at(meeting, policy)
    if remind is not None and not meeting.reminder_sent:
        times[Step.REMIND] = remind
    times[Step.CLOSE] = policy.closes_at(meeting)
    return times


def due_steps(meeting: Meeting, now: datetime, policy: WindowPolicy) -> list[Step]:
    return [step for step, when in step_times(meeting, policy).items() if when <= now]


def recap_retry_at(closed_at: datetime, now: datetime) -> datetime:
    """After a failed recap at `now`: wait 1 minute, then 5, then 30 each time, going by how long
    the window has been closed, so that any process, after any restart, keeps the schedule."""
    passed = timedelta(0)
    for delay in RECAP_RETRY_DELAYS:
        passed += delay
        if now - closed_at < passed:
            return now + delay
    return now + RECAP_RETRY_DELAYS[-1]


def recap_settled_until(meeting: Meeting) -> datetime:
    """The claim that means "no more tries": it runs out only when the catch-up is over."""
    return meeting.closes_at + RECAP_CATCH_UP
