"""The LLM port: what the coach needs of a model, and the one loop that reads a reply.

`LLM.stream` yields text deltas as the model writes them, a `ToolCall` for each tool the model
calls (its input whole, once the block ends), then one `Completion` with usage.
Every failure comes out as an `LLMError` with a kind and a sentence a user can read, so the
Coach never has to know the SDK's exception tree. The Anthropic implementation is in
core/anthropic_llm.py, imported only by a process that has an API key.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from core.models import Usage
from core.texts import LLM_TEXT

ErrorKind = Literal[
    "not_configured",
    "unavailable",
    "rate_limited",
    "interrupted",
    "timeout",
    "misconfigured",
    "rejected",
]

# What a user is told for each kind (the sentences live with the others, in core/texts.py).
USER_TEXT: dict[ErrorKind, str] = {kind: LLM_TEXT[kind] for kind in get_args(ErrorKind)}


class LLMError(Exception):
    def __init__(self, kind: ErrorKind, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind: ErrorKind = kind
        self.user_text = USER_TEXT[kind]


@dataclass(frozen=True)
class Completion:
    model: str
    usage: Usage
    stop_reason: str | None


@dataclass(frozen=True)
class ToolCall:
    """A tool the model called: `input` is the parsed JSON, or the raw text if it was not."""

    id: str
    name: str
    input: Any


Messages = Sequence[dict[str, Any]]
Tools = Sequence[dict[str, Any]]


class LLM(Protocol):
    model: str

    def stream(
        self, system: Sequence[dict[str, Any]], messages: Messages, tools: Tools = ()
    ) -> AsyncIterator[str | ToolCall | Completion]: ...


class UnconfiguredLLM:
    """Stands in when no API key is set, so everything but chat still works."""

    model = "none"

    async def stream(
        self, system: Sequence[dict[str, Any]], messages: Messages, tools: Tools = ()
    ) -> AsyncIterator[str | ToolCall | Completion]:
        raise LLMError("not_configured")
        yield  # pragma: no cover - makes this an async generator


class ModelReply:
    """One answer of the model as it streams, and what is known of it so far: the one loop
    that reads `LLM.stream`, for a chat turn (piece by piece) and a recap (whole).

    With tools, an answer may take rounds: when the model stops to call tools, the reader
    gives each call its result (`tool_result`) and the next round starts from the answer so
    far, up to `max_rounds`. The rounds read as one answer: one text, usage summed.
    """

    def __init__(
        self,
        llm: LLM,
        system: Sequence[dict[str, Any]],
        messages: Messages,
        tools: Tools = (),
        max_rounds: int = 2,
    ) -> None:
        self._llm, self._system, self._tools = llm, system, tools
        self._messages = list(messages)
        self._rounds_left = max_rounds
        self._results: dict[str, str] = {}
        self.parts: list[str] = []
        self.completion: Completion | None = None
        self.first_token_ms: int | None = None
        self._started = time.perf_counter()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def latency_ms(self) -> int:
        return self._elapsed_ms()

    def _elapsed_ms(self) -> int:
        return round((time.perf_counter() - self._started) * 1000)

    def tool_result(self, call: ToolCall, result: str) -> None:
        """What the call did, for the model's next round."""
        self._results[call.id] = result

    async def items(self) -> AsyncIterator[str | ToolCall]:
        """The text as the model writes it, and its tool calls; raises LLMError."""
        while self._rounds_left > 0:
            self._rounds_left -= 1
            round_text: list[str] = []
            calls: list[ToolCall] = []
            async for item in self._llm.stream(self._system, self._messages, self._tools):
                if isinstance(item, Completion):
                    self._complete(item)
                elif isinstance(item, ToolCall):
                    calls.append(item)
                    yield item
                else:
                    if not round_text and self.parts and not self.text[-1:].isspace():
                        item = "\n\n" + item  # a new round's text is a new paragraph
                    if self.first_token_ms is None:
                        self.first_token_ms = self._elapsed_ms()
                    round_text.append(item)
                    self.parts.append(item)
                    yield item
            if not calls or self.completion is None or self.completion.stop_reason != "tool_use":
                return
            self._messages += _tool_turn("".join(round_text), calls, self._results)

    async def pieces(self) -> AsyncIterator[str]:
        """The text alone (tool calls, if any, are left unanswered)."""
        async for item in self.items():
            if isinstance(item, str):
                yield item

    async def whole(self) -> str:
        async for _ in self.pieces():
            pass
        return self.text

    def _complete(self, completion: Completion) -> None:
        """Rounds add up: usage summed, the model and stop reason of the last."""
        if self.completion is not None:
            before, now = self.completion.usage, completion.usage
            summed = Usage(**{
                name: getattr(before, name) + getattr(now, name) for name in Usage.model_fields
            })  # fmt: skip
            completion = Completion(completion.model, summed, completion.stop_reason)
        self.completion = completion


def _tool_turn(text: str, calls: Sequence[ToolCall], results: dict[str, str]) -> Messages:
    """The assistant's round with its tool calls, and the user's turn with their results
    (the API wants one result per call, with the call's id)."""
    said: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    said += [
        {"type": "tool_use", "id": c.id, "name": c.name,
         "input": c.input if isinstance(c.input, dict) else {}}
        for c in calls
    ]  # fmt: skip
    answered = [
        {"type": "tool_result", "tool_use_id": c.id, "content": results.get(c.id, "Not done.")}
        for c in calls
    ]
    return [{"role": "assistant", "content": said}, {"role": "user", "content": answered}]
