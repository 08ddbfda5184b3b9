"""What the model is sent for one turn: the persona, the user's state, recent history.

The user's state is their phase, active goals, current meeting, local time, open commitments
and the coach's notes on them (core/notes.py). The whole prompt is kept within
CONTEXT_TOKEN_BUDGET, estimated as characters / 4 plus a little per block and message (what
the fake Anthropic counts too; real tokenizers differ by some percent, so leave headroom):
the oldest history goes first, then the oldest notes, then the oldest commitments. The persona
and the user's new message always stay, even if they alone are over the budget (then it is
logged). Each turn's estimate is logged; the real `usage.input_tokens` is kept with the reply.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from core.config import Settings
from core.models import CommitmentStatus, Goal, GoalStatus, Meeting, Message, ProgressEntry, User
from core.notes import NotesStore
from core.persona import CoachContext, Persona, conversation, system_blocks
from core.progress import goals_progress
from core.proposals import TOOLS

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
TOKENS_PER_PART = 4  # each system block and message: its role and framing
# The newest open commitments the model sees (all of them are in /commitments).
MAX_COMMITMENTS_IN_CONTEXT = 10


class ContextStore(NotesStore, Protocol):
    """The store reads a context needs."""

    async def recent_messages(self, user_id: str, limit: int) -> list[Message]:
        """The last `limit` messages, oldest first."""

    async def list_goals(self, user_id: str, status: GoalStatus | None = None) -> list[Goal]: ...
    async def list_progress(self, user_id: str, goal_id: str | None = None) -> list[ProgressEntry]:
        """The user's progress entries (of one goal, or all), oldest first."""


@dataclass(frozen=True)
class Prompt:
    """A turn's request to the model: system blocks and alternating messages."""

    system: list[dict[str, Any]]
    messages: list[dict[str, str]]
    estimated_tokens: int = 0
    # What the budget left out, oldest first: messages of the history, notes, commitments.
    dropped: tuple[int, int, int] = (0, 0, 0)


# The tool definitions go with every turn (core/proposals.py): part of the prompt's size.
TOOLS_CHARS = len(json.dumps(TOOLS))


def estimate_tokens(system: Sequence[dict[str, Any]], messages: Sequence[dict[str, str]]) -> int:
    chars = TOOLS_CHARS + sum(len(block["text"]) for block in system)
    chars += sum(len(message["content"]) for message in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_PART * (len(system) + len(messages))


def fit_to_budget(persona: Persona, context: CoachContext, text: str, budget: int) -> Prompt:
    """The prompt for `text`, the oldest history, then notes, then commitments left out one by
    one until it is within `budget` tokens (or nothing more may go). Pure."""
    history, memory = list(context.history), list(context.memory)
    commitments = list(context.commitments)
    parts: tuple[list[Any], ...] = (history, memory, commitments)  # the order they go in
    dropped = [0, 0, 0]
    while True:
        current = dataclasses.replace(
            context, history=history, memory=memory, commitments=commitments
        )
        system, messages = system_blocks(persona, current), conversation(history, text)
        tokens = estimate_tokens(system, messages)
        shrinkable = next((i for i, part in enumerate(parts) if part), None)
        if tokens <= budget or shrinkable is None:
            return Prompt(system, messages, tokens, (dropped[0], dropped[1], dropped[2]))
        parts[shrinkable].pop(0)
        dropped[shrinkable] += 1


@dataclass(frozen=True)
class Contexts:
    """Builds each turn's prompt from the store, the persona and the settings' bounds."""

    store: ContextStore
    persona: Persona
    settings: Settings
    clock: Callable[[], datetime]
    zone: Callable[[User], ZoneInfo]

    async def build(self, user: User, text: str, meeting: Meeting | None) -> Prompt:
        """The prompt for `text`: store reads and the persona, nothing streamed.

        Read before the user's message is saved, so the history ends just before it; a store
        failure here leaves nothing half-saved. bench/store.py times exactly this.
        """
        settings = self.settings
        history = await self.store.recent_messages(user.id, settings.history_context_messages)
        goals = await self.store.list_goals(user.id, GoalStatus.ACTIVE)
        goals = goals[: settings.max_active_goals_in_context]
        now, zone = self.clock(), self.zone(user)
        progress = goals_progress(goals, await self.store.list_progress(user.id), now, zone)
        commitments = await self.store.list_commitments(user.id, CommitmentStatus.OPEN)
        notes = await self.store.memory_notes(user.id)
        context = CoachContext(
            phase=user.phase,
            goals=goals,
            meeting=meeting,
            now=now,
            timezone=zone,
            history=history,
            commitments=commitments[-MAX_COMMITMENTS_IN_CONTEXT:],
            commitment_numbers={c.id: n for n, c in enumerate(commitments, 1)},
            memory=notes[: settings.memory_max_notes],
            progress={p.goal.id: p for p in progress},
        )
        prompt = fit_to_budget(self.persona, context, text, settings.context_token_budget)
        budget = settings.context_token_budget
        if prompt.estimated_tokens > budget:
            log.warning(
                "user %s: prompt ~%d tokens, over the budget of %d with nothing left to drop",
                user.id,
                prompt.estimated_tokens,
                budget,
            )
        else:
            log.info(
                "user %s: prompt ~%d tokens of %d (left out: %d messages, %d notes, "
                "%d commitments)",
                user.id,
                prompt.estimated_tokens,
                budget,
                *prompt.dropped,
            )
        return prompt
