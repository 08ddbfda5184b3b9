"""The Coach facade: the one entry point that adapters and the scheduler call.

Adapters translate platform events into these calls and render what comes back; they hold
no coaching logic. `reply` streams `ReplyEvent`s; the other methods return data or raise
`CoachError`, whose `user_text` is safe to show as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from core import timeparse
from core.access import WindowPolicy, decide_access, describe_access
from core.config import Settings
from core.llm import LLM, Completion, LLMError, UnconfiguredLLM
from core.models import (
    Access,
    Goal,
    GoalStatus,
    Identity,
    Meeting,
    MeetingStatus,
    Message,
    MessageMeta,
    Phase,
    Role,
    Usage,
    User,
    new_id,
)
from core.persona import CoachContext, Persona, conversation, system_blocks
from core.safety import SAFETY_REPLY, is_crisis
from core.store import MeetingFlag, Store, StoreUnavailable
from core.text import clean_text

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_GOAL_CHARS = 300
MAX_ACTIVE_GOALS = 20
STORE_DOWN_TEXT = (
    "I can't reach my memory right now, so nothing was saved. Please try again in a minute."
)
STORE_DOWN_AFTER_REPLY_TEXT = (  # the user has seen (part of) the reply; it was not kept
    "I can't reach my memory right now, so I won't remember this reply. "
    "Please try again in a minute."
)
INTERNAL_ERROR_TEXT = "Something went wrong on my side. It has been logged; please try again."
EMPTY_MESSAGE_TEXT = (
    "I found no text in that message, and text is all I can read. "
    "Type something and I'm all yours!"
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class CoachError(Exception):
    """A request the coach cannot carry out; `user_text` says why, for the user."""

    def __init__(self, user_text: str) -> None:
        super().__init__(user_text)
        self.user_text = user_text


# Events streamed by `Coach.reply`, in order: [Welcome] then one of
# SafetyReply | Denied | Failed | (Chunk* then Done or Failed).


@dataclass(frozen=True)
class Welcome:
    text: str


@dataclass(frozen=True)
class Chunk:
    text: str


@dataclass(frozen=True)
class Done:
    message_id: str
    text: str
    usage: Usage | None


@dataclass(frozen=True)
class SafetyReply:
    text: str


@dataclass(frozen=True)
class Denied:
    access: Access
    text: str


@dataclass(frozen=True)
class Failed:
    kind: str
    user_text: str


ReplyEvent = Welcome | Chunk | Done | SafetyReply | Denied | Failed


@dataclass(frozen=True)
class MeetingsChanged:
    """Meetings this Coach just scheduled or cancelled, or a user it forgot.

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
class Prompt:
    """A turn's request to the model: system blocks and alternating messages."""

    system: list[dict[str, Any]]
    messages: list[dict[str, str]]


@dataclass
class EventClaim:
    """A platform event's dedupe key, once claimed, and whether it must stay claimed.

    It stays once the user's message is saved or the user got an answer; a turn that fails
    before either releases it, so the platform's retry of the event is answered instead of
    being taken for a duplicate of a message that was never kept.
    """

    key: str | None = None
    settled: bool = False


