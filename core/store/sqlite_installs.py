"""The SQLite store's app installations (core/installs.py): encrypted records by workspace."""

from __future__ import annotations

from datetime import datetime

from core.installs import InstallKey
from core.store.sqlite_rows import Rows, _ts


class InstallRows(Rows):
    async def save_install(self, key: InstallKey, data: str, now: datetime) -> None:
        await self._write(
            "INSERT INTO installs (kind, enterprise_id, team_id, user_id, data, saved_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, enterprise_id, team_id, user_id)"
            " DO UPDATE SET data = excluded.data, saved_at = excluded.saved_at",
            (key.kind, key.enterprise_id, key.team_id, key.user_id, data, _ts(now)),
        )

    async def find_install(self, key: InstallKey) -> str | None:
        row = await self._one(
            "SELECT data FROM installs WHERE kind = ? AND enterprise_id = ? AND team_id = ?"
            " AND user_id = ?",
            (key.kind, key.enterprise_id, key.team_id, key.user_id),
        )
        return None if row is None else str(row["data"])

    async def delete_installs(
        self, kind: str | None, enterprise_id: str, team_id: str, user_id: str | None = None
    ) -> int:
        sql = "DELETE FROM installs WHERE enterprise_id = ? AND team_id = ?"
        params: list[str] = [enterprise_id, team_id]
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        if user_id is not None:
            sql, params = sql + " AND user_id = ?", [*params, user_id]
        return await self._write(sql, params)
