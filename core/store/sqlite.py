"""The embedded default store: one SQLite file in WAL mode, through aiosqlite.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i+1
(statements separated by `;`, so no triggers).
Datetimes are stored as ISO-8601 UTC strings of fixed width, so text order is time order;
every datetime, query bounds included, goes through `_ts` to keep it so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from core.models import (
    Goal,
    GoalStatus,
    Message,
    MessageMeta,
)
from core.store.sqlite_file import SQLiteFile
from core.store.sqlite_installs import InstallRows
from core.store.sqlite_keys import KeyRows
from core.store.sqlite_meetings import MeetingRows
from core.store.sqlite_progress import ProgressRows
from core.store.sqlite_proposals import ProposalRows
from core.store.sqlite_rows import Rows, _ts
from core.store.sqlite_turns import TurnRows
from core.store.sqlite_users import UserRows

BUSY_TIMEOUT_SECONDS = 10.0  # another process (a separate scheduler) may hold the lock a moment
# 8 parameters a row: 8,000 per statement, within SQLite's limit (32,766 since 3.32).
ROWS_PER_INSERT = 1000

MIGRATIONS = [
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY, platform TEXT NOT NULL, external_id TEXT NOT NULL,
        workspace_id TEXT, display_name TEXT, phase TEXT NOT NULL, timezone TEXT,
        created_at TEXT NOT NULL, welcomed INTEGER NOT NULL DEFAULT 0,
        UNIQUE (platform, external_id)
    );
    CREATE TABLE messages (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL,
        created_at TEXT NOT NULL, complete INTEGER NOT NULL, meta TEXT NOT NULL
    );
    CREATE INDEX messages_by_user_time ON messages (user_id, created_at);
    CREATE TABLE goals (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL,
        created_at TEXT NOT NULL, closed_at TEXT
    );
    CREATE INDEX goals_by_user ON goals (user_id, created_at);
    CREATE TABLE meetings (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, start TEXT NOT NULL,
        duration_minutes INTEGER NOT NULL, series_id TEXT, status TEXT NOT NULL,
        closes_at TEXT NOT NULL, reminder_sent INTEGER NOT NULL DEFAULT 0,
        recap_sent INTEGER NOT NULL DEFAULT 0, recap TEXT
    );
    CREATE INDEX meetings_by_status_close ON meetings (status, closes_at);
    CREATE INDEX meetings_by_user ON meetings (user_id, start);
    CREATE TABLE events (key TEXT PRIMARY KEY, expires_at TEXT NOT NULL);
    CREATE INDEX events_by_expiry ON events (expires_at);
    """,
    """
    ALTER TABLE meetings ADD COLUMN recap_claimed_until TEXT
    """,
    """
    ALTER TABLE messages ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE turns (user_id TEXT PRIMARY KEY, holder TEXT, expires_at TEXT);
    CREATE TABLE turn_waits (
        ticket TEXT PRIMARY KEY, user_id TEXT NOT NULL, ticket_order TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX turn_waits_by_user ON turn_waits (user_id, ticket_order);
    CREATE TABLE in_flight (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, platform TEXT NOT NULL, owner TEXT NOT NULL,
        event_key TEXT, place TEXT NOT NULL, text TEXT NOT NULL, started_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX in_flight_by_platform ON in_flight (platform, started_at)
    """,
    # The scheduler's outbox (scheduler.outbox): one row per meeting step's notice.
    """
    CREATE TABLE notices (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, meeting_id TEXT NOT NULL,
        kind TEXT NOT NULL, facts TEXT NOT NULL, created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
        next_try_at TEXT NOT NULL, last_error TEXT, settled_at TEXT
    );
    CREATE INDEX notices_by_state_next_try ON notices (state, next_try_at);
    CREATE INDEX notices_by_user ON notices (user_id)
    """,
    # Web keys (core/keys.py): only digests are kept.
    """
    CREATE TABLE tokens (
        digest TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_at TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tokens_by_user ON tokens (user_id);
    CREATE TABLE passes (
        digest TEXT PRIMARY KEY, user_id TEXT NOT NULL, purpose TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX passes_by_user ON passes (user_id)
    """,
    # Identities linked to a user besides its own (core/linking.py, sqlite_users.py).
    """
    CREATE TABLE identities (
        platform TEXT NOT NULL, external_id TEXT NOT NULL, user_id TEXT NOT NULL,
        workspace_id TEXT, display_name TEXT, linked_at TEXT NOT NULL,
        PRIMARY KEY (platform, external_id)
    );
    CREATE INDEX identities_by_user ON identities (user_id, linked_at)
    """,
    # Calendar keys (core/keys.py KeyKind) beside API tokens.
    """
    ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api'
    """,
    # What the model proposed and the user confirms or declines (core/proposals.py).
    """
    CREATE TABLE proposals (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, args TEXT NOT NULL,
        summary TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        status TEXT NOT NULL, decided_at TEXT, result TEXT
    );
    CREATE INDEX proposals_by_user ON proposals (user_id, created_at)
    """,
    # Commitments carried forward, and the coach's notes on each user (core/notes.py).
    """
    CREATE TABLE commitments (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, text TEXT NOT NULL, due TEXT,
        created_at TEXT NOT NULL, meeting_id TEXT, status TEXT NOT NULL, done_at TEXT
    );
    CREATE INDEX commitments_by_user ON commitments (user_id, created_at);
    CREATE TABLE memory (user_id TEXT PRIMARY KEY, notes TEXT NOT NULL, updated_at TEXT NOT NULL)
    """,
    # Dated progress entries per goal (core/progress.py, sqlite_progress.py).
    """
    CREATE TABLE progress (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, goal_id TEXT NOT NULL, text TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX progress_by_user_goal_time ON progress (user_id, goal_id, created_at)
    """,
    # Apps installed into workspaces ("Add to Slack", core/installs.py): encrypted records.
    """
    CREATE TABLE installs (
        kind TEXT NOT NULL, enterprise_id TEXT NOT NULL, team_id TEXT NOT NULL,
        user_id TEXT NOT NULL, data TEXT NOT NULL, saved_at TEXT NOT NULL,
        PRIMARY KEY (kind, enterprise_id, team_id, user_id)
    )
    """,
]


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        user_id=row["user_id"],
        role=row["role"],
        text=row["text"],
        created_at=row["created_at"],
        complete=bool(row["complete"]),
        delivered=bool(row["delivered"]),
        meta=MessageMeta.model_validate_json(row["meta"]),
    )


