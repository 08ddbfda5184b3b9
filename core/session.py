"""One user's requests to the coach (a command, a Home tab refresh), the user looked up once.

`Coach.session(identity)` resolves the user; every method here works on that user and keeps
it up to date after a change of its own (phase, timezone). Errors a user can cause raise
`CoachError`, whose `user_text` is safe to show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from core import timeparse, zones
from core.access import Standing, WindowPolicy
from core.config import Settings
from core.errors import CoachError
from core.models import (
    Commitment,
    CommitmentStatus,
    Goal,
    GoalStatus,
    Identity,
    Meeting,
    MeetingStatus,
    Message,
    Phase,
    ProgressEntry,
    User,
    new_id,
)
from core.progress import (
    MAX_PROGRESS_CHARS,
    GoalProgress,
    ProgressLogged,
    goals_progress,
    streak_weeks,
)
from core.text import clean_text
from core.texts import counted
from core.turn import Replies, ReplyStore
from core.turn_order import Clock

MAX_GOAL_CHARS = 300
MAX_ACTIVE_GOALS = 20
MAX_PAGE = 10**9  # no history is that long; an absurd page must not overflow SQLite's OFFSET


@dataclass(frozen=True)
class MeetingsChanged:
    """Meetings a Coach just scheduled or cancelled, or a user it forgot.

    The scheduler observes these to re-plan its jobs at once instead of at its next refresh.
    """

    user_id: str
    added: tuple[Meeting, ...] = ()
    cancelled: tuple[Meeting, ...] = ()
    forgotten: bool = False


MeetingsObserver = Callable[[MeetingsChanged], None]


@dataclass(frozen=True)
class HistoryPage:
    messages: list[Message]  # newest first
    page: int
    pages: int
    total: int


@dataclass(frozen=True)
class Cancelled:
    meetings: list[Meeting]
    standing: Standing  # after the cancel
    closed_window: bool  # a window open until now was one of them, and is closed now


class SessionStore(ReplyStore, Protocol):
    """What a user's requests need of the store, besides what the reply pipeline needs."""

    async def update_user(
        self,
        user_id: str,
        *,
        phase: Phase | None = None,
        timezone: str | None = None,
        welcomed: bool | None = None,
    ) -> User | None: ...
    async def delete_user(self, user_id: str) -> None:
        """Delete the user and everything of theirs (turn lease and replies in flight too)."""

    async def history_page(
        self, user_id: str, page: int, page_size: int
    ) -> tuple[list[Message], int]:
        """Page `page` (1-based, newest first) and the total number of messages."""

    async def clear_messages(self, user_id: str) -> int: ...
    async def add_goal(self, goal: Goal) -> None: ...
    async def close_goal(
        self, user_id: str, goal_id: str, status: GoalStatus, now: datetime
    ) -> Goal | None:
        """Mark an active goal done or dropped; None if there is no such active goal."""

    async def add_progress(self, entry: ProgressEntry) -> None: ...
    async def add_meetings(self, meetings: Sequence[Meeting]) -> None: ...
    async def cancel_meetings(self, user_id: str, meeting_ids: Sequence[str]) -> int:
        """Cancel those of the user's meetings that have not closed; returns how many."""

    async def messages_between(
        self, user_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Message]:
        """Messages with start <= created_at < end, oldest first."""

    async def list_identities(self, user_id: str) -> list[Identity]:
        """Every identity of the user: its own (primary) first, then those linked to it,
        longest linked first."""


@dataclass(frozen=True)
class Desk:
    """What every Session of one Coach shares; the Coach builds it once."""

    store: SessionStore
    replies: Replies
    settings: Settings
    policy: WindowPolicy
    clock: Clock
    meetings_changed: MeetingsObserver


