"""The Coach facade: the one entry point that adapters and the scheduler call.

Adapters translate platform events into these calls and render what comes back; they hold
no coaching logic. `reply` streams `ReplyEvent`s; the other methods return data or raise
`CoachError`, whose `user_text` is safe to show as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from core import timeparse
from core.access import WindowPolicy, decide_access, describe_access
from core.config import Settings
from core.in_flight import RepliesInFlight
from core.llm import LLM, Completion, LLMError, UnconfiguredLLM
from core.models import (
    Access,
    Goal,
    GoalStatus,
    Identity,
    InFlight,
    Meeting,
    MeetingStatus,
    Message,
    MessageMeta,
    Phase,
    Platform,
    Role,
    Usage,
    User,
    new_id,
)
from core.persona import CoachContext, Persona, conversation, system_blocks
from core.safety import SAFETY_REPLY, is_crisis
from core.store import MeetingFlag, Store, StoreUnavailable
from core.text import clean_text
from core.turn_order import Ticket, TurnOrder

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
# A reply stopped by a restart: at shutdown once its grace ran out, or after a crash.
CUT_OFF_TEXT = "My reply was cut off by a restart. Please ask again."
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


# The adapter's own work before the coach answers (adopting the platform's timezone for the
# user, so the reply is phrased in it): run by the reply, after its place in line is taken.
Prepare = Callable[[], Awaitable[None]]


@dataclass
class _Turn:
    """One message's way through the pipeline, and what the adapter tells us about it."""

    identity: Identity
    text: str
    event_id: str | None
    ticket: Ticket
    place: dict[str, str] | None  # where the platform shows the reply, for crash repair
    prepare: Prepare | None = None
    claim: EventClaim = field(default_factory=EventClaim)
    parts: list[str] = field(default_factory=list)  # what the model has said so far
    recorded: bool = False  # a record of it in flight is in the store
    message_id: str | None = None  # the stored reply, once saved
    undelivered: bool = False


