"""The reply pipeline: one user message to one streamed answer.

Order of work: validate -> dedupe the platform's event (a retry must not answer twice) ->
the adapter's own preparation -> user -> safety (crisis text gets the safety reply, before
anything else and whatever the window) -> access -> the user's turn (core/turn_order.py: in
arrival order, one at a time, across processes) -> welcome once -> save the user's message ->
context -> stream from the model -> save the reply with its metadata.

`Replies.reply` returns a `Reply` at once and starts the work: see `Reply`. Every failure ends
in a `Failed` event; the dedupe claim of a message neither kept nor answered is given back,
so the platform's retry of it is answered. While a reply streams, its record in flight
(core/in_flight.py) says where it shows, for a repair after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from core.access import Standing, WindowPolicy, decide_access
from core.config import Settings
from core.context import Contexts, ContextStore
from core.errors import CoachError, StoreUnavailable
from core.events import (
    Chunk,
    Denied,
    Done,
    Failed,
    Proposed,
    ReplyEvent,
    SafetyReply,
    Welcome,
)
from core.in_flight import InFlightStore, RepliesInFlight
from core.llm import LLM, LLMError, ModelReply, ToolCall, UnconfiguredLLM
from core.metrics import FIRST_TOKEN, count_tokens
from core.models import (
    Access,
    Identity,
    InFlight,
    Meeting,
    Message,
    MessageMeta,
    Platform,
    Proposal,
    Role,
    User,
)
from core.persona import Persona
from core.proposals import REFUSED_RESULT, TOOL_RESULT, TOOLS, Proposals, draft
from core.reply import EventClaim, Prepare, Reply, Turn, speaker
from core.safety import crisis_language, safety_reply
from core.text import clean_text
from core.texts import (
    DUPLICATE_TEXT,
    EMPTY_MESSAGE_TEXT,
    INTERNAL_ERROR_TEXT,
    STORE_DOWN_AFTER_REPLY_TEXT,
    STORE_DOWN_TEXT,
    too_long_text,
)
from core.turn_order import Clock, TurnOrder, TurnStore
from core.zones import UserTime

log = logging.getLogger(__name__)


class ReplyStore(ContextStore, TurnStore, InFlightStore, Protocol):
    """What the pipeline needs of the store (the backends' shared rules: core/store)."""

    async def get_or_create_user(self, identity: Identity, now: datetime) -> tuple[User, bool]:
        """The user for this identity, and whether it was just created."""

    async def get_user(self, user_id: str) -> User | None: ...
    async def claim_welcome(self, user_id: str) -> bool:
        """Mark the user welcomed; True only for the call that changed it (one welcome)."""

    async def add_message(self, message: Message) -> None: ...
    async def mark_undelivered(self, message_id: str) -> None:
        """The platform never showed this message (see Message.delivered)."""

    async def list_meetings(
        self, user_id: str, *, closing_after: datetime | None = None
    ) -> list[Meeting]:
        """The user's meetings by start time; with `closing_after`, only windows closing later."""

    async def claim_event(self, key: str, now: datetime, expires_at: datetime) -> bool:
        """True the first time a key is seen (or once `now` >= its expiry), False for a repeat."""

    async def release_event(self, key: str) -> None:
        """Forget a claimed key (no-op if unknown): its event was not handled after all."""


class Replies:
    """The pipeline, one per Coach: reply, dedupe claims, turn order, context."""

    def __init__(
        self,
        store: ReplyStore,
        llm: LLM,
        persona: Persona,
        settings: Settings,
        policy: WindowPolicy,
        clock: Clock,
        proposals: Proposals | None = None,
    ) -> None:
        self.store, self.llm, self.persona = store, llm, persona
        self.proposals = proposals  # None: the model gets no tools
        self.settings, self.policy, self.clock = settings, policy, clock
        lease = timedelta(seconds=settings.turn_lease_seconds)
        self.order = TurnOrder(store, clock, lease)
        self.in_flight = RepliesInFlight(store, clock, lease)
        self.contexts = Contexts(store, persona, settings, clock, self.zone)
        # Claims a failed turn could not release (the database was down too): released
        # before the next claim, so a retry of those events is not taken for a duplicate.
        self._unreleased: set[str] = set()

    @property
    def chat_configured(self) -> bool:
        return not isinstance(self.llm, UnconfiguredLLM)

    def zone(self, user: User) -> ZoneInfo:
        return ZoneInfo(user.timezone or self.settings.default_timezone)

    async def standing(self, user: User, now: datetime) -> Standing:
        meetings = await self.store.list_meetings(user.id, closing_after=now)
        access = decide_access(user.phase, meetings, now, self.policy)
        return Standing(access, self.policy, self.user_time(user))

    def user_time(self, user: User) -> UserTime:
        return UserTime(self.zone(user), user.timezone is not None)

    def reply(
        self,
        identity: Identity,
        text: str,
        *,
        event_id: str | None = None,
        sent_at: datetime | None = None,
        place: Mapping[str, str] | None = None,
        prepare: Prepare | None = None,
        via: Platform | None = None,
    ) -> Reply:
        ticket = self.order.line.join(speaker(identity), sent_at or self.clock())
        turn = Turn(identity, text, event_id, ticket, dict(place) if place else None, prepare)
        turn.via = via
        return Reply(self, turn)

    # What a Reply asks of its pipeline (core/reply.py `Pipeline`)

    def leave(self, turn: Turn) -> None:
        self.order.line.leave(turn.ticket)

    async def keep_place(self, turn: Turn) -> None:
        await self.in_flight.shown_at(turn.ticket.id, turn.place or {})

    async def mark_undelivered(self, turn: Turn) -> None:
        if turn.message_id is not None:
            await self.store.mark_undelivered(turn.message_id)

    async def events(self, turn: Turn) -> AsyncGenerator[ReplyEvent, None]:
        """The whole reply to `turn`; never raises but for cancellation."""
        claim = turn.claim
        try:
            async with aclosing(self._answer(turn)) as events:
                async for event in events:
                    if not isinstance(event, Welcome):
                        claim.settled = True  # answered: a retry must not answer again
                    yield event
        except StoreUnavailable as error:
            log.error("store unavailable while replying to %s: %s", speaker(turn.identity), error)
            await self.release(claim)
            yield Failed(
                "store_unavailable",
                STORE_DOWN_AFTER_REPLY_TEXT if claim.settled else STORE_DOWN_TEXT,
            )
        except Exception:
            log.exception("reply failed for %s", speaker(turn.identity))
            await self.release(claim)
            yield Failed("internal", INTERNAL_ERROR_TEXT)
        except BaseException:  # stopped from outside (shutdown) before it was answered
            await self.release(claim)
            raise
        finally:
            self.order.line.leave(turn.ticket)

    # Dedupe claims

    async def claim(self, key: str, now: datetime) -> bool:
        for stale in list(self._unreleased):
            await self.store.release_event(stale)
            self._unreleased.discard(stale)
        expires = now + timedelta(hours=self.settings.dedupe_ttl_hours)
        return await self.store.claim_event(key, now, expires)

    async def release(self, claim: EventClaim) -> None:
        """Give back the claim of a turn that failed before it kept or answered anything."""
        if claim.key is None or claim.settled:
            return
        try:
            await self.store.release_event(claim.key)
        except StoreUnavailable:
            log.warning("claim %s not released (store down); retried before the next", claim.key)
            self._unreleased.add(claim.key)

    # The steps

    async def _answer(self, turn: Turn) -> AsyncGenerator[ReplyEvent, None]:
        text = clean_text(turn.text)
        if (unreadable := self._unreadable(text)) is not None:
            yield unreadable
            return
        now = self.clock()
        if turn.event_id is not None:
            key = f"{turn.platform}:{turn.event_id}"
            if not await self.claim(key, now):
                log.info("duplicate event %s ignored", key)
                yield Failed("duplicate", DUPLICATE_TEXT)
                return
            turn.claim.key = key
        await self._prepare(turn)
        user, _ = await self.store.get_or_create_user(turn.identity, now)
        if (language := crisis_language(text)) is not None:
            # Before the welcome too, and without waiting in line: a cheerful introduction,
            # or a wait behind another reply, is the wrong first answer here.
            reply = safety_reply(language)
            yield SafetyReply(reply)
            await self._save_safety_turn(user, text, reply, now, turn.platform)
            return
        if not self.chat_configured:  # one clear line; the welcome waits for a working coach
            llm_error = LLMError("not_configured")
            yield Failed(llm_error.kind, llm_error.user_text)
            return
        standing = await self.standing(user, now)
        if not standing.access.allowed:
            if await self._welcomes(user):
                yield Welcome(self.persona.welcome)
            yield Denied(standing)
            return
        async with self.order.turn(user.id, turn.ticket):
            async for event in self._turn(turn, user, text, standing.access):
                yield event

    def _unreadable(self, text: str) -> Failed | None:
        """Control and bidi characters are gone already (core/text.py): a message of only
        ZWSP/BOM/NUL counts as empty, like one of only spaces, and so does a file or an
        image without words, on every platform."""
        if not text:
            return Failed("empty", EMPTY_MESSAGE_TEXT)
        if len(text) > self.settings.max_input_chars:
            return Failed("too_long", too_long_text(len(text), self.settings.max_input_chars))
        return None

    async def _prepare(self, turn: Turn) -> None:
        if turn.prepare is None:
            return
        try:
            await turn.prepare()
        except Exception:
            log.warning("preparing the reply to %s failed", speaker(turn.identity), exc_info=True)

    async def _welcomes(self, user: User) -> bool:
        """True once per user: the one reply that shows the welcome (an atomic claim)."""
        return not user.welcomed and await self.store.claim_welcome(user.id)

    async def _turn(
        self, turn: Turn, user: User, text: str, access: Access
    ) -> AsyncGenerator[ReplyEvent, None]:
        """One conversation turn, holding the user's turn: save, build context, stream, save."""
        if await self._welcomes(user):  # in the turn: it opens the first reply of a burst
            yield Welcome(self.persona.welcome)
        meeting_id = access.meeting.id if access.meeting else None
        meta = MessageMeta(platform=turn.platform, meeting_id=meeting_id)
        prompt = await self.contexts.build(user, text, access.meeting)
        # The reply's record says how big its prompt was (the budget's own count).
        said_meta = meta.model_copy(update={"prompt_tokens_estimate": prompt.estimated_tokens})
        async with self._kept_in_flight(turn, user):
            # Stamped now, when its turn has come: history reads message, reply, message, reply
            # even when this one arrived while the reply before it was being written.
            await self.store.add_message(
                Message(
                    user_id=user.id, role=Role.USER, text=text, created_at=self.clock(), meta=meta
                )
            )
            turn.claim.settled = True  # the message is kept: from here on a retry is a duplicate
            tools = TOOLS if self.proposals is not None else ()
            turn.answer = answer = ModelReply(self.llm, prompt.system, prompt.messages, tools)
            error: LLMError | None = None
            try:
                async for item in answer.items():
                    if isinstance(item, str):
                        yield Chunk(item)
                        continue
                    result, proposal = await self._propose(turn, item)
                    answer.tool_result(item, result)
                    if proposal is not None:
                        yield Proposed(proposal)
            except LLMError as failure:
                error = failure
                log.warning("LLM failed for user %s: %s", user.id, failure)
            except BaseException:  # the adapter stopped reading: it gave up, or we shut down
                stopped = self._reply_message(turn, user, said_meta, "stopped")
                await self._keep(turn, stopped, quietly=True)
                raise
            message = self._reply_message(turn, user, said_meta, error.kind if error else None)
            if answer.first_token_ms is not None:
                FIRST_TOKEN.labels(turn.platform).observe(answer.first_token_ms / 1000)
            if message.meta.usage is not None:
                count_tokens(message.meta.usage)
            if message.text or error is None:  # keep what was said, even when cut short
                await self._keep(turn, message)
        if error is not None:
            yield Failed(error.kind, error.user_text)
        else:
            yield Done(message.id, message.text, message.meta.usage)

    async def _propose(self, turn: Turn, call: ToolCall) -> tuple[str, Proposal | None]:
        """A tool call as a stored proposal, and what the model is told of it. Refused by
        code when it is not a proposal we offer, or names what no tool may (rule 4)."""
        assert self.proposals is not None  # tools are offered only with proposals
        drafted = draft(call.name, call.input)
        if drafted is None:
            return REFUSED_RESULT, None
        try:
            proposal = await self.proposals.propose(turn.identity, drafted)
        except CoachError as error:
            return f"Refused: {error.user_text}", None
        return TOOL_RESULT, proposal

    def _reply_message(
        self, turn: Turn, user: User, meta: MessageMeta, error: str | None
    ) -> Message:
        """The reply as stored: what was said, with how it was produced."""
        answer = turn.answer
        completion = answer.completion if answer is not None else None
        return Message(
            user_id=user.id,
            role=Role.ASSISTANT,
            text=turn.said,
            created_at=self.clock(),
            complete=error is None,
            delivered=not turn.undelivered,
            meta=meta.model_copy(
                update={
                    "model": completion.model if completion else self.llm.model,
                    "usage": completion.usage if completion else None,
                    "stop_reason": completion.stop_reason if completion else None,
                    "latency_ms": answer.latency_ms if answer is not None else None,
                    "first_token_ms": answer.first_token_ms if answer is not None else None,
                    "error": error,
                }
            ),
        )

    async def _keep(self, turn: Turn, message: Message, *, quietly: bool = False) -> None:
        """Save the reply; `quietly` (a reply stopped from outside): only what was said, and
        a failure is logged, not raised."""
        if quietly and not message.text:
            return
        try:
            await self.store.add_message(message)
        except Exception as error:
            if not quietly:
                raise
            log.warning("the stopped reply to user %s was not kept: %r", message.user_id, error)
            return
        turn.message_id = message.id

    @asynccontextmanager
    async def _kept_in_flight(self, turn: Turn, user: User) -> AsyncIterator[None]:
        """While the block runs: the reply's record in flight (when the adapter says where it
        shows it) and the turn's lease, renewed; the record goes when the block ends."""
        if turn.place is not None:
            await self.in_flight.begin(
                turn.ticket.id, user.id, turn.platform, turn.place, turn.claim.key
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
                    await self.in_flight.end(turn.ticket.id)
                except StoreUnavailable as error:  # it runs out, and is repaired as cut off
                    log.warning("record of reply %s not removed: %s", turn.ticket.id, error)

    async def _renew(self, turn: Turn, user: User) -> None:
        """Every third of the lease: the lease, and the record with what was said so far."""
        interval = self.settings.turn_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.order.lease.renew(user.id, turn.ticket):
                    log.warning("user %s: this turn's lease ran out and was taken", user.id)
                if turn.recorded:
                    await self.in_flight.renew(turn.ticket.id, turn.said)
            except StoreUnavailable as error:
                log.warning("user %s: turn lease not renewed: %s", user.id, error)

    async def _save_safety_turn(
        self, user: User, text: str, reply: str, now: datetime, platform: Platform
    ) -> None:
        meta = MessageMeta(platform=platform, kind="safety")
        for role, said in ((Role.USER, text), (Role.ASSISTANT, reply)):
            await self.store.add_message(
                Message(user_id=user.id, role=role, text=said, created_at=now, meta=meta)
            )

    # A turn for an action on the user's data (clear, forget): after the replies before it

    @asynccontextmanager
    async def exclusive(self, identity: Identity, user: User) -> AsyncIterator[None]:
        ticket = self.order.line.join(speaker(identity), self.clock())
        async with self.order.turn(user.id, ticket):
            yield

    # Replies a crash cut off (core/in_flight.py)

    async def interrupted(self, platform: Platform) -> list[InFlight]:
        return await self.in_flight.take_interrupted(platform)

    async def repaired(self, reply: InFlight, shown: str | None) -> None:
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
