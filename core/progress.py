"""Progress on goals, pure: streaks of weeks, and each goal's latest entry.

A week is an ISO week (Monday to Sunday) on the user's own calendar, so an entry logged
late on a Sunday evening in Tokyo counts for that Sunday's week, not for UTC's Monday. A
streak is the number of consecutive weeks with at least one entry, ending in this week or
in last week: a week with nothing logged yet is not a broken streak until it is over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from core.models import Goal, ProgressEntry
from core.texts import counted

MAX_PROGRESS_CHARS = 500  # a note of what was done, not a diary page


def week_of(moment: datetime, zone: ZoneInfo) -> date:
    """The Monday that starts `moment`'s ISO week in `zone`."""
    day = moment.astimezone(zone).date()
    return day - timedelta(days=day.weekday())


def streak_weeks(logged: Iterable[datetime], now: datetime, zone: ZoneInfo) -> int:
    """Consecutive weeks with progress, counted back from this week (or last week, when
    nothing is logged yet this week); 0 when the last entry is older than last week."""
    weeks = {week_of(moment, zone) for moment in logged}
    week = week_of(now, zone)
    if week not in weeks:
        week -= timedelta(weeks=1)
    streak = 0
    while week in weeks:
        streak += 1
        week -= timedelta(weeks=1)
    return streak


@dataclass(frozen=True)
class GoalProgress:
    """An active goal as `/goals` numbers it, its latest entry and its streak."""

    goal: Goal
    number: int
    latest: ProgressEntry | None
    streak: int


@dataclass(frozen=True)
class ProgressLogged:
    """What `log_progress` just saved, and where the goal stands now."""

    goal: Goal
    number: int  # the goal's number in /goals
    entry: ProgressEntry
    streak: int


def goals_progress(
    goals: Sequence[Goal], entries: Iterable[ProgressEntry], now: datetime, zone: ZoneInfo
) -> list[GoalProgress]:
    """Each goal (numbered in order from 1) with its latest entry and streak; `entries` in
    any order, of these goals or others."""
    by_goal: dict[str, list[ProgressEntry]] = {}
    for entry in entries:
        by_goal.setdefault(entry.goal_id, []).append(entry)
    result = []
    for number, goal in enumerate(goals, 1):
        own = by_goal.get(goal.id, [])
        # max keeps the first of equal times; entries come oldest first, so take the last.
        latest = max(reversed(own), key=lambda e: e.created_at, default=None)
        streak = streak_weeks((e.created_at for e in own), now, zone)
        result.append(GoalProgress(goal, number, latest, streak))
    return result


def logged_text(logged: ProgressLogged) -> str:
    """What the user is told when progress is logged, by `/log` or a confirmed proposal."""
    return (
        f"Logged for goal {logged.number} ({logged.goal.text}): {logged.entry.text}. "
        + streak_text(logged.streak)
    )


def streak_text(streak: int) -> str:
    """How a streak reads after an entry: `3 weeks in a row — keep it going!`."""
    if streak <= 1:
        return "On the board this week — log again next week to start a streak!"
    return f"{counted(streak, 'week')} in a row — keep it going!"
