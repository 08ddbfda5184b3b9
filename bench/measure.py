"""From what the fakes recorded to the figures a user would feel. Pure functions of data.

Every time here is `time.monotonic()` seconds, stamped by the fakes (and the bench's own
sender) in one process, so they compare directly. A conversation is one user message and
the reply it got; the screen is what that user could see of the reply, write by write.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bots.stream import STREAMING_INDICATOR


@dataclass(frozen=True)
class Write:
    """One platform call a user could see: an indicator (status/typing), or the reply's text
    as it stood after this call (`text`), indicator stripped."""

    at: float
    text: str | None  # None: an indicator, no text


@dataclass
class Conversation:
    """One message sent to the bot, the model's stream for it, and what showed on screen."""

    key: str  # the user's message text, unique per conversation
    sent_at: float  # the platform event left the platform (the bench)
    llm_received_at: float | None = None
    deltas: list[tuple[float, str]] = field(default_factory=list)  # (written at, text)
    writes: list[Write] = field(default_factory=list)
    finished: bool = False  # the platform saw the reply's last write (stream stopped, final edit)

    @property
    def model_text(self) -> str:
        return "".join(text for _, text in self.deltas)

    @property
    def llm_ttft(self) -> float | None:
        """The model's own time to first token, as the LLM fake measured it."""
        if self.llm_received_at is None or not self.deltas:
            return None
        return self.deltas[0][0] - self.llm_received_at

    @property
    def complete(self) -> bool:
        """The user ended up seeing the whole reply, and it was finished."""
        shown = self.writes[-1].text if self.writes else None
        return self.finished and bool(self.deltas) and shown == self.model_text.strip()


def visible(text: str) -> str:
    """The reply as a user reads it: without the streaming indicator or edge whitespace."""
    return text.removesuffix(STREAMING_INDICATOR).strip()


def overhead(conv: Conversation) -> float | None:
    """Event sent -> first visible output. An indicator shown before the model answers owes
    nothing to the model; when text comes first, the model's own TTFT is taken out."""
    if not conv.writes:
        return None
    first = conv.writes[0]
    if first.text is None:
        return first.at - conv.sent_at
    ttft = conv.llm_ttft
    return None if ttft is None else first.at - conv.sent_at - ttft


def first_text_overhead(conv: Conversation) -> float | None:
    """Event sent -> first reply text on screen, minus the model's own TTFT: all the time
    Momentum adds in front of the first words (dedupe, store, context, rendering, the wire)."""
    first_text = next((w for w in conv.writes if w.text), None)
    ttft = conv.llm_ttft
    if first_text is None or ttft is None:
        return None
    return first_text.at - conv.sent_at - ttft


def token_lags(conv: Conversation) -> list[float]:
    """For each model delta: written by the model -> that text first visible on screen.
    A delta never shown (the reply was cut short) has no lag and is left out."""
    lags: list[float] = []
    texts = [(w.at, w.text) for w in conv.writes if w.text is not None]
    produced = ""
    start = 0  # writes are in time order and text only grows: resume where the last one hit
    for at, delta in conv.deltas:
        produced += delta
        wanted = produced.strip()
        for i in range(start, len(texts)):
            shown_at, shown = texts[i]
            if shown_at >= at and shown.startswith(wanted):
                lags.append(shown_at - at)
                start = i
                break
    return lags


def text_writes(conv: Conversation) -> int:
    return sum(1 for w in conv.writes if w.text is not None)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms_summary(
    values: Iterable[float | None], ps: Sequence[int] = (50, 95, 99)
) -> dict[str, float]:
    """Percentiles in milliseconds, 1 decimal; `n` is how many values they came from."""
    kept = [v for v in values if v is not None]
    summary = {f"p{p}": round(percentile(kept, p) * 1000, 1) for p in ps}
    summary["n"] = len(kept)
    return summary
