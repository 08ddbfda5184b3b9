"""The MongoDB store's progress entries: dated notes per goal, oldest first."""

from __future__ import annotations

from typing import Any

from core.models import ProgressEntry
from core.store.mongo_base import Collections, _by, _doc, _load, _unavailable_on_error


class ProgressDocs(Collections):
    @_unavailable_on_error
    async def add_progress(self, entry: ProgressEntry) -> None:
        await self._progress.insert_one(_doc(entry))

    @_unavailable_on_error
    async def list_progress(self, user_id: str, goal_id: str | None = None) -> list[ProgressEntry]:
        query: dict[str, Any] = {"user_id": user_id}
        if goal_id is not None:
            query["goal_id"] = goal_id
        cursor = self._progress.find(query).sort(_by("created_at"))
        return [ProgressEntry.model_validate(_load(d)) async for d in cursor]