def _message_row(message: Message) -> tuple[Any, ...]:
    return (
        message.id,
        message.user_id,
        message.role,
        message.text,
        _ts(message.created_at),
        int(message.complete),
        int(message.delivered),
        message.meta.model_dump_json(exclude_none=True),
    )


def _goal(row: sqlite3.Row) -> Goal:
    return Goal.model_validate(dict(row))


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema up to date, safely when several processes open a fresh file at once.

    The version is read again under the write lock (`BEGIN IMMEDIATE`), so exactly one
    opener migrates; `executescript` cannot be used inside it (it commits first).
    """
    if await _user_version(db) >= len(MIGRATIONS):
        return
    await db.execute("BEGIN IMMEDIATE")
    try:
        version = await _user_version(db)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


class SQLiteStore(
    UserRows, KeyRows, ProposalRows, TurnRows, MeetingRows, ProgressRows, InstallRows, Rows
):
    """Messages, goals and dedupe keys here; users and their identities in UserRows
    (sqlite_users.py), meetings and notices in MeetingRows (sqlite_meetings.py), turn leases
    and replies in flight in TurnRows (sqlite_turns.py), commitments and memory notes in
    NoteRows (sqlite_notes.py, under UserRows), progress in ProgressRows."""

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> SQLiteStore:
        """Open (creating it if need be, readable by its owner only) the file; a call waiting
        longer than `busy_timeout` for another connection's lock raises StoreUnavailable, and
        so does a file that cannot serve (the message says what is wrong with it)."""
        return cls(await SQLiteFile.open(path, busy_timeout=busy_timeout, prepare=_migrate))

    async def close(self) -> None:
        await self._db.close()


    # Messages

    async def add_message(self, message: Message) -> None:
        await self.add_messages([message])

    async def add_messages(self, messages: Sequence[Message]) -> None:
        # Many rows per INSERT: each statement is one implicit transaction, so a batch costs
        # a commit per chunk instead of per row (about 4x faster for 100k), and no explicit
        # BEGIN is held open on the connection that other coroutines share.
        rows = [_message_row(message) for message in messages]
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            await self._write(
                "INSERT INTO messages (id, user_id, role, text, created_at, complete, delivered,"
                " meta) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                [value for row in chunk for value in row],
            )

    async def recent_messages(self, user_id: str, limit: int) -> list[Message]:
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        rows = await self._all(
            "SELECT * FROM messages WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (user_id, limit),
        )
        return [_message(row) for row in reversed(rows)]

    async def history_page(
        self, user_id: str, page: int, page_size: int
    ) -> tuple[list[Message], int]:
        count = await self._one("SELECT COUNT(*) FROM messages WHERE user_id = ?", (user_id,))
        rows = await self._all(
            "SELECT * FROM messages WHERE user_id = ? ORDER BY created_at DESC, rowid DESC"
            " LIMIT ? OFFSET ?",
            (user_id, page_size, (page - 1) * page_size),
        )
        return [_message(row) for row in rows], count[0] if count else 0

    async def messages_between(
        self, user_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Message]:
        rows = await self._all(
            "SELECT * FROM messages WHERE user_id = ? AND created_at >= ? AND created_at < ?"
            " ORDER BY created_at, rowid",
            (user_id, _ts(start) if start else "", _ts(end) if end else "~"),
        )
        return [_message(row) for row in rows]

    async def mark_undelivered(self, message_id: str) -> None:
        await self._write("UPDATE messages SET delivered = 0 WHERE id = ?", (message_id,))

    async def clear_messages(self, user_id: str) -> int:
        return await self._write("DELETE FROM messages WHERE user_id = ?", (user_id,))

    # Goals

    async def add_goal(self, goal: Goal) -> None:
        await self._write(
            "INSERT INTO goals (id, user_id, text, status, created_at, closed_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                goal.id,
                goal.user_id,
                goal.text,
                goal.status,
                _ts(goal.created_at),
                _ts(goal.closed_at) if goal.closed_at else None,
            ),
        )

    async def list_goals(self, user_id: str, status: GoalStatus | None = None) -> list[Goal]:
        if status is None:
            rows = await self._all(
                "SELECT * FROM goals WHERE user_id = ? ORDER BY created_at, rowid", (user_id,)
            )
        else:
            rows = await self._all(
                "SELECT * FROM goals WHERE user_id = ? AND status = ? ORDER BY created_at, rowid",
                (user_id, status),
            )
        return [_goal(row) for row in rows]

    async def close_goal(
        self, user_id: str, goal_id: str, status: GoalStatus, now: datetime
    ) -> Goal | None:
        row = await self._one(
            "UPDATE goals SET status = ?, closed_at = ? WHERE id = ? AND user_id = ? AND status = ?"
            " RETURNING *",
            (status, _ts(now), goal_id, user_id, GoalStatus.ACTIVE),
        )
        return _goal(row) if row else None

    # Dedupe

    async def claim_event(self, key: str, now: datetime, expires_at: datetime) -> bool:
        await self._write("DELETE FROM events WHERE expires_at <= ?", (_ts(now),))
        inserted = await self._write(
            "INSERT OR IGNORE INTO events (key, expires_at) VALUES (?, ?)", (key, _ts(expires_at))
        )
        return inserted == 1

    async def release_event(self, key: str) -> None:
        await self._write("DELETE FROM events WHERE key = ?", (key,))

