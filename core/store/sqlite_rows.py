"""The SQLite store's plumbing: one statement a call, through the file (sqlite_file.py), and
the datetimes kept as fixed-width ISO-8601 UTC text, so text order is time order."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from core.store.sqlite_file import Params, SQLiteFile


def _ts(value: datetime) -> str:
    """UTC, so strings compare as instants; naive counts as UTC, as PyMongo has it."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class Rows:
    """A SQLite store's statements: the base of its parts (users and messages, meetings,
    turns), which share one file."""

    def __init__(self, db: SQLiteFile) -> None:
        self._db = db

    async def _all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._db.fetch(sql, params)

    async def _one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Params = ()) -> int:
        return await self._db.change(sql, params)
