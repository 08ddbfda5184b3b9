"""The WebSocket chat, /api/v1/chat/ws, with the original backend's JSON protocol.

Client -> server: {"type": "message", "content": "...", "client_id"?: "..."}, {"type": "ping"},
{"type": "typing"}, {"type": "confirm" | "decline", "proposal_id": "..."}. Server -> client:
connected, typing, response_chunk, proposal, response, decision, error, pong (and welcome,
once, before a new user's first reply). A bad frame gets an `error` frame
and the socket stays open; no or a wrong token closes it with 4401.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from bots.web.auth import Caller, Web, bearer, caller_for, over_budget
from bots.web.replies import Frame, WebReply, event_id
from bots.web.views import decision_view

ws = APIRouter()

MAX_FRAME_CHARS = 64_000  # a message frame; the coach's own limit is smaller, and says so
UNAUTHORIZED = 4401
TYPING = "Coach is thinking..."
BAD_JSON = 'Frames are JSON, like {"type": "message", "content": "hi"}.'


@ws.websocket("/api/v1/chat/ws")
async def chat(socket: WebSocket) -> None:
    web: Web = socket.app.state.web
    token = bearer(socket.headers.get("authorization")) or socket.query_params.get("token")
    await socket.accept()  # first: a close code reaches only an accepted socket
    who = await caller_for(web, token)
    if who is None:
        await socket.close(UNAUTHORIZED, "unauthorized: a valid token is needed")
        return
    session = await web.coach.session(who.user.identity)
    access = (await session.access()).access
    talk = Conversation(socket, web, who)
    await talk.send(
        type="connected",
        content="Connected to your Momentum coach.",
        user_phase=access.phase.value,
        meeting_id=access.meeting.id if access.meeting else None,
    )
    relay = asyncio.create_task(talk.relay(), name="web-ws-relay")
    try:
        while True:
            await talk.receive(await socket.receive_text())
    except WebSocketDisconnect:
        pass  # replies under way go on and are stored (bots/web/replies.py)
    finally:
        relay.cancel()


class Conversation:
    """One socket's frames: parsed, answered, sent one at a time."""

    def __init__(self, socket: WebSocket, web: Web, who: Caller) -> None:
        self.socket, self.web, self.who = socket, web, who
        self._sending = asyncio.Lock()
        # Replies are relayed one after another, so their frames never interleave.
        self._replies: asyncio.Queue[WebReply] = asyncio.Queue()

    async def send(self, **frame: Any) -> None:
        async with self._sending:
            try:
                await self.socket.send_json(frame)
            except (WebSocketDisconnect, RuntimeError):
                pass  # gone: what is left of the reply is stored all the same

    async def error(self, error: str, content: str, **more: Any) -> None:
        await self.send(type="error", error=error, content=content, **more)

    async def receive(self, raw: str) -> None:
        if len(raw) > MAX_FRAME_CHARS:
            await self.error("too_large", f"That frame is over {MAX_FRAME_CHARS:,} characters.")
            return
        try:
            frame = json.loads(raw)
        except json.JSONDecodeError:
            await self.error("bad_json", BAD_JSON)
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            await self.send(type="pong")
        elif kind == "typing":
            return  # the user is typing: nothing to do yet
        elif kind == "message" and isinstance(frame.get("content"), str):
            await self.message(frame["content"], frame.get("client_id"))
        elif kind == "message":
            await self.error("bad_message", 'A message needs "content", a string.')
        elif kind in ("confirm", "decline") and isinstance(frame.get("proposal_id"), str):
            await self.decide(frame["proposal_id"], confirm=kind == "confirm")
        elif kind in ("confirm", "decline"):
            await self.error("bad_message", f'A {kind} needs "proposal_id", a string.')
        else:
            await self.error(
                "unknown_type",
                f"Unknown frame type {kind!r}: message, ping, typing, confirm, decline.",
            )

    async def decide(self, proposal_id: str, *, confirm: bool) -> None:
        if wait := over_budget(self.web, self.who.key):
            await self.error("rate_limited", "Too many requests: wait a moment.", retry_after=wait)
            return
        decision = await self.web.coach.decide(
            self.who.user.identity, proposal_id, confirm=confirm
        )
        await self.send(type="decision", **decision_view(decision))

    async def message(self, content: str, client_id: object) -> None:
        if wait := over_budget(self.web, self.who.key):
            await self.error("rate_limited", "Too many messages: wait a moment.", retry_after=wait)
            return
        key = event_id(self.who.user.id, client_id if isinstance(client_id, str) else None)
        # Created now, so it takes its place in the user's line in arrival order.
        reply = WebReply(self.web.coach, self.who.user.identity, content, key)
        reply.start(self.web.background)
        await self.send(type="typing", content=TYPING)
        self._replies.put_nowait(reply)

    async def relay(self) -> None:
        while True:
            reply = await self._replies.get()
            async for frame in reply.frames():
                await self.send(**protocol_frame(frame))


def protocol_frame(frame: Frame) -> dict[str, Any]:
    """A reply frame in the original protocol's words."""
    data = frame.data
    match frame.kind:
        case "welcome":
            return {"type": "welcome", "content": data["content"]}
        case "chunk":
            return {"type": "response_chunk", "content": data["content"], "is_complete": False}
        case "proposal":
            return {"type": "proposal", "proposal_id": data["id"], "content": data["text"],
                    "summary": data["summary"], "expires_at": data["expires_at"]}  # fmt: skip
        case "done":
            return {
                "type": "response",
                "content": data["content"],
                "message_id": data["message_id"],
                "is_complete": True,
                "tokens_used": data["tokens_used"],
            }
        case "refused":
            return {
                "type": "error",
                "error": "window_closed",
                "content": data["content"],
                "access": data["access"],
            }
    return {"type": "error", "error": data["error"], "content": data["content"]}
