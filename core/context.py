"""What the model is sent for one turn: the persona, the user's state, recent history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from core.config import Settings
from core.models import Goal, GoalStatus, Meeting, Message, ProgressEntry, User
from core.persona import CoachContext, Persona, conversation, system_blocks
from core.progress import goals_progress


class ContextStore(Protocol):
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
        history = await self.store.recent_messages(user.id, self.settings.history_context_messages)
        goals = await self.store.list_goals(user.id, GoalStatus.ACTIVE)
        goals = goals[: self.settings.max_active_goals_in_context]
        now, zone = self.clock(), self.zone(user)
        progress = goals_progress(goals, await self.store.list_progress(user.id), now, zone)
        context = CoachContext(
            phase=user.phase,
            goals=goals,
            meeting=meeting,
            now=now,
            timezone=zone,
            history=history,
            progress={p.goal.id: p for p in progress},
        )
        return Prompt(system_blocks(self.persona, context), conversation(history, text))
