"""One user message on its way to an answer (`Reply`), and what the pipeline keeps of it.

`Coach.reply` returns a `Reply` the moment a message arrives; core/turn.py does the work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import StoreUnavailable
from core.events import ReplyEvent
from core.llm import ModelReply
from core.log_context import tag_turn
from core.metrics import OVERHEAD, count_reply
from core.models import Identity, Platform
from core.turn_order import Ticket

log = logging.getLogger(__name__)

# The adapter's own work before the coach answers (adopting the platform's timezone for the
# user, so the reply is phrased in it): run by the reply, after its place in line is taken.
Prepare = Callable[[], Awaitable[None]]


@dataclass
class EventClaim:
    """A platform event's dedupe key, once claimed, and whether it must stay claimed.

    It stays once the user's message is saved or the user got an answer; a turn that fails
    before either releases it, so the platform's retry of the event is answered instead of
    being taken for a duplicate of a message that was never kept.
    """

    key: str | None = None
    settled: bool = False


@dataclass
class Turn:
    """One message's way through the pipeline, and what the adapter tells us about it."""

    identity: Identity
    text: str
    event_id: str | None
    ticket: Ticket
    place: dict[str, str] | None  # where the platform shows the reply, for crash repair
    prepare: Prepare | None = None
    claim: EventClaim = field(default_factory=EventClaim)
    answer: ModelReply | None = None  # the model's, once it is asked
    recorded: bool = False  # a record of it in flight is in the store
    message_id: str | None = None  # the stored reply, once saved
    undelivered: bool = False
    via: Platform | None = None  # where it came from, when not the identity's own platform

    @property
    def platform(self) -> Platform:
        """Where the message came from and the reply goes (the web, for a Slack user there)."""
        return self.via or self.identity.platform

    @property
    def said(self) -> str:
        """What the model has said so far."""
        return self.answer.text if self.answer is not None else ""


def speaker(identity: Identity) -> str:
    """Whose line a message joins: known at arrival, before the user is looked up."""
    return f"{identity.platform.value}:{identity.external_id}"


class Pipeline(Protocol):
    """What a Reply needs of the pipeline that does its work (core/turn.py `Replies`)."""

    def events(self, turn: Turn) -> AsyncGenerator[ReplyEvent, None]: ...
    def leave(self, turn: Turn) -> None:
        """Give up the turn's place in line (its work ended before its turn began)."""

    async def keep_place(self, turn: Turn) -> None:
        """Keep `turn.place` with its record in flight; raises StoreUnavailable."""

    async def mark_undelivered(self, turn: Turn) -> None:
        """The stored reply was never shown; raises StoreUnavailable."""


class Reply:
    """One user message on its way to an answer: an async iterator of `ReplyEvent`s.

    `Coach.reply` makes it the moment the message arrives, and its work starts then: the
    message takes its place in the user's line at once, and goes on (dedupe claim, user,
    access, its turn, the model) whatever the adapter awaits before reading it, a status or
    a user lookup, so those awaits can neither reorder a burst nor delay the model; events
    wait here until read. Close it when done (`aclosing`): closing it early stops the work.
    """

    def __init__(self, pipeline: Pipeline, turn: Turn) -> None:
        self._pipeline, self._turn = pipeline, turn
        self._events: asyncio.Queue[ReplyEvent | None] = asyncio.Queue()  # None: the end
        self._arrived: float | None = time.perf_counter()  # None once its first text showed
        self._work = asyncio.create_task(self._run(), name=f"reply:{turn.ticket.id}")

    async def _run(self) -> None:
        # In this task's own context: every line logged for the turn carries it, and the
        # adapter's task, which may serve other turns after this one, never does.
        turn = self._turn
        tag_turn(speaker(turn.identity), turn.event_id or turn.ticket.id)
        try:
            async with aclosing(self._pipeline.events(self._turn)) as events:
                async for event in events:
                    count_reply(self._turn.platform, event)
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
        self._pipeline.leave(self._turn)  # work cancelled before it began

    def visible(self) -> None:
        """The reply's first text is on the user's screen now: counts the overhead (the
        time since arrival, less the model's own time to its first token) once."""
        if self._arrived is None:
            return
        waited = time.perf_counter() - self._arrived
        self._arrived = None
        answer = self._turn.answer
        if answer is not None and answer.first_token_ms is not None:
            waited -= answer.first_token_ms / 1000
        OVERHEAD.labels(self._turn.platform).observe(max(waited, 0.0))

    async def shown_at(self, **place: str) -> None:
        """Where the platform now shows the reply (a message, a stream): what a process
        starting after a crash needs to finish it there. Merged into what was given before.
        The first call is also when the reply became visible."""
        self.visible()
        turn = self._turn
        turn.place = {**(turn.place or {}), **place}
        if turn.recorded:
            try:
                await self._pipeline.keep_place(turn)
            except StoreUnavailable as error:  # a courtesy for a crash: the reply goes on
                log.warning("reply %s: where it shows was not kept: %s", turn.ticket.id, error)

    async def undelivered(self) -> None:
        """The platform refused to show the reply: the stored reply says so, and the model
        is not told it said what the user never read."""
        turn = self._turn
        turn.undelivered = True
        if turn.message_id is not None:
            try:
                await self._pipeline.mark_undelivered(turn)
            except StoreUnavailable as error:
                log.warning("reply %s not marked undelivered: %s", turn.message_id, error)
