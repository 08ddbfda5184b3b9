"""The SQLite store's progress entries: dated notes per goal, oldest first."""

from __future__ import annotations

from core.models import ProgressEntry
from core.store.sqlite_rows import Rows, _ts


class ProgressRows(Rows):
    async def add_progress(self, entry: ProgressEntry) -> None:
        await self._write(
            "INSERT INTO progress (id, user_id, goal_id, text, created_at) VALUES (?, ?, ?, ?, ?)",
            (entry.id, entry.user_id, entry.goal_id, entry.text, _ts(entry.created_at)),
        )

    async def list_progress(self, user_id: str, goal_id: str | None = None) -> list[ProgressEntry]:
        if goal_id is None:
            rows = await self._all(
                "SELECT * FROM progress WHERE user_id = ? ORDER BY created_at, rowid", (user_id,)
            )
        else:
            rows = await self._all(
                "SELECT * FROM progress WHERE user_id = ? AND goal_id = ?"
                " ORDER BY created_at, rowid",
                (user_id, goal_id),
            )
        return [ProgressEntry.model_validate(dict(row)) for row in rows]
