"""Who may talk to the coach now. Pure: a function of the phase, the meetings and `now`.

Goal setting is always open. In tracking, the coach is reachable inside a meeting's window,
[start - before, end + after), for any meeting that is not cancelled. Windows that overlap or
touch merge into one, so the close time shown is when the coach really becomes unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.models import Access, AccessReason, Meeting, MeetingStatus, Phase
from core.texts import counted
from core.zones import UserTime


@dataclass(frozen=True)
class WindowPolicy:
    before: timedelta = timedelta(minutes=30)
    after: timedelta = timedelta(minutes=60)

    def opens_at(self, meeting: Meeting) -> datetime:
        return meeting.start - self.before

    def closes_at(self, meeting: Meeting) -> datetime:
        return meeting.end + self.after

    def is_open(self, meeting: Meeting, now: datetime) -> bool:
        return self.opens_at(meeting) <= now < self.closes_at(meeting)


def _live(meetings: Iterable[Meeting]) -> list[Meeting]:
    return sorted(
        (m for m in meetings if m.status is not MeetingStatus.CANCELLED), key=lambda m: m.start
    )


def open_meeting(
    meetings: Iterable[Meeting], now: datetime, policy: WindowPolicy
) -> Meeting | None:
    """The meeting whose window is open at `now` (the earliest-starting one if several are)."""
    return next((m for m in _live(meetings) if policy.is_open(m, now)), None)


def merged_close(
    meetings: Iterable[Meeting], now: datetime, policy: WindowPolicy
) -> datetime | None:
    """When the coach stops being reachable, following windows that overlap or touch."""
    close: datetime | None = None
    for meeting in sorted(_live(meetings), key=policy.opens_at):
        opens, closes = policy.opens_at(meeting), policy.closes_at(meeting)
        if close is None:
            if opens <= now < closes:
                close = closes
        elif opens <= close:
            close = max(close, closes)
    return close


def next_opening(
    meetings: Iterable[Meeting], now: datetime, policy: WindowPolicy
) -> tuple[Meeting, datetime] | None:
    """The next meeting whose window opens after `now`, and when it opens."""
    upcoming = [(policy.opens_at(m), m) for m in _live(meetings) if policy.opens_at(m) > now]
    if not upcoming:
        return None
    opens, meeting = min(upcoming, key=lambda pair: pair[0])
    return meeting, opens


def decide_access(
    phase: Phase, meetings: Iterable[Meeting], now: datetime, policy: WindowPolicy
) -> Access:
    meetings = list(meetings)
    upcoming = next_opening(meetings, now, policy)
    next_meeting, next_opens = upcoming if upcoming else (None, None)
    if phase is Phase.GOAL_SETTING:
        return Access(
            allowed=True,
            reason=AccessReason.GOAL_SETTING,
            phase=phase,
            next_meeting=next_meeting,
            next_opens_at=next_opens,
        )
    current = open_meeting(meetings, now, policy)
    if current is not None:
        return Access(
            allowed=True,
            reason=AccessReason.IN_WINDOW,
            phase=phase,
            meeting=current,
            window_closes_at=merged_close(meetings, now, policy),
            next_meeting=next_meeting,
            next_opens_at=next_opens,
        )
    return Access(
        allowed=False,
        reason=AccessReason.OUTSIDE_WINDOW if upcoming else AccessReason.NO_MEETING,
        phase=phase,
        next_meeting=next_meeting,
        next_opens_at=next_opens,
    )


def _minutes(delta: timedelta) -> str:
    return counted(int(delta.total_seconds() // 60), "minute")


def _window_hours(policy: WindowPolicy) -> str:
    """`30 minutes before a meeting until 60 minutes after it ends`, and plain words for 0."""
    opens = f"{_minutes(policy.before)} before a meeting" if policy.before else "a meeting's start"
    closes = f"{_minutes(policy.after)} after it ends" if policy.after else "it ends"
    return f"{opens} until {closes}"


def describe_access(
    access: Access,
    when: Callable[[datetime], str],
    policy: WindowPolicy,
    *,
    tracking_started: bool = False,
) -> str:
    """One friendly sentence about access; `when` renders a time for the user's platform.

    `tracking_started` words it as the answer to `/track`, which says "tracking" once.
    """
    hours = _window_hours(policy)
    tracking = "You're in tracking now" if tracking_started else "I'm in tracking mode"
    match access.reason:
        case AccessReason.GOAL_SETTING:
            return "You're in goal setting, so I'm here any time. Let's shape your goals!"
        case AccessReason.IN_WINDOW:
            assert access.window_closes_at is not None
            lead = f"{tracking}, and your" if tracking_started else "Your"
            closes = when(access.window_closes_at)
            return f"{lead} coaching window is open until {closes}. Let's go!"
        case AccessReason.OUTSIDE_WINDOW:
            assert access.next_opens_at is not None
            return (
                f"{tracking}: I'm available from {hours}. "
                f"Your next window opens {when(access.next_opens_at)}."
            )
        case AccessReason.NO_MEETING:
            return (
                f"{tracking}: I'm available from {hours}, and you have no meeting "
                "scheduled. Schedule one with `/schedule tomorrow 9am`, or go back to goal "
                "setting with `/goalsetting`."
            )


@dataclass(frozen=True)
class Standing:
    """An access decision and what it takes to say it: the window policy, and how the user
    reads times (`UserTime`). Adapters phrase it without asking the coach again."""

    access: Access
    policy: WindowPolicy
    time: UserTime

    def describe(
        self, when: Callable[[datetime], str] | None = None, *, tracking_started: bool = False
    ) -> str:
        """The access sentence, times in `when`'s words (default: the user's wall time)."""
        return describe_access(
            self.access, when or self.time, self.policy, tracking_started=tracking_started
        )
