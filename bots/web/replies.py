"""One web message's reply, detached from the client that asked for it.

The Reply is read to its end in a task of its own (tracked by the adapter's Background), and
its frames are queued for whoever listens: a client that disconnects mid-reply loses
nothing, because the reply goes on and is stored, and shows in the history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from bots.tasks import Background
from bots.web.views import access_view, proposal_view
from core.coach import Coach
from core.events import Chunk, Denied, Done, Failed, Proposed, SafetyReply, Welcome
from core.models import Identity, Platform

# Failures the sender caused (a 4xx), as opposed to the coach's own (the model, the database).
BAD_INPUT = frozenset({"empty", "too_long"})

Kind = Literal["welcome", "chunk", "proposal", "done", "refused", "error"]


@dataclass(frozen=True)
class Frame:
    """One thing a reply says: `kind` and its JSON fields (as the WebSocket sends them)."""

    kind: Kind
    data: dict[str, Any] = field(default_factory=dict)


class WebReply:
    """The frames of one reply, produced in the background, read by one listener."""

    def __init__(
        self, coach: Coach, identity: Identity, text: str, event_id: str | None
    ) -> None:
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue()  # None: the end
        # A place, so the reply is kept in flight: after a crash, what was said is stored
        # (bots/web/serve.py repairs it; the client reads it in the history).
        self._reply = coach.reply(
            identity, text, event_id=event_id, via=Platform.WEB, place={"web": "reply"}
        )

    def start(self, background: Background) -> WebReply:
        background.spawn(self._run(), name="web-reply")
        return self

    async def _run(self) -> None:
        said = ""
        try:
            async with aclosing(self._reply) as events:
                async for event in events:
                    match event:
                        case Welcome(text=text):
                            self._put("welcome", content=text)
                        case Chunk(text=text):
                            said += text
                            self._put("chunk", content=text)
                        case Proposed(proposal=proposal):
                            self._put("proposal", **proposal_view(proposal))
                        case Done(message_id=message_id, text=text, usage=usage):
                            tokens = usage.input_tokens + usage.output_tokens if usage else 0
                            self._done(message_id, text, tokens, incomplete=False)
                        case SafetyReply(text=text):
                            self._done(None, text, 0, incomplete=False)
                        case Denied(standing=standing):
                            self._put(
                                "refused", content=standing.describe(), access=access_view(standing)
                            )
                        case Failed(kind=kind, user_text=text):
                            self._put("error", error=kind, content=text, said=said)
        finally:
            self._frames.put_nowait(None)

    def _put(self, kind: Kind, **data: Any) -> None:
        self._reply.visible()  # the first frame is the first thing the user sees
        self._frames.put_nowait(Frame(kind, data))

    def _done(self, message_id: str | None, text: str, tokens: int, *, incomplete: bool) -> None:
        self._put(
            "done", message_id=message_id, content=text, tokens_used=tokens, incomplete=incomplete
        )

    async def frames(self) -> AsyncIterator[Frame]:
        while (frame := await self._frames.get()) is not None:
            yield frame


def event_id(user_id: str, client_id: str | None) -> str | None:
    """The dedupe key of a send: a client's retry (same client_id) is answered once."""
    return f"web:{user_id}:{client_id}" if client_id else None
