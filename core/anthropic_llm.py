"""The LLM port on Anthropic's Messages API, streamed (the SDK is imported only here)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anthropic
import httpx2

from core.llm import Completion, ErrorKind, LLMError, Messages, ToolCall, Tools
from core.metrics import MODEL_ERRORS
from core.models import Usage

log = logging.getLogger(__name__)

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


class AnthropicLLM:
    """Streams from the Messages API with a total deadline and a stall timeout.

    The SDK's own `timeout` is per read and it retries connection errors, 408/409/429/5xx
    before the stream starts; a failure after the first token is not retried (the user has
    already seen part of the reply), so it surfaces as `interrupted`.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        max_tokens: int,
        base_url: str | None = None,
        max_retries: int = 2,
        deadline_seconds: float = 90.0,
        stall_seconds: float = 20.0,
    ) -> None:
        self.model = model
        self._max_tokens = max_tokens
        self._deadline = deadline_seconds
        self._stall = stall_seconds
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=max_retries
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(
        self, system: Sequence[dict[str, Any]], messages: Messages, tools: Tools = ()
    ) -> AsyncIterator[str | ToolCall | Completion]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline
        started = False

        def budget(limit: float) -> float:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            return min(limit, remaining)

        # Timeouts wrap each await, never a `yield`: a timeout spanning a yield would cancel
        # the consumer's code instead of ours. Raw events rather than `messages.stream()`:
        # its message snapshot and derived events cost ~30% more CPU per delta (bench/).
        reply = _Reply(self.model)
        try:
            async with AsyncExitStack() as stack:
                events = await asyncio.wait_for(
                    self._client.messages.create(
                        model=self.model,
                        max_tokens=self._max_tokens,
                        system=list(system),  # type: ignore[arg-type]
                        messages=list(messages),  # type: ignore[arg-type]
                        stream=True,
                        tools=list(tools) if tools else anthropic.omit,  # type: ignore[arg-type]
                    ),
                    budget(self._deadline),
                )
                assert isinstance(events, anthropic.AsyncStream)  # stream=True, for mypy
                stack.push_async_callback(events.close)
                pending = aiter(events)
                while True:
                    try:
                        event = await asyncio.wait_for(anext(pending), budget(self._stall))
                    except StopAsyncIteration:
                        break
                    if (delta := reply.take(event)) is not None:
                        started = True
                        yield delta
        except Exception as error:
            failure = _as_llm_error(error, started)
            if not isinstance(failure, LLMError):
                raise
            MODEL_ERRORS.labels(failure.kind).inc()
            raise failure from error
        yield reply.completion()


def _as_llm_error(error: Exception, started: bool) -> Exception:
    """The SDK's failure as an LLMError a user can be told about (others pass unchanged)."""
    if isinstance(error, TimeoutError):
        return LLMError("timeout", "deadline or stall")
    if isinstance(error, anthropic.RateLimitError):
        return LLMError("rate_limited", str(error))
    if isinstance(error, anthropic.AuthenticationError):
        log.error("Anthropic rejected the API key: %s", error)
        return LLMError("misconfigured", str(error))
    if isinstance(error, anthropic.BadRequestError):
        return LLMError("rejected", str(error))
    if isinstance(error, anthropic.APIStatusError):
        # A mid-stream `error` event arrives as status 200; others are HTTP errors.
        kind: ErrorKind = "interrupted" if started or error.status_code == 200 else "unavailable"
        return LLMError(kind, f"{error.status_code}: {error}")
    if isinstance(error, anthropic.APIConnectionError | httpx2.TransportError):
        return LLMError("interrupted" if started else "unavailable", repr(error))
    return error


class _Reply:
    """What the raw events of one reply say besides its text: model, usage, stop reason,
    and the tool calls, their input gathered from `input_json_delta` pieces."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: dict[str, int] = {}
        self.stop_reason: str | None = None
        self._tools: dict[int, tuple[str, str, list[str]]] = {}  # index -> id, name, pieces

    def take(self, event: anthropic.types.RawMessageStreamEvent) -> str | ToolCall | None:
        """Note what `event` tells; its text when it is a text delta, the call when a tool
        block ends."""
        if event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                return event.delta.text
            if event.delta.type == "input_json_delta" and event.index in self._tools:
                self._tools[event.index][2].append(event.delta.partial_json)
            return None
        if event.type == "content_block_start" and event.content_block.type == "tool_use":
            block = event.content_block
            self._tools[event.index] = (block.id, block.name, [])
        elif event.type == "content_block_stop" and event.index in self._tools:
            return _call(*self._tools.pop(event.index))
        elif event.type == "message_start":
            self.model = event.message.model
            self._count(event.message.usage)
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason
            self._count(event.usage)  # cumulative: later figures replace earlier ones
        return None

    def _count(self, usage: Any) -> None:
        for name in USAGE_FIELDS:
            if (value := getattr(usage, name, None)) is not None:
                self.usage[name] = value

    def completion(self) -> Completion:
        return Completion(
            model=self.model,
            usage=Usage(**{name: self.usage.get(name, 0) for name in USAGE_FIELDS}),
            stop_reason=self.stop_reason,
        )


def _call(call_id: str, name: str, pieces: list[str]) -> ToolCall:
    raw = "".join(pieces)
    try:
        value: Any = json.loads(raw) if raw.strip() else {}
    except ValueError:
        value = raw  # core/proposals.py refuses it, and says why in the log
    return ToolCall(call_id, name, value)
