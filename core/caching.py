"""Prompt caching and what a turn costs: pure arithmetic on the prompt's stable prefix and on
a reply's usage.

The API caches the prefix of a request (the tools, then the system blocks up to the last one
marked `cache_control`) only when it is at least a model-specific number of tokens; below it
nothing is cached and every turn pays full price for the persona and the tools. The
minimums assumed here are Anthropic's published ones for the families (Sonnet 1,024 tokens,
Haiku 2,048; the installed SDK states none): `ANTHROPIC_CACHE_MIN_TOKENS` overrides them.
Tokens are estimated as characters / 4, as in core/context.py; real tokenizers count English
prose at somewhat more tokens than that, so an estimate above the minimum is on the safe side.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.models import Usage

CHARS_PER_TOKEN = 4
DEFAULT_CACHE_MIN_TOKENS = 1024  # Sonnet and Opus families
CACHE_MIN_TOKENS_BY_FAMILY = {"haiku": 2048}
MTOK = 1_000_000

log = logging.getLogger(__name__)


def cache_min_tokens(model: str) -> int:
    """The shortest prefix the model caches, by its family named in the id."""
    for family, minimum in CACHE_MIN_TOKENS_BY_FAMILY.items():
        if family in model:
            return minimum
    return DEFAULT_CACHE_MIN_TOKENS


def prefix_tokens(tools: Sequence[dict[str, Any]], cached_system: Sequence[dict[str, Any]]) -> int:
    """Estimated tokens of the cached prefix: the tools (as sent, JSON) and the system blocks
    up to and including the one marked for caching."""
    tool_chars = len(json.dumps(list(tools))) if tools else 0
    text_chars = len("\n".join(block["text"] for block in cached_system))
    return math.ceil(tool_chars / CHARS_PER_TOKEN) + math.ceil(text_chars / CHARS_PER_TOKEN)


def warn_if_uncached(prefix: int, minimum: int, model: str) -> bool:
    """Log when the stable prefix is too short to be cached (a short PERSONA_PATH file)."""
    if prefix >= minimum:
        return False
    log.warning(
        "prompt caching will not apply: the persona and tools estimate %d tokens, under the "
        "%d that %s caches (ANTHROPIC_CACHE_MIN_TOKENS); every turn pays for them in full",
        prefix, minimum, model,
    )
    return True


@dataclass(frozen=True)
class Prices:
    """A model's list prices in US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(self, usage: Usage) -> float:
        """What a reply cost, caching as it happened."""
        return (
            usage.input_tokens * self.input
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
            + usage.output_tokens * self.output
        ) / MTOK

    def cost_uncached(self, usage: Usage) -> float:
        """What the same reply would have cost with no caching: all input at the input price."""
        all_input = (
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        )
        return (all_input * self.input + usage.output_tokens * self.output) / MTOK