class Reply:
    """One user message on its way to an answer: an async iterator of `ReplyEvent`s.

    `Coach.reply` makes it the moment the message arrives, and its work starts then: the
    message takes its place in the user's line at once, and goes on (dedupe claim, user,
    access, its turn, the model) whatever the adapter awaits before reading it, a status or
    a user lookup, so those awaits can neither reorder a burst nor delay the model; events
    wait here until read. Close it when done (`aclosing`): closing it early stops the work.
    """

    def __init__(self, coach: Coach, turn: _Turn) -> None:
        self._coach, self._turn = coach, turn
        self._events: asyncio.Queue[ReplyEvent | None] = asyncio.Queue()  # None: the end
        self._work = asyncio.create_task(self._run(), name=f"reply:{turn.ticket.id}")

    async def _run(self) -> None:
        try:
            async with aclosing(self._coach._events(self._turn)) as events:
                async for event in events:
                    self._events.put_nowait(event)
        finally:
            self._events.put_nowait(None)

    def __aiter__(self) -> Reply:
        return self

    async def __anext__(self) -> ReplyEvent:
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # the end stays the end
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop the work if it is still going (what was said so far is kept, incomplete)."""
        self._work.cancel()
        await asyncio.gather(self._work, return_exceptions=True)
        self._coach._order.line.leave(self._turn.ticket)  # work cancelled before it began

    async def shown_at(self, **place: str) -> None:
        """Where the platform now shows the reply (a message, a stream): what a process
        starting after a crash needs to finish it there. Merged into what was given before."""
        turn = self._turn
        turn.place = {**(turn.place or {}), **place}
        if turn.recorded:
            try:
                await self._coach._in_flight.shown_at(turn.ticket.id, turn.place)
            except StoreUnavailable as error:  # a courtesy for a crash: the reply goes on
                log.warning("reply %s: where it shows was not kept: %s", turn.ticket.id, error)

    async def undelivered(self) -> None:
        """The platform refused to show the reply: the stored reply says so, and the model
        is not told it said what the user never read."""
        turn = self._turn
        turn.undelivered = True
        if turn.message_id is not None:
            try:
                await self._coach.store.mark_undelivered(turn.message_id)
            except StoreUnavailable as error:
                log.warning("reply %s not marked undelivered: %s", turn.message_id, error)


def speaker(identity: Identity) -> str:
    """Whose line a message joins: known at arrival, before the user is looked up."""
    return f"{identity.platform.value}:{identity.external_id}"


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
        lease = timedelta(seconds=settings.turn_lease_seconds)
        self._order = TurnOrder(store, clock, lease)
        self._in_flight = RepliesInFlight(store, clock, lease)
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

    def reply(
        self,
        identity: Identity,
        text: str,
        *,
        event_id: str | None = None,
        sent_at: datetime | None = None,
        place: Mapping[str, str] | None = None,
        prepare: Prepare | None = None,
    ) -> Reply:
        """Answer one user message: call this when the message arrives (it takes the message's
        place in line at once), then iterate the Reply. Never raises: every failure ends in a
        `Failed` event.

        `sent_at` is when the platform says the message was sent (ordering between
        processes; default: now). `place` is where the reply will be shown (the adapter's own
        references), kept while it streams so that a crash can be repaired at the next start.
        `prepare` is awaited before the user is looked up (its failure is logged and ignored).
        """
        ticket = self._order.line.join(speaker(identity), sent_at or self.clock())
        turn = _Turn(identity, text, event_id, ticket, dict(place) if place else None, prepare)
        return Reply(self, turn)

    async def _events(self, turn: _Turn) -> AsyncGenerator[ReplyEvent, None]:
        claim = turn.claim
        try:
            async with aclosing(self._answer(turn)) as events:
                async for event in events:
                    if not isinstance(event, Welcome):
                        claim.settled = True  # answered: a retry must not answer again
                    yield event
        except StoreUnavailable as error:
            log.error("store unavailable while replying to %s: %s", turn.identity.external_id,
                      error)
            await self._release(claim)
            yield Failed(
                "store_unavailable",
                STORE_DOWN_AFTER_REPLY_TEXT if claim.settled else STORE_DOWN_TEXT,
            )
        except Exception:
            log.exception("reply failed for %s", speaker(turn.identity))
            await self._release(claim)
            yield Failed("internal", INTERNAL_ERROR_TEXT)
        except BaseException:  # stopped from outside (shutdown) before it was answered
            await self._release(claim)
            raise
        finally:
            self._order.line.leave(turn.ticket)

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

    async def _answer(self, turn: _Turn) -> AsyncGenerator[ReplyEvent, None]:
        # Control and bidi characters removed, invisible edges trimmed (core/text.py): a
        # message of only ZWSP/BOM/NUL counts as empty, like one of only spaces.
        text = clean_text(turn.text)
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
        identity = turn.identity
        if turn.event_id is not None:
            key = f"{identity.platform}:{turn.event_id}"
            if not await self._claim(key, now):
                log.info("duplicate event %s ignored", key)
                yield Failed("duplicate", "I've already answered this message.")
                return
            turn.claim.key = key
        if turn.prepare is not None:
            try:
                await turn.prepare()
            except Exception:
                log.warning("preparing the reply to %s failed", speaker(identity), exc_info=True)
        user, _ = await self.store.get_or_create_user(identity, now)
        if is_crisis(text):
            # Before the welcome too, and without waiting in line: a cheerful introduction,
            # or a wait behind another reply, is the wrong first answer here.
            yield SafetyReply(SAFETY_REPLY)
            await self._save_safety_turn(user, text, now)
            return
        if not self.chat_configured:  # one clear line; the welcome waits for a working coach
            llm_error = LLMError("not_configured")
            yield Failed(llm_error.kind, llm_error.user_text)
            return
        access = await self._access(user, now)
        if not access.allowed:
            if await self._welcomes(user):
                yield Welcome(self.persona.welcome)
            yield Denied(
                access, describe_access(access, lambda t: self.local(user, t), self.policy)
            )
            return
        async with self._order.turn(user.id, turn.ticket):
            async for event in self._turn(turn, user, text, access):
                yield event

    async def _turn(
        self, turn: _Turn, user: User, text: str, access: Access
    ) -> AsyncGenerator[ReplyEvent, None]:
        """One conversation turn, holding the user's turn: save, build context, stream, save."""
        if await self._welcomes(user):  # in the turn: it opens the first reply of a burst
            yield Welcome(self.persona.welcome)
        meeting_id = access.meeting.id if access.meeting else None
        meta = MessageMeta(platform=user.identity.platform, meeting_id=meeting_id)
        prompt = await self.build_context(user, text, access.meeting)
        async with self._kept_in_flight(turn, user):
            # Stamped now, when its turn has come: history reads message, reply, message, reply
            # even when this one arrived while the reply before it was being written.
            await self.store.add_message(
                Message(
                    user_id=user.id, role=Role.USER, text=text, created_at=self.clock(), meta=meta
                )
            )
            turn.claim.settled = True  # the message is kept: from here on a retry is a duplicate
            started = time.perf_counter()
            first_token_ms: int | None = None
            completion: Completion | None = None
            error: LLMError | None = None
            try:
                async for item in self.llm.stream(prompt.system, prompt.messages):
                    if isinstance(item, Completion):
                        completion = item
                        continue
                    if first_token_ms is None:
                        first_token_ms = round((time.perf_counter() - started) * 1000)
                    turn.parts.append(item)
                    yield Chunk(item)
            except LLMError as failure:
                error = failure
                log.warning("LLM failed for user %s: %s", user.id, failure)
            except BaseException:  # the adapter stopped reading: it gave up, or we shut down
                await self._save_stopped(turn, user, meta)
                raise
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
            reply = "".join(turn.parts)
            message = Message(
                user_id=user.id,
                role=Role.ASSISTANT,
                text=reply,
                created_at=self.clock(),
                complete=error is None,
                delivered=not turn.undelivered,
                meta=reply_meta,
            )
            if reply or error is None:  # keep what was said, even when cut short
                await self.store.add_message(message)
                turn.message_id = message.id
        if error is not None:
            yield Failed(error.kind, error.user_text)
        else:
            yield Done(message.id, reply, reply_meta.usage)

    async def _welcomes(self, user: User) -> bool:
        """True once per user: the one reply that shows the welcome (an atomic claim)."""
        return not user.welcomed and await self.store.claim_welcome(user.id)

    async def _save_stopped(self, turn: _Turn, user: User, meta: MessageMeta) -> None:
        """What the model had said when the adapter stopped reading, kept as incomplete."""
        reply = "".join(turn.parts)
        if not reply:
            return
        message = Message(
            user_id=user.id,
            role=Role.ASSISTANT,
            text=reply,
            created_at=self.clock(),
            complete=False,
            delivered=not turn.undelivered,
            meta=meta.model_copy(update={"model": self.llm.model, "error": "stopped"}),
        )
        try:
            await self.store.add_message(message)
            turn.message_id = message.id
        except Exception as error:
            log.warning("the stopped reply to user %s was not kept: %r", user.id, error)

    @asynccontextmanager
    async def _kept_in_flight(self, turn: _Turn, user: User) -> AsyncIterator[None]:
        """While the block runs: the reply's record in flight (when the adapter says where it
        shows it) and the turn's lease, renewed; the record goes when the block ends."""
        if turn.place is not None:
            await self._in_flight.begin(
                turn.ticket.id, user.id, user.identity.platform, turn.place, turn.claim.key
            )
            turn.recorded = True
        renewing = asyncio.create_task(self._renew(turn, user), name=f"renew:{turn.ticket.id}")
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            if turn.recorded:
                try:
                    await self._in_flight.end(turn.ticket.id)
                except StoreUnavailable as error:  # it runs out, and is repaired as cut off
                    log.warning("record of reply %s not removed: %s", turn.ticket.id, error)

    async def _renew(self, turn: _Turn, user: User) -> None:
        """Every third of the lease: the lease, and the record with what was said so far."""
        interval = self.settings.turn_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self._order.lease.renew(user.id, turn.ticket):
                    log.warning("user %s: this turn's lease ran out and was taken", user.id)
                if turn.recorded:
                    await self._in_flight.renew(turn.ticket.id, "".join(turn.parts))
            except StoreUnavailable as error:
                log.warning("user %s: turn lease not renewed: %s", user.id, error)

    # Replies a crash cut off (core/in_flight.py)

    async def interrupted_replies(self, platform: Platform) -> list[InFlight]:
        """The platform's replies whose process died mid-stream, now this process's to repair:
        finish each on the platform, then hand it back with `repaired`."""
        return await self._in_flight.take_interrupted(platform)

    async def repaired(self, reply: InFlight, shown: str | None) -> None:
        """The platform shows `reply` finished with a note now: keep it as an incomplete reply
        (`shown`, the text the platform had, else the last renewal's), free the user's turn,
        and give the message's dedupe claim back so that a redelivery of it is answered."""
        text = reply.text if shown is None else shown
        if text.strip() and await self.store.get_user(reply.user_id) is not None:
            await self.store.add_message(
                Message(
                    user_id=reply.user_id,
                    role=Role.ASSISTANT,
                    text=text,
                    created_at=self.clock(),
                    complete=False,
                    meta=MessageMeta(platform=reply.platform, error="restart"),
                )
            )
        if reply.event_key is not None:
            await self.store.release_event(reply.event_key)
        await self.store.release_turn(reply.user_id, reply.id)
        await self.store.remove_in_flight(reply.id)

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
        async with self._turn_of(identity, user):
            return await self.store.clear_messages(user.id)

    @asynccontextmanager
    async def _turn_of(self, identity: Identity, user: User) -> AsyncIterator[None]:
        """A turn of the user's for an action on their data: after the replies before it."""
        ticket = self._order.line.join(speaker(identity), self.clock())
        async with self._order.turn(user.id, ticket):
            yield

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
        async with self._turn_of(identity, user):
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
