"""The LLM port: what the coach needs of a model, and the one loop that reads a reply.

`LLM.stream` yields text deltas as the model writes them, then one `Completion` with usage.
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


class LLM(Protocol):
    model: str

    def stream(
        self, system: Sequence[dict[str, Any]], messages: Sequence[dict[str, str]]
    ) -> AsyncIterator[str | Completion]: ...


class UnconfiguredLLM:
    """Stands in when no API key is set, so everything but chat still works."""

    model = "none"

    async def stream(
        self, system: Sequence[dict[str, Any]], messages: Sequence[dict[str, str]]
    ) -> AsyncIterator[str | Completion]:
        raise LLMError("not_configured")
        yield  # pragma: no cover - makes this an async generator


class ModelReply:
    """One answer of the model as it streams, and what is known of it so far: the one loop
    that reads `LLM.stream`, for a chat turn (piece by piece) and a recap (whole)."""

    def __init__(
        self, llm: LLM, system: Sequence[dict[str, Any]], messages: Sequence[dict[str, str]]
    ) -> None:
        self._stream = llm.stream(system, messages)
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

    async def pieces(self) -> AsyncIterator[str]:
        """The text as the model writes it; raises LLMError."""
        async for item in self._stream:
            if isinstance(item, Completion):
                self.completion = item
                continue
            if self.first_token_ms is None:
                self.first_token_ms = self._elapsed_ms()
            self.parts.append(item)
            yield item

    async def whole(self) -> str:
        async for _ in self.pieces():
            pass
        return self.text