class Session:
    def __init__(self, desk: Desk, identity: Identity, user: User) -> None:
        self._desk, self.identity, self.user = desk, identity, user
        self._store = desk.store

    # Time

    @property
    def zone(self) -> ZoneInfo:
        return self._desk.replies.zone(self.user)

    @property
    def time(self) -> zones.UserTime:
        """How this user reads times."""
        return self._desk.replies.user_time(self.user)

    def local(self, moment: datetime) -> str:
        return zones.format_local(moment, self.zone)

    def now(self) -> datetime:
        return self._desk.clock()

    # Access and history

    async def access(self) -> Standing:
        """Whether the user may talk to the coach now, and when next."""
        return await self._desk.replies.standing(self.user, self.now())

    async def history(self, page: int = 1, page_size: int = 10) -> HistoryPage:
        if page < 1:
            raise CoachError("Pages start at 1.")
        messages, total = await self._store.history_page(
            self.user.id, min(page, MAX_PAGE), page_size
        )
        pages = max(1, -(-total // page_size))
        if page > pages:
            raise CoachError(f"Your history has only {counted(pages, 'page')}.")
        return HistoryPage(messages, page, pages, total)

    async def clear_history(self) -> int:
        async with self._desk.replies.exclusive(self.identity, self.user):
            return await self._store.clear_messages(self.user.id)

    # Goals

    async def goals(self, *, include_closed: bool = False) -> list[Goal]:
        status = None if include_closed else GoalStatus.ACTIVE
        return await self._store.list_goals(self.user.id, status)

    async def add_goal(self, text: str) -> Goal:
        text = " ".join(clean_text(text).split())  # one line, nothing invisible at the edges
        if not text:
            raise CoachError("What's the goal? Try `/goal add Run 5 km by March`.")
        if len(text) > MAX_GOAL_CHARS:
            raise CoachError(f"Keep a goal under {MAX_GOAL_CHARS} characters: short goals stick.")
        active = await self.goals()
        if len(active) >= MAX_ACTIVE_GOALS:
            raise CoachError(
                f"You have {counted(len(active), 'active goal')}. Finish or drop one first."
            )
        goal = Goal(user_id=self.user.id, text=text, created_at=self.now())
        await self._store.add_goal(goal)
        return goal

    async def close_goal(self, ref: str, status: GoalStatus) -> Goal:
        """Mark the active goal numbered `ref` (as listed by `goals`) done or dropped."""
        goal = _pick(await self.goals(), ref, "goal", "/goals")
        closed = await self._store.close_goal(self.user.id, goal.id, status, self.now())
        if closed is None:
            raise CoachError("That goal was already closed.")
        return closed

    # What the coach carries forward (core/notes.py): commitments and its notes on the user

    async def commitments(self) -> list[Commitment]:
        """The open commitments, oldest first (as /commitments numbers them)."""
        return await self._store.list_commitments(self.user.id, CommitmentStatus.OPEN)

    async def close_commitment(self, ref: str) -> Commitment:
        """Mark the open commitment numbered `ref` (as listed by `commitments`) done."""
        commitment = _pick(await self.commitments(), ref, "commitment", "/commitments")
        closed = await self._store.close_commitment(self.user.id, commitment.id, self.now())
        if closed is None:
            raise CoachError("That commitment was already marked done.")
        return closed

    async def memory(self) -> list[str]:
        """The coach's notes on the user, in order (as /memory numbers them)."""
        return await self._store.memory_notes(self.user.id)

    async def forget_memory(self, ref: str) -> str:
        """Remove the note numbered `ref` in `memory`; the note removed."""
        notes = await self.memory()
        note = _pick(notes, ref, "note", "/memory")
        index = int(ref.strip().lstrip("#")) - 1
        kept = notes[:index] + notes[index + 1 :]
        if not await self._store.replace_memory_notes(
            self.user.id, kept, self.now(), expected=notes
        ):
            raise CoachError("My notes on you changed just now. See `/memory` and try again.")
        return note

    # Progress (core/progress.py)

    async def log_progress(self, ref: str, text: str) -> ProgressLogged:
        """Note what the user did towards the active goal numbered `ref` (as `goals` lists
        them), dated now; what was saved and the goal's streak after it."""
        goals = await self.goals()
        goal = _pick(goals, ref, "goal", "/goals")
        text = " ".join(clean_text(text).split())
        if not text:
            raise CoachError("What did you do? Try `/log 1 ran 3 km`.")
        if len(text) > MAX_PROGRESS_CHARS:
            raise CoachError(
                f"Keep a progress note under {MAX_PROGRESS_CHARS} characters: the gist is enough."
            )
        entry = ProgressEntry(
            user_id=self.user.id, goal_id=goal.id, text=text, created_at=self.now()
        )
        await self._store.add_progress(entry)
        logged = await self._store.list_progress(self.user.id, goal.id)
        streak = streak_weeks((e.created_at for e in logged), self.now(), self.zone)
        return ProgressLogged(goal, goals.index(goal) + 1, entry, streak)

    async def goals_progress(self) -> list[GoalProgress]:
        """Each active goal, numbered as `goals` lists them, with its latest entry and streak."""
        entries = await self._store.list_progress(self.user.id)
        return goals_progress(await self.goals(), entries, self.now(), self.zone)

    # Meetings

    async def meetings(self) -> list[Meeting]:
        """Upcoming and current meetings, soonest first."""
        meetings = await self._store.list_meetings(self.user.id, closing_after=self.now())
        return [m for m in meetings if m.status is not MeetingStatus.CANCELLED]

    async def schedule(self, text: str) -> list[Meeting]:
        """Schedule from the user's words, e.g. `tomorrow 9am for 30m weekly`."""
        new = self._planned(text)
        existing = await self.meetings()
        for meeting in new:
            clash = next((m for m in existing if overlaps(m, meeting)), None)
            if clash is not None:
                raise CoachError(
                    f"That overlaps your meeting on {self.local(clash.start)}. "
                    "Pick another time or cancel that one first."
                )
        await self._store.add_meetings(new)
        self._desk.meetings_changed(MeetingsChanged(self.user.id, added=tuple(new)))
        return new

    def _planned(self, text: str) -> list[Meeting]:
        s, policy = self._desk.settings, self._desk.policy
        try:
            request = timeparse.parse_schedule_args(
                text,
                now=self.now(),
                tz=self.zone,
                default_duration=timedelta(minutes=s.meeting_default_minutes),
                min_duration=timedelta(minutes=s.meeting_min_minutes),
                max_duration=timedelta(minutes=s.meeting_max_minutes),
            )
        except zones.WhenError as error:
            raise CoachError(str(error)) from error
        minutes = int(request.duration.total_seconds() // 60)
        series = new_id() if request.weekly else None
        count = s.weekly_occurrences if series else 1
        return [
            Meeting(
                user_id=self.user.id,
                start=start,
                duration_minutes=minutes,
                series_id=series,
                closes_at=start + timedelta(minutes=minutes) + policy.after,
            )
            for start in zones.weekly_starts(request.start, self.zone, count)
        ]

    async def cancel(self, ref: str, *, series: bool = False) -> Cancelled:
        """Cancel the meeting numbered `ref` in `meetings`, or with `series`, its whole series."""
        upcoming = await self.meetings()
        meeting = _pick(upcoming, ref, "meeting", "/meetings")
        if series and meeting.series_id is None:
            raise CoachError("That meeting is not part of a weekly series.")
        targets = [m for m in upcoming if series and m.series_id == meeting.series_id] or [meeting]
        await self._store.cancel_meetings(self.user.id, [m.id for m in targets])
        self._desk.meetings_changed(MeetingsChanged(self.user.id, cancelled=tuple(targets)))
        now = self.now()
        closed = self.user.phase is Phase.TRACKING and any(
            self._desk.policy.is_open(m, now) for m in targets
        )
        return Cancelled(targets, await self.access(), closed)

    # Phase and timezone

    async def start_tracking(self) -> User:
        missing = []
        if not await self.goals():
            missing.append("at least one active goal (`/goal add ...`)")
        if not any(m.start > self.now() for m in await self.meetings()):
            missing.append("an upcoming meeting (`/schedule tomorrow 9am`)")
        if missing:
            raise CoachError("To start tracking you need " + " and ".join(missing) + ".")
        return await self._update(phase=Phase.TRACKING)

    async def back_to_goal_setting(self) -> User:
        return await self._update(phase=Phase.GOAL_SETTING)

    async def set_timezone(self, name: str) -> User:
        try:
            zone = zones.resolve_timezone(name)
        except zones.WhenError as error:
            raise CoachError(str(error)) from error
        return await self._update(timezone=zone.key)

    async def suggest_timezone(self, name: str) -> None:
        """Adopt the platform's timezone for a user who has not chosen one."""
        if self.user.timezone is not None:
            return
        try:
            zone = zones.resolve_timezone(name)
        except zones.WhenError:
            return
        await self._update(timezone=zone.key)

    @property
    def timezone_name(self) -> str:
        """The user's timezone, or the default one, said so."""
        return self.user.timezone or f"{self._desk.settings.default_timezone} (default)"

    async def _update(self, **changes: Any) -> User:
        updated = await self._store.update_user(self.user.id, **changes)
        if updated is None:
            raise CoachError("I couldn't find you any more: were you just forgotten?")
        self.user = updated
        return updated

    # Their data

    async def export(self) -> dict[str, Any]:
        """Everything stored about the user, as JSON-ready data."""
        store, user_id = self._store, self.user.id
        return {
            "user": self.user.model_dump(mode="json"),
            "identities": [i.model_dump(mode="json") for i in await store.list_identities(user_id)],
            "goals": [g.model_dump(mode="json") for g in await store.list_goals(user_id)],
            "commitments": [
                c.model_dump(mode="json") for c in await store.list_commitments(user_id)
            ],
            "memory": await store.memory_notes(user_id),
            "progress": [p.model_dump(mode="json") for p in await store.list_progress(user_id)],
            "meetings": [m.model_dump(mode="json") for m in await store.list_meetings(user_id)],
            "messages": [m.model_dump(mode="json") for m in await store.messages_between(user_id)],
        }

    async def forget(self) -> None:
        async with self._desk.replies.exclusive(self.identity, self.user):
            await self._store.delete_user(self.user.id)
        self._desk.meetings_changed(MeetingsChanged(self.user.id, forgotten=True))


T = TypeVar("T")


def _pick(items: Sequence[T], ref: str, noun: str, command: str) -> T:
    ref = ref.strip().lstrip("#")
    # isdecimal, not isdigit: int() refuses digits such as `²`, which isdigit accepts.
    if not ref.isdecimal() or not 1 <= int(ref) <= len(items):
        if not items:
            raise CoachError(f"You have no {noun}s right now.")
        raise CoachError(f"Use the {noun}'s number from `{command}` (1 to {len(items)}).")
    return items[int(ref) - 1]


def overlaps(a: Meeting, b: Meeting) -> bool:
    return a.start < b.end and b.start < a.end
