"""Loopback fake of the Anthropic Messages API, for the real `anthropic` SDK.

The SDK runs unmodified against it (DESIGN.md, "Testing the outside world")::

    async with FakeAnthropic() as fake:
        client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="k", max_retries=0)

`POST /v1/messages` answers like the real API (anthropic-version 2026-10-21): SSE events
`message_start`, `content_block_start`, `ping`, `content_block_delta`*, `content_block_stop`,
`message_delta`, `message_stop` when `stream` is true, else one Message JSON. Errors use the
real shape `{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`:
401 without `Authorization: Bearer ...`, 400 for `temperature`/`top_p`/`top_k` or a missing
required field. Each request that passes those checks takes the next behaviour from the
queue filled by `fake.enqueue(...)`, or the default reply when the queue is empty.

What the SDK (anthropic 2.12, httpx2 2.16) raises for each scripted fault, checked by
tests/test_fake_anthropic.py:

* `HttpError(529)` -> `anthropic.OverloadedError`; `HttpError(500)` ->
  `anthropic.InternalServerError`; `HttpError(429, retry_after=s)` -> `anthropic.RateLimitError`;
  `HttpError(400)` -> `anthropic.BadRequestError`. The SDK retries 429/5xx/529 (`max_retries`),
  honouring `retry-after`, before it raises.
* `StreamError(after=n)` -> plain `anthropic.APIStatusError` with `status_code == 200` (the
  stream's status), raised from the stream iterator and never retried.
* `Drop(after=n)` -> `httpx2.RemoteProtocolError` ("incomplete chunked read"), raised from the
  stream iterator: NOT wrapped in `anthropic.APIConnectionError` and not retried. (A drop on a
  non-streamed call happens before any response, and that one the SDK does wrap in
  `APIConnectionError` and retry.)
* `Stall(after=n, seconds=s)` -> nothing; the caller's own `asyncio.timeout()` fires
  (`TimeoutError`). The SDK's read timeout is per read and defaults to 10 minutes.

Prompt caching is modelled on the tools and the system prompt: the prefix (the tools, then the
system blocks up to the last one carrying `cache_control`) is written to the cache the first
time (if it estimates at least `cache_min_tokens`) and read from it afterwards. Tokens are
estimated as characters / 4.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "Behaviour",
    "Drop",
    "FakeAnthropic",
    "HttpError",
    "RecordedRequest",
    "Reply",
    "Stall",
    "StreamError",
    "ToolUse",
    "chunk_text",
]

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
STATUS_ERROR = {status: kind for kind, status in ERROR_STATUS.items()}
ERROR_MESSAGE = {
    "invalid_request_error": "Invalid request",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}
REJECTED_PARAMS = ("temperature", "top_p", "top_k")
REQUIRED_FIELDS = ("model", "max_tokens", "messages")


# --- Scripted behaviours, one per request (see FakeAnthropic.enqueue) ---


@dataclass(frozen=True)
class Reply:
    """Answer normally, with this text instead of the default reply."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """Answer with `text` (may be empty), then call each tool of `calls` (name, input): a
    `tool_use` block whose input streams as `input_json_delta` pieces, and stop_reason
    `tool_use`. An input given as a str is sent as it is (malformed JSON, say)."""

    calls: tuple[tuple[str, Any], ...]
    text: str = ""


@dataclass(frozen=True)
class HttpError:
    """Answer with an HTTP error before any stream starts (the SDK may retry it)."""

    status: int = 529
    error_type: str | None = None  # derived from status when None
    message: str | None = None  # a typical one for error_type when None
    retry_after: float | None = None  # seconds, sent as the `retry-after` header


@dataclass(frozen=True)
class StreamError:
    """Send an SSE `error` event after `after` text deltas, then end the stream."""

    after: int = 1
    error_type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True)
class Drop:
    """Abort the TCP connection after `after` text deltas, mid chunked response."""

    after: int = 1


@dataclass(frozen=True)
class Stall:
    """Go silent for `seconds` after `after` text deltas (connection open), then go on."""

    after: int = 1
    seconds: float = 30.0


Behaviour = Reply | ToolUse | HttpError | StreamError | Drop | Stall


# --- What was asked and what was answered ---


@dataclass
class RecordedRequest:
    """One request as the fake saw it, and what it sent back when (`time.monotonic()`)."""

    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]  # the JSON body ({} if it was not a JSON object)
    received_at: float
    request_id: str
    message_id: str = field(default_factory=lambda: f"msg_fake_{uuid.uuid4().hex[:24]}")
    behaviour: Behaviour | None = None  # None: rejected by the auth or validation checks
    status: int = 200
    usage: dict[str, Any] = field(default_factory=dict)
    # (written at, text) per text delta; a non-streamed reply is one entry.
    deltas: list[tuple[float, str]] = field(default_factory=list)
    aborted: bool = False  # connection cut (Drop, or the fake closed mid-response)
    finished_at: float | None = None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def text(self) -> str:
        """The reply text actually written to the wire."""
        return "".join(chunk for _, chunk in self.deltas)

    @property
    def first_delta_at(self) -> float | None:
        return self.deltas[0][0] if self.deltas else None

    @property
    def system_text(self) -> str:
        return _text_of(self.body.get("system"))

    @property
    def last_user_text(self) -> str:
        return _last_user_text(self.body)


def _text_of(content: Any) -> str:
    """Plain text of a string or a list of content blocks (non-text blocks are skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _tokens(text: str) -> int:
    """Rough token estimate, the usual characters / 4."""
    return math.ceil(len(text) / 4)


def chunk_text(text: str) -> list[str]:
    """Split a reply into word-sized deltas, whitespace kept in front like a tokenizer does."""
    return re.findall(r"\s*\S+", text) + ([tail] if (tail := text[len(text.rstrip()) :]) else [])


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


class FakeAnthropic:
    """aiohttp server on 127.0.0.1 speaking the Messages API; see the module docstring.

    `reply` fixes the default reply (a string, or a function of the request body); without
    it the reply is "Coach: " + the last user message, so a test can see what was sent.
    `ttft` is the delay before the first text delta, `token_delay` the delay between deltas;
    both may be changed between requests. `api_key`, when set, must match the bearer token.
    """

    def __init__(
        self,
        *,
        reply: str | Callable[[dict[str, Any]], str] | None = None,
        ttft: float = 0.0,
        token_delay: float = 0.0,
        api_key: str | None = None,
        cache_min_tokens: int = 1024,
    ) -> None:
        self.reply = reply
        self.ttft = ttft
        self.token_delay = token_delay
        self.api_key = api_key
        self.cache_min_tokens = cache_min_tokens
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Behaviour] = deque()
        self._cache: set[str] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- lifecycle ---

    async def __aenter__(self) -> FakeAnthropic:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Wakes every stalled or sleeping stream, which then aborts its connection, so
        # cleanup does not wait for a 30 s stall.
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- scripting and inspection ---

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Script the next requests, first in first out; then back to the default reply."""
        self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        """Scripted behaviours not yet used."""
        return len(self._queue)

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("FakeAnthropic has received no request")
        return self.requests[-1]

    # --- the endpoint ---

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = RecordedRequest(
            headers=headers,
            body=body if isinstance(body, dict) else {},
            received_at=time.monotonic(),
            request_id=f"req_fake_{uuid.uuid4().hex[:24]}",
        )
        self.requests.append(record)

        if (problem := self._reject(headers, body)) is not None:
            return self._error(record, *problem)
        assert isinstance(body, dict)
        behaviour = self._queue.popleft() if self._queue else Reply(self._default_text(body))
        record.behaviour = behaviour
        if isinstance(behaviour, HttpError):
            extra = {}
            if behaviour.retry_after is not None:
                extra["retry-after"] = f"{behaviour.retry_after:g}"
            kind = behaviour.error_type or STATUS_ERROR.get(behaviour.status, "api_error")
            message = behaviour.message or ERROR_MESSAGE.get(kind, kind)
            return self._error(record, behaviour.status, kind, message, extra)

        scripted = isinstance(behaviour, Reply | ToolUse)
        text = behaviour.text if scripted else self._default_text(body)  # type: ignore[union-attr]
        record.usage = self._usage(body)
        if body.get("stream"):
            return await self._stream(request, record, behaviour, chunk_text(text))
        return await self._whole(request, record, behaviour, text)

    def _reject(self, headers: dict[str, str], body: Any) -> tuple[int, str, str] | None:
        """The checks the real API makes before it does any work, in its order."""
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not token or (self.api_key is not None and token != self.api_key):
            return 401, "authentication_error", "invalid x-api-key"
        if "anthropic-version" not in headers:
            return 400, "invalid_request_error", "anthropic-version: header is required"
        if not isinstance(body, dict):
            return 400, "invalid_request_error", "There was an error parsing the body."
        for name in REQUIRED_FIELDS:
            if name not in body:
                return 400, "invalid_request_error", f"{name}: Field required"
        for name in REJECTED_PARAMS:
            if name in body:
                return 400, "invalid_request_error", f"{name}: Extra inputs are not permitted"
        return None

    def _error(
        self,
        record: RecordedRequest,
        status: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        record.status = status
        record.finished_at = time.monotonic()
        return web.json_response(
            _error_body(error_type, message, record.request_id),
            status=status,
            headers={"request-id": record.request_id, **(headers or {})},
        )

    def _default_text(self, body: dict[str, Any]) -> str:
        if callable(self.reply):
            return self.reply(body)
        if self.reply is not None:
            return self.reply
        return "Coach: " + _last_user_text(body)

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        """Input-side usage; a cached system prefix is counted apart from `input_tokens`."""
        system = body.get("system")
        total = _tokens(_text_of(system))
        total += sum(_tokens(_text_of(m.get("content"))) for m in body.get("messages") or [])
        tools = _tokens(json.dumps(body["tools"])) if body.get("tools") else 0
        total += tools
        created = read = 0
        blocks: list[Any] = system if isinstance(system, list) else []
        marks = [
            i
            for i, block in enumerate(blocks)
            if isinstance(block, dict) and block.get("cache_control")
        ]
        if marks:
            prefix = blocks[: marks[-1] + 1]
            prefix_tokens = tools + _tokens(_text_of(prefix))  # tools come first in the cache
            if prefix_tokens >= self.cache_min_tokens:
                key = json.dumps([body.get("model"), body.get("tools"), prefix], sort_keys=True)
                digest = hashlib.sha256(key.encode()).hexdigest()
                if digest in self._cache:
                    read = prefix_tokens
                else:
                    created = prefix_tokens
                    self._cache.add(digest)
        return {
            "input_tokens": max(1, total - created - read),
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "output_tokens": 1,
        }

    def _message(self, record: RecordedRequest, text: str | None) -> dict[str, Any]:
        """A Message object: empty (text None) as in `message_start`, or complete."""
        return {
            "id": record.message_id,
            "type": "message",
            "role": "assistant",
            "model": record.body.get("model"),
            "content": [] if text is None else [{"type": "text", "text": text}],
            "stop_reason": None if text is None else "end_turn",
            "stop_sequence": None,
            "usage": {
                **record.usage,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": record.usage["cache_creation_input_tokens"],
                    "ephemeral_1h_input_tokens": 0,
                },
                "service_tier": "standard",
            },
        }

    async def _pause(self, seconds: float) -> bool:
        """Sleep, unless the fake is closing; False means: stop now and abort."""
        if seconds > 0 and not self._closing.is_set():
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)
            except TimeoutError:
                return True
        return not self._closing.is_set()

    async def _whole(
        self, request: web.Request, record: RecordedRequest, behaviour: Behaviour, text: str
    ) -> web.StreamResponse:
        """A non-streamed answer: faults map to what a client would see without a stream."""
        if isinstance(behaviour, StreamError):
            status = ERROR_STATUS.get(behaviour.error_type, 500)
            return self._error(record, status, behaviour.error_type, behaviour.message)
        chunks = chunk_text(text)
        wait = self.ttft + self.token_delay * max(0, len(chunks) - 1)
        wait += behaviour.seconds if isinstance(behaviour, Stall) else 0.0
        if isinstance(behaviour, Drop) or not await self._pause(wait):
            return self._abort(request, record)
        record.usage["output_tokens"] = max(1, len(chunks))
        record.deltas.append((time.monotonic(), text))
        record.finished_at = time.monotonic()
        return web.json_response(
            self._message(record, text), headers={"request-id": record.request_id}
        )

    async def _stream(
        self,
        request: web.Request,
        record: RecordedRequest,
        behaviour: Behaviour,
        chunks: list[str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": record.request_id,
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            finished = await self._write_events(response, record, behaviour, chunks)
        except ConnectionError:
            finished = True  # the client went away (its deadline fired); nothing to abort
        if not finished:
            return self._abort(request, record, response)
        record.finished_at = time.monotonic()
        return response

    async def _write_events(
        self,
        response: web.StreamResponse,
        record: RecordedRequest,
        behaviour: Behaviour,
        chunks: list[str],
    ) -> bool:
        """Write the SSE events; False when the connection must be aborted instead."""

        async def send(event: str, **fields: Any) -> None:
            data = json.dumps({"type": event, **fields}, separators=(",", ":"))
            await response.write(f"event: {event}\ndata: {data}\n\n".encode())

        await send("message_start", message=self._message(record, None))
        await send("content_block_start", index=0, content_block={"type": "text", "text": ""})
        await send("ping")
        if not await self._pause(self.ttft):
            return False
        fault_at = None  # faults past the end of the reply happen after its last delta
        if isinstance(behaviour, StreamError | Drop | Stall):
            fault_at = min(behaviour.after, len(chunks))
        for n in range(len(chunks) + 1):
            if n == fault_at:
                if isinstance(behaviour, StreamError):
                    await send(
                        "error", error={"type": behaviour.error_type, "message": behaviour.message}
                    )
                    await response.write_eof()
                    return True
                if isinstance(behaviour, Drop):
                    return False
                if isinstance(behaviour, Stall) and not await self._pause(behaviour.seconds):
                    return False
            if n == len(chunks):
                break
            if n and not await self._pause(self.token_delay):
                return False
            delta = {"type": "text_delta", "text": chunks[n]}
            await send("content_block_delta", index=0, delta=delta)
            record.deltas.append((time.monotonic(), chunks[n]))

        record.usage["output_tokens"] = max(1, len(chunks))
        await send("content_block_stop", index=0)
        calls = behaviour.calls if isinstance(behaviour, ToolUse) else ()
        for index, (name, tool_input) in enumerate(calls, start=1):
            await self._send_tool_use(send, index, name, tool_input)
        end = {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None}
        await send("message_delta", delta=end, usage=record.usage)
        await send("message_stop")
        await response.write_eof()
        return True

    async def _send_tool_use(
        self, send: Callable[..., Any], index: int, name: str, tool_input: Any
    ) -> None:
        """One tool_use block, its input in three `input_json_delta` pieces as the API splits
        it (at arbitrary places, not at JSON boundaries)."""
        block = {"type": "tool_use", "id": f"toolu_fake_{uuid.uuid4().hex[:20]}", "name": name,
                 "input": {}}  # fmt: skip
        await send("content_block_start", index=index, content_block=block)
        raw = tool_input if isinstance(tool_input, str) else json.dumps(tool_input)
        third = max(1, len(raw) // 3)
        for piece in (raw[:third], raw[third : 2 * third], raw[2 * third :]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            await send("content_block_delta", index=index, delta=delta)
        await send("content_block_stop", index=index)

    def _abort(
        self,
        request: web.Request,
        record: RecordedRequest,
        response: web.StreamResponse | None = None,
    ) -> web.StreamResponse:
        """Cut the TCP connection without finishing the response (no final chunk)."""
        if request.transport is not None:
            request.transport.abort()
        record.aborted = True
        record.finished_at = time.monotonic()
        return response if response is not None else web.Response()