class UserLocks:
    """One lock per user, so a user's turns run in order; freed when nobody waits."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: defaultdict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, user_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        self._holders[user_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._holders[user_id] -= 1
            if not self._holders[user_id]:
                del self._holders[user_id], self._locks[user_id]


class Coach:
    def __init__(
        self,
        store: Store,
        llm: LLM | None,
        persona: Persona,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        on_meetings_changed: MeetingsObserver | None = None,
    ) -> None:
        self.store = store
        self.llm: LLM = llm or UnconfiguredLLM()
        self.persona = persona
        self.settings = settings
        self.policy = WindowPolicy(settings.window_before, settings.window_after)
        self.clock = clock
        self._turns = UserLocks()
        # Claims a failed turn could not release (the database was down too): released
        # before the next claim, so a retry of those events is not taken for a duplicate.
        self._unreleased: set[str] = set()
        # Called after meetings change; the scheduler appends itself when it runs in-process.
        self.meeting_observers: list[MeetingsObserver] = (
            [on_meetings_changed] if on_meetings_changed else []
        )

    @property
    def chat_configured(self) -> bool:
        return not isinstance(self.llm, UnconfiguredLLM)

    # Users and time

    async def user(self, identity: Identity) -> User:
        user, _ = await self.store.get_or_create_user(identity, self.clock())
        return user

    def zone(self, user: User) -> ZoneInfo:
        return ZoneInfo(user.timezone or self.settings.default_timezone)

    def local(self, user: User, when: datetime) -> str:
        return timeparse.format_local(when, self.zone(user))

    # The reply

    async def reply(
        self, identity: Identity, text: str, *, event_id: str | None = None
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Answer one user message. Never raises: every failure ends in a `Failed` event."""
        claim = EventClaim()
        try:
            async for event in self._reply(identity, text, event_id, claim):
                if not isinstance(event, Welcome):
                    claim.settled = True  # answered: a retry must not answer again
                yield event
        except StoreUnavailable as error:
            log.error("store unavailable while replying to %s: %s", identity.external_id, error)
            await self._release(claim)
            yield Failed(
                "store_unavailable",
                STORE_DOWN_AFTER_REPLY_TEXT if claim.settled else STORE_DOWN_TEXT,
            )
        except Exception:
            log.exception("reply failed for %s:%s", identity.platform, identity.external_id)
            await self._release(claim)
            yield Failed("internal", INTERNAL_ERROR_TEXT)

    async def _release(self, claim: EventClaim) -> None:
        """Give back the claim of a turn that failed before it kept or answered anything."""
        if claim.key is None or claim.settled:
            return
        try:
            await self.store.release_event(claim.key)
        except StoreUnavailable:
            log.warning("claim %s not released (store down); retried before the next", claim.key)
            self._unreleased.add(claim.key)

    async def _claim(self, key: str, now: datetime) -> bool:
        for stale in list(self._unreleased):
            await self.store.release_event(stale)
            self._unreleased.discard(stale)
        expires = now + timedelta(hours=self.settings.dedupe_ttl_hours)
        return await self.store.claim_event(key, now, expires)

    async def claim_once(self, key: str) -> bool:
        """True the first time `key` is claimed (within the dedupe TTL), False after: for a
        platform action that may arrive twice, at whichever process is running (a
        confirmation button clicked twice, or again after a restart)."""
        return await self._claim(key, self.clock())

    async def release_claim(self, key: str) -> None:
        """Give back a `claim_once` key whose action did not happen after all."""
        await self._release(EventClaim(key=key))

    async def _reply(
        self, identity: Identity, text: str, event_id: str | None, claim: EventClaim
    ) -> AsyncGenerator[ReplyEvent, None]:
        # Control and bidi characters removed, invisible edges trimmed (core/text.py): a
        # message of only ZWSP/BOM/NUL counts as empty, like one of only spaces.
        text = clean_text(text)
        if not text:
            # Also what a file or image without words gets, on every platform.
            yield Failed("empty", EMPTY_MESSAGE_TEXT)
            return
        if len(text) > self.settings.max_input_chars:
            yield Failed(
                "too_long",
                (
                    f"That message is {len(text):,} characters; I can take up to "
                    f"{self.settings.max_input_chars:,}. Could you shorten it or send it in parts?"
                ),
            )
            return
        now = self.clock()
        if event_id is not None:
            key = f"{identity.platform}:{event_id}"
            if not await self._claim(key, now):
                log.info("duplicate event %s ignored", key)
                yield Failed("duplicate", "I've already answered this message.")
                return
            claim.key = key
        user, _ = await self.store.get_or_create_user(identity, now)
        if is_crisis(text):
            # Before the welcome too: a cheerful introduction is the wrong first answer here.
            yield SafetyReply(SAFETY_REPLY)
            await self._save_safety_turn(user, text, now)
            return
        if not self.chat_configured:  # one clear line; the welcome waits for a working coach
            llm_error = LLMError("not_configured")
            yield Failed(llm_error.kind, llm_error.user_text)
            return
        if not user.welcomed:
            await self.store.update_user(user.id, welcomed=True)
            yield Welcome(self.persona.welcome)
        access = await self._access(user, now)
        if not access.allowed:
            yield Denied(
                access, describe_access(access, lambda t: self.local(user, t), self.policy)
            )
            return
        async with self._turns.hold(user.id):
            async for event in self._turn(user, text, access, now, claim):
                yield event

    async def _turn(
        self, user: User, text: str, access: Access, received: datetime, claim: EventClaim
    ) -> AsyncGenerator[ReplyEvent, None]:
        """One conversation turn, holding the user's lock: save, build context, stream, save."""
        meeting_id = access.meeting.id if access.meeting else None
        meta = MessageMeta(platform=user.identity.platform, meeting_id=meeting_id)
        prompt = await self.build_context(user, text, access.meeting)
        await self.store.add_message(
            Message(
                user_id=user.id,
                role=Role.USER,
                text=text,
                created_at=received,
                meta=meta,
            )
        )
        claim.settled = True  # the message is kept: from here on a retry is a duplicate
        started = time.perf_counter()
        first_token_ms: int | None = None
        parts: list[str] = []
        completion: Completion | None = None
        error: LLMError | None = None
        try:
            async for item in self.llm.stream(prompt.system, prompt.messages):
                if isinstance(item, Completion):
                    completion = item
                    continue
                if first_token_ms is None:
                    first_token_ms = round((time.perf_counter() - started) * 1000)
                parts.append(item)
                yield Chunk(item)
        except LLMError as failure:
            error = failure
            log.warning("LLM failed for user %s: %s", user.id, failure)
        reply = "".join(parts)
        reply_meta = meta.model_copy(
            update={
                "model": completion.model if completion else self.llm.model,
                "usage": completion.usage if completion else None,
                "stop_reason": completion.stop_reason if completion else None,
                "latency_ms": round((time.perf_counter() - started) * 1000),
                "first_token_ms": first_token_ms,
                "error": error.kind if error else None,
            }
        )
        message = Message(
            user_id=user.id,
            role=Role.ASSISTANT,
            text=reply,
            created_at=self.clock(),
            complete=error is None,
            meta=reply_meta,
        )
        if reply or error is None:  # keep what was said, even when cut short
            await self.store.add_message(message)
        if error is not None:
            yield Failed(error.kind, error.user_text)
        else:
            yield Done(message.id, reply, reply_meta.usage)

    async def build_context(self, user: User, text: str, meeting: Meeting | None) -> Prompt:
        """What the model is sent for `text`: the store reads and the prompt, nothing streamed.

        Read before the user's message is saved, so the history ends just before it; a store
        failure here leaves nothing half-saved. bench/store.py times exactly this.
        """
        history = await self.store.recent_messages(user.id, self.settings.history_context_messages)
        goals = await self.store.list_goals(user.id, GoalStatus.ACTIVE)
        context = CoachContext(
            phase=user.phase,
            goals=goals[: self.settings.max_active_goals_in_context],
            meeting=meeting,
            now=self.clock(),
            timezone=self.zone(user),
            history=history,
        )
        return Prompt(system_blocks(self.persona, context), conversation(history, text))

    async def _save_safety_turn(self, user: User, text: str, now: datetime) -> None:
        meta = MessageMeta(platform=user.identity.platform, kind="safety")
        await self.store.add_message(
            Message(user_id=user.id, role=Role.USER, text=text, created_at=now, meta=meta)
        )
        await self.store.add_message(
            Message(
                user_id=user.id, role=Role.ASSISTANT, text=SAFETY_REPLY, created_at=now, meta=meta
            )
        )

    # Access

    async def _access(self, user: User, now: datetime) -> Access:
        meetings = await self.store.list_meetings(user.id, closing_after=now)
        return decide_access(user.phase, meetings, now, self.policy)

    async def access(self, identity: Identity) -> tuple[Access, str]:
        """The access decision for now, and a sentence describing it in the user's timezone."""
        user = await self.user(identity)
        access = await self._access(user, self.clock())
        return access, describe_access(access, lambda t: self.local(user, t), self.policy)

    # History

    async def history(self, identity: Identity, page: int = 1, page_size: int = 10) -> HistoryPage:
        if page < 1:
            raise CoachError("Pages start at 1.")
        user = await self.user(identity)
        # An absurd page number must not overflow the store's OFFSET (SQLite: 64-bit): no
        # history is that long, and the real page count is reported below.
        messages, total = await self.store.history_page(user.id, min(page, 10**9), page_size)
        pages = max(1, -(-total // page_size))
        if page > pages:
            raise CoachError(f"There are only {pages} page(s) of history.")
        return HistoryPage(messages, page, pages, total)

    async def clear_history(self, identity: Identity) -> int:
        user = await self.user(identity)
        async with self._turns.hold(user.id):
            return await self.store.clear_messages(user.id)

    # Goals

    async def goals(self, identity: Identity, *, include_closed: bool = False) -> list[Goal]:
        user = await self.user(identity)
        return await self.store.list_goals(user.id, None if include_closed else GoalStatus.ACTIVE)

    async def add_goal(self, identity: Identity, text: str) -> Goal:
        text = " ".join(clean_text(text).split())  # one line, nothing invisible at the edges
        if not text:
            raise CoachError("What's the goal? Try `/goal add Run 5 km by March`.")
        if len(text) > MAX_GOAL_CHARS:
            raise CoachError(f"Keep a goal under {MAX_GOAL_CHARS} characters: short goals stick.")
        user = await self.user(identity)
        active = await self.store.list_goals(user.id, GoalStatus.ACTIVE)
        if len(active) >= MAX_ACTIVE_GOALS:
            raise CoachError(f"You have {len(active)} active goals. Finish or drop one first.")
        goal = Goal(user_id=user.id, text=text, created_at=self.clock())
        await self.store.add_goal(goal)
        return goal

    async def close_goal(self, identity: Identity, ref: str, status: GoalStatus) -> Goal:
        """Mark the active goal numbered `ref` (as listed by `goals`) done or dropped."""
        user = await self.user(identity)
        active = await self.store.list_goals(user.id, GoalStatus.ACTIVE)
        goal = _pick(active, ref, "goal", "/goals")
        closed = await self.store.close_goal(user.id, goal.id, status, self.clock())
        if closed is None:
            raise CoachError("That goal was already closed.")
        return closed

    # Meetings

    async def meetings(self, identity: Identity) -> list[Meeting]:
        """Upcoming and current meetings, soonest first."""
        user = await self.user(identity)
        meetings = await self.store.list_meetings(user.id, closing_after=self.clock())
        return [m for m in meetings if m.status is not MeetingStatus.CANCELLED]

    async def schedule(self, identity: Identity, text: str) -> list[Meeting]:
        """Schedule from the user's words, e.g. `tomorrow 9am for 30m weekly`."""
        user = await self.user(identity)
        now = self.clock()
        s = self.settings
        try:
            request = timeparse.parse_schedule_args(
                text,
                now=now,
                tz=self.zone(user),
                default_duration=timedelta(minutes=s.meeting_default_minutes),
                min_duration=timedelta(minutes=s.meeting_min_minutes),
                max_duration=timedelta(minutes=s.meeting_max_minutes),
            )
        except timeparse.WhenError as error:
            raise CoachError(str(error)) from error
        minutes = int(request.duration.total_seconds() // 60)
        series = new_id() if request.weekly else None
        starts = _weekly_starts(
            request.start, self.zone(user), s.weekly_occurrences if series else 1
        )
        new = [
            Meeting(
                user_id=user.id,
                start=start,
                duration_minutes=minutes,
                series_id=series,
                closes_at=start + timedelta(minutes=minutes) + self.policy.after,
            )
            for start in starts
        ]
        existing = await self.meetings(identity)
        for meeting in new:
            clash = next((m for m in existing if _overlaps(m, meeting)), None)
            if clash is not None:
                raise CoachError(
                    f"That overlaps your meeting on {self.local(user, clash.start)}. "
                    "Pick another time or cancel that one first."
                )
        await self.store.add_meetings(new)
        self._meetings_changed(MeetingsChanged(user.id, added=tuple(new)))
        return new

    async def cancel(self, identity: Identity, ref: str, *, series: bool = False) -> list[Meeting]:
        """Cancel the meeting numbered `ref` in `meetings`, or with `series`, its whole series."""
        user = await self.user(identity)
        upcoming = await self.meetings(identity)
        meeting = _pick(upcoming, ref, "meeting", "/meetings")
        if series and meeting.series_id is None:
            raise CoachError("That meeting is not part of a weekly series.")
        targets = [m for m in upcoming if series and m.series_id == meeting.series_id] or [meeting]
        await self.store.cancel_meetings(user.id, [m.id for m in targets])
        self._meetings_changed(MeetingsChanged(user.id, cancelled=tuple(targets)))
        return targets

    # Phase and settings

    async def start_tracking(self, identity: Identity) -> User:
        user = await self.user(identity)
        missing = []
        if not await self.store.list_goals(user.id, GoalStatus.ACTIVE):
            missing.append("at least one active goal (`/goal add ...`)")
        if not any(m.start > self.clock() for m in await self.meetings(identity)):
            missing.append("an upcoming meeting (`/schedule tomorrow 9am`)")
        if missing:
            raise CoachError("To start tracking you need " + " and ".join(missing) + ".")
        return await self._set_phase(user, Phase.TRACKING)

    async def back_to_goal_setting(self, identity: Identity) -> User:
        return await self._set_phase(await self.user(identity), Phase.GOAL_SETTING)

    async def _set_phase(self, user: User, phase: Phase) -> User:
        updated = await self.store.update_user(user.id, phase=phase)
        assert updated is not None
        return updated

    async def set_timezone(self, identity: Identity, name: str) -> User:
        try:
            zone = timeparse.resolve_timezone(name)
        except timeparse.WhenError as error:
            raise CoachError(str(error)) from error
        user = await self.user(identity)
        updated = await self.store.update_user(user.id, timezone=zone.key)
        assert updated is not None
        return updated

    async def suggest_timezone(self, identity: Identity, name: str) -> None:
        """Adopt the platform's timezone for a user who has not chosen one."""
        user = await self.user(identity)
        if user.timezone is None:
            try:
                zone = timeparse.resolve_timezone(name)
            except timeparse.WhenError:
                return
            await self.store.update_user(user.id, timezone=zone.key)

    # Their data

    async def export(self, identity: Identity) -> dict[str, Any]:
        """Everything stored about the user, as JSON-ready data."""
        user = await self.user(identity)
        return {
            "user": user.model_dump(mode="json"),
            "goals": [g.model_dump(mode="json") for g in await self.store.list_goals(user.id)],
            "meetings": [
                m.model_dump(mode="json") for m in await self.store.list_meetings(user.id)
            ],
            "messages": [
                m.model_dump(mode="json") for m in await self.store.messages_between(user.id)
            ],
        }

    async def forget(self, identity: Identity) -> None:
        user = await self.user(identity)
        async with self._turns.hold(user.id):
            await self.store.delete_user(user.id)
        self._meetings_changed(MeetingsChanged(user.id, forgotten=True))

    def _meetings_changed(self, change: MeetingsChanged) -> None:
        """Tell observers; their failure is logged, never the user's problem."""
        for observer in self.meeting_observers:
            try:
                observer(change)
            except Exception:
                log.exception("meetings observer %r failed", observer)

    # Window hooks for the scheduler

    async def live_meetings(self) -> list[Meeting]:
        return await self.store.live_meetings(self.clock())

    async def claim_window(
        self, meeting_id: str, from_status: MeetingStatus, to_status: MeetingStatus
    ) -> Meeting | None:
        return await self.store.claim_transition(meeting_id, from_status, to_status)

    async def claim_flag(self, meeting_id: str, flag: MeetingFlag) -> Meeting | None:
        return await self.store.claim_flag(meeting_id, flag)


T = TypeVar("T")


def _pick(items: Sequence[T], ref: str, noun: str, command: str) -> T:
    ref = ref.strip().lstrip("#")
    # isdecimal, not isdigit: int() refuses digits such as `²`, which isdigit accepts.
    if not ref.isdecimal() or not 1 <= int(ref) <= len(items):
        if not items:
            raise CoachError(f"You have no {noun}s right now.")
        raise CoachError(f"Use the {noun}'s number from `{command}` (1 to {len(items)}).")
    return items[int(ref) - 1]


def _overlaps(a: Meeting, b: Meeting) -> bool:
    return a.start < b.end and b.start < a.end


def _weekly_starts(first: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    """Same local wall time each week, so a series keeps its hour across DST changes."""
    local = first.astimezone(zone)
    return [
        (local.replace(tzinfo=None) + timedelta(weeks=week)).replace(tzinfo=zone).astimezone(UTC)
        for week in range(count)
    ]
