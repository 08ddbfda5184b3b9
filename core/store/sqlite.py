"""The embedded default store: one SQLite file in WAL mode, through aiosqlite.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i+1
(statements separated by `;`, so no triggers).
Datetimes are stored as ISO-8601 UTC strings of fixed width, so text order is time order;
every datetime, query bounds included, goes through `_ts` to keep it so.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from core.models import (
    Goal,
    GoalStatus,
    Identity,
    InFlight,
    Meeting,
    MeetingStatus,
    Message,
    MessageMeta,
    Notice,
    NoticeFacts,
    NoticeState,
    Phase,
    Platform,
    User,
)
from core.store import MeetingFlag
from core.store.sqlite_file import Params, SQLiteFile

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
]


def _ts(value: datetime) -> str:
    """UTC, so strings compare as instants; naive counts as UTC, as PyMongo has it."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _user(row: sqlite3.Row) -> User:
    return User(
        id=row["id"],
        identity=Identity(
            platform=row["platform"],
            external_id=row["external_id"],
            workspace_id=row["workspace_id"],
            display_name=row["display_name"],
        ),
        phase=row["phase"],
        timezone=row["timezone"],
        created_at=row["created_at"],
        welcomed=bool(row["welcomed"]),
    )


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


def _in_flight(row: sqlite3.Row) -> InFlight:
    return InFlight.model_validate({**dict(row), "place": json.loads(row["place"])})


def _turn_params(
    user_id: str, ticket: str, order: str, now: datetime, until: datetime
) -> dict[str, str]:
    return {"user": user_id, "ticket": ticket, "order": order, "now": _ts(now), "until": _ts(until)}


def _goal(row: sqlite3.Row) -> Goal:
    return Goal.model_validate(dict(row))


def _meeting(row: sqlite3.Row) -> Meeting:
    return Meeting.model_validate(
        {
            **dict(row),
            "reminder_sent": bool(row["reminder_sent"]),
            "recap_sent": bool(row["recap_sent"]),
        }
    )


def _notice(row: sqlite3.Row) -> Notice:
    return Notice.model_validate(
        {**dict(row), "facts": NoticeFacts.model_validate_json(row["facts"])}
    )


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


class SQLiteStore:
    def __init__(self, db: SQLiteFile) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> SQLiteStore:
        """Open (creating it if need be, readable by its owner only) the file; a call waiting
        longer than `busy_timeout` for another connection's lock raises StoreUnavailable, and
        so does a file that cannot serve (the message says what is wrong with it)."""
        return cls(await SQLiteFile.open(path, busy_timeout=busy_timeout, prepare=_migrate))

    async def close(self) -> None:
        await self._db.close()

    async def _all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._db.fetch(sql, params)

    async def _one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Params = ()) -> int:
        return await self._db.change(sql, params)

    # Users

    async def get_or_create_user(self, identity: Identity, now: datetime) -> tuple[User, bool]:
        # Read first: the user almost always exists, and a read takes no write lock.
        if (existing := await self._user_by_identity(identity)) is not None:
            return existing, False
        user = User(identity=identity, created_at=now)
        inserted = await self._write(
            "INSERT OR IGNORE INTO users (id, platform, external_id, workspace_id, display_name,"
            " phase, timezone, created_at, welcomed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                user.id,
                identity.platform,
                identity.external_id,
                identity.workspace_id,
                identity.display_name,
                user.phase,
                user.timezone,
                _ts(user.created_at),
            ),
        )
        created = await self._user_by_identity(identity)
        assert created is not None
        return created, inserted == 1

    async def _user_by_identity(self, identity: Identity) -> User | None:
        row = await self._one(
            "SELECT * FROM users WHERE platform = ? AND external_id = ?",
            (identity.platform, identity.external_id),
        )
        return _user(row) if row else None

    async def get_user(self, user_id: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def update_user(
        self,
        user_id: str,
        *,
        phase: Phase | None = None,
        timezone: str | None = None,
        welcomed: bool | None = None,
    ) -> User | None:
        changes = {"phase": phase, "timezone": timezone, "welcomed": welcomed}
        changes = {key: value for key, value in changes.items() if value is not None}
        if changes:
            assignments = ", ".join(f"{key} = ?" for key in changes)
            await self._write(
                f"UPDATE users SET {assignments} WHERE id = ?", (*changes.values(), user_id)
            )
        return await self.get_user(user_id)

    async def claim_welcome(self, user_id: str) -> bool:
        changed = await self._write(
            "UPDATE users SET welcomed = 1 WHERE id = ? AND welcomed = 0", (user_id,)
        )
        return changed == 1

    async def list_users(self) -> list[User]:
        rows = await self._all("SELECT * FROM users ORDER BY created_at, rowid")
        return [_user(row) for row in rows]

    async def delete_user(self, user_id: str) -> None:
        for table, column in (
            ("in_flight", "user_id"),
            ("turn_waits", "user_id"),
            ("turns", "user_id"),
            ("messages", "user_id"),
            ("goals", "user_id"),
            ("meetings", "user_id"),
            ("notices", "user_id"),
            ("users", "id"),
        ):
            await self._write(f"DELETE FROM {table} WHERE {column} = ?", (user_id,))

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

    # Meetings

    async def add_meetings(self, meetings: Sequence[Meeting]) -> None:
        await self._db.change_many(
            "INSERT INTO meetings (id, user_id, start, duration_minutes, series_id, status,"
            " closes_at, reminder_sent, recap_sent, recap, recap_claimed_until)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    m.id,
                    m.user_id,
                    _ts(m.start),
                    m.duration_minutes,
                    m.series_id,
                    m.status,
                    _ts(m.closes_at),
                    int(m.reminder_sent),
                    int(m.recap_sent),
                    m.recap,
                    _ts(m.recap_claimed_until) if m.recap_claimed_until else None,
                )
                for m in meetings
            ],
        )

    async def get_meeting(self, meeting_id: str) -> Meeting | None:
        row = await self._one("SELECT * FROM meetings WHERE id = ?", (meeting_id,))
        return _meeting(row) if row else None

    async def list_meetings(
        self, user_id: str, *, closing_after: datetime | None = None
    ) -> list[Meeting]:
        rows = await self._all(
            "SELECT * FROM meetings WHERE user_id = ? AND closes_at > ? ORDER BY start, rowid",
            (user_id, _ts(closing_after) if closing_after else ""),
        )
        return [_meeting(row) for row in rows]

    async def live_meetings(self, closing_after: datetime) -> list[Meeting]:
        rows = await self._all(
            "SELECT * FROM meetings WHERE status IN (?, ?) AND closes_at > ? ORDER BY start, rowid",
            (MeetingStatus.SCHEDULED, MeetingStatus.OPEN, _ts(closing_after)),
        )
        return [_meeting(row) for row in rows]

    async def cancel_meetings(self, user_id: str, meeting_ids: Sequence[str]) -> int:
        marks = ", ".join("?" for _ in meeting_ids)
        return await self._write(
            f"UPDATE meetings SET status = ? WHERE user_id = ? AND id IN ({marks})"
            " AND status IN (?, ?)",
            (
                MeetingStatus.CANCELLED,
                user_id,
                *meeting_ids,
                MeetingStatus.SCHEDULED,
                MeetingStatus.OPEN,
            ),
        )

    async def claim_transition(
        self,
        meeting_id: str,
        from_status: MeetingStatus,
        to_status: MeetingStatus,
        *,
        recap_claimed_until: datetime | None = None,
    ) -> Meeting | None:
        if recap_claimed_until is None:
            row = await self._one(
                "UPDATE meetings SET status = ? WHERE id = ? AND status = ? RETURNING *",
                (to_status, meeting_id, from_status),
            )
        else:
            row = await self._one(
                "UPDATE meetings SET status = ?, recap_claimed_until = ?"
                " WHERE id = ? AND status = ? RETURNING *",
                (to_status, _ts(recap_claimed_until), meeting_id, from_status),
            )
        return _meeting(row) if row else None

    async def claim_flag(self, meeting_id: str, flag: MeetingFlag) -> Meeting | None:
        column = {"reminder_sent": "reminder_sent"}[flag]
        row = await self._one(
            f"UPDATE meetings SET {column} = 1 WHERE id = ? AND {column} = 0 RETURNING *",
            (meeting_id,),
        )
        return _meeting(row) if row else None

    async def pending_recaps(self, closed_after: datetime, now: datetime) -> list[Meeting]:
        # (status, closes_at) is the index; the rest is checked on its few rows.
        rows = await self._all(
            "SELECT * FROM meetings WHERE status = ? AND closes_at > ? AND recap_sent = 0"
            " AND (recap_claimed_until IS NULL OR recap_claimed_until <= ?)"
            " ORDER BY closes_at, rowid",
            (MeetingStatus.CLOSED, _ts(closed_after), _ts(now)),
        )
        return [_meeting(row) for row in rows]

    async def claim_recap(
        self, meeting_id: str, *, expired_by: datetime, until: datetime
    ) -> Meeting | None:
        row = await self._one(
            "UPDATE meetings SET recap_claimed_until = ?"
            " WHERE id = ? AND status = ? AND recap_sent = 0"
            " AND (recap_claimed_until IS NULL OR recap_claimed_until <= ?) RETURNING *",
            (_ts(until), meeting_id, MeetingStatus.CLOSED, _ts(expired_by)),
        )
        return _meeting(row) if row else None

    async def finish_recap(self, meeting_id: str, text: str) -> Meeting | None:
        row = await self._one(
            "UPDATE meetings SET recap = ?, recap_sent = 1 WHERE id = ? AND recap_sent = 0"
            " RETURNING *",
            (text, meeting_id),
        )
        return _meeting(row) if row else None

    # Notices

    async def add_notice(self, notice: Notice) -> bool:
        inserted = await self._write(
            "INSERT OR IGNORE INTO notices (id, user_id, meeting_id, kind, facts, created_at,"
            " expires_at, state, attempts, next_try_at, last_error, settled_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                notice.id,
                notice.user_id,
                notice.meeting_id,
                notice.kind,
                notice.facts.model_dump_json(exclude_none=True),
                _ts(notice.created_at),
                _ts(notice.expires_at),
                notice.state,
                notice.attempts,
                _ts(notice.next_try_at),
                notice.last_error,
                _ts(notice.settled_at) if notice.settled_at else None,
            ),
        )
        return inserted == 1

    async def get_notice(self, key: str) -> Notice | None:
        row = await self._one("SELECT * FROM notices WHERE id = ?", (key,))
        return _notice(row) if row else None

    async def pending_notices(self, now: datetime, limit: int) -> list[Notice]:
        if limit <= 0:
            return []
        rows = await self._all(
            "SELECT * FROM notices WHERE state = ? AND next_try_at <= ?"
            " ORDER BY next_try_at, rowid LIMIT ?",
            (NoticeState.PENDING, _ts(now), limit),
        )
        return [_notice(row) for row in rows]

    async def claim_notice(self, key: str, now: datetime, until: datetime) -> Notice | None:
        row = await self._one(
            "UPDATE notices SET attempts = attempts + 1, next_try_at = ?"
            " WHERE id = ? AND state = ? AND next_try_at <= ? RETURNING *",
            (_ts(until), key, NoticeState.PENDING, _ts(now)),
        )
        return _notice(row) if row else None

    async def retry_notice(
        self, key: str, attempt: int, next_try_at: datetime, error: str
    ) -> Notice | None:
        row = await self._one(
            "UPDATE notices SET next_try_at = ?, last_error = ?"
            " WHERE id = ? AND state = ? AND attempts = ? RETURNING *",
            (_ts(next_try_at), error, key, NoticeState.PENDING, attempt),
        )
        return _notice(row) if row else None

    async def settle_notice(
        self, key: str, state: NoticeState, now: datetime, reason: str | None = None
    ) -> Notice | None:
        row = await self._one(
            "UPDATE notices SET state = ?, settled_at = ?, last_error = COALESCE(?, last_error)"
            " WHERE id = ? AND state = ? RETURNING *",
            (state, _ts(now), reason, key, NoticeState.PENDING),
        )
        return _notice(row) if row else None

    # Dedupe

    async def claim_event(self, key: str, now: datetime, expires_at: datetime) -> bool:
        await self._write("DELETE FROM events WHERE expires_at <= ?", (_ts(now),))
        inserted = await self._write(
            "INSERT OR IGNORE INTO events (key, expires_at) VALUES (?, ?)", (key, _ts(expires_at))
        )
        return inserted == 1

    async def release_event(self, key: str) -> None:
        await self._write("DELETE FROM events WHERE key = ?", (key,))

    # Turn leases (core/turn_order.py): one lease row per user, one wait row per waiting ticket

    async def claim_turn(
        self, user_id: str, ticket: str, order: str, now: datetime, until: datetime
    ) -> bool:
        # One statement, so one atomic step (SQLite runs writes one at a time): the lease is
        # written only if no earlier ticket waits, and the upsert's WHERE reads the old row.
        row = await self._one(
            "INSERT INTO turns (user_id, holder, expires_at) SELECT :user, :ticket, :until"
            " WHERE NOT EXISTS (SELECT 1 FROM turn_waits WHERE user_id = :user"
            " AND ticket != :ticket AND ticket_order < :order AND expires_at > :now)"
            " ON CONFLICT (user_id) DO UPDATE SET holder = :ticket, expires_at = :until"
            " WHERE holder IS NULL OR holder = :ticket OR expires_at <= :now"
            " RETURNING holder",
            _turn_params(user_id, ticket, order, now, until),
        )
        if row is None:
            return False
        await self._write("DELETE FROM turn_waits WHERE ticket = ?", (ticket,))
        return True

    async def wait_turn(
        self, user_id: str, ticket: str, order: str, now: datetime, until: datetime
    ) -> None:
        await self._write(
            "INSERT INTO turn_waits (ticket, user_id, ticket_order, expires_at)"
            " VALUES (?, ?, ?, ?)"
            " ON CONFLICT (ticket) DO UPDATE SET expires_at = excluded.expires_at",
            (ticket, user_id, order, _ts(until)),
        )

    async def renew_turn(self, user_id: str, ticket: str, until: datetime) -> bool:
        changed = await self._write(
            "UPDATE turns SET expires_at = ? WHERE user_id = ? AND holder = ?",
            (_ts(until), user_id, ticket),
        )
        return changed == 1

    async def release_turn(self, user_id: str, ticket: str) -> None:
        await self._write(
            "UPDATE turns SET holder = NULL, expires_at = NULL WHERE user_id = ? AND holder = ?",
            (user_id, ticket),
        )
        await self._write("DELETE FROM turn_waits WHERE ticket = ?", (ticket,))

    # Replies in flight (core/in_flight.py)

    async def add_in_flight(self, reply: InFlight) -> None:
        await self._write(
            "INSERT INTO in_flight (id, user_id, platform, owner, event_key, place, text,"
            " started_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                reply.id,
                reply.user_id,
                reply.platform,
                reply.owner,
                reply.event_key,
                json.dumps(reply.place),
                reply.text,
                _ts(reply.started_at),
                _ts(reply.expires_at),
            ),
        )

    async def update_in_flight(
        self,
        reply_id: str,
        *,
        place: Mapping[str, str] | None = None,
        text: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if place is not None:
            changes["place"] = json.dumps(dict(place))
        if text is not None:
            changes["text"] = text
        if expires_at is not None:
            changes["expires_at"] = _ts(expires_at)
        if changes:
            assignments = ", ".join(f"{key} = ?" for key in changes)
            await self._write(
                f"UPDATE in_flight SET {assignments} WHERE id = ?", (*changes.values(), reply_id)
            )

    async def remove_in_flight(self, reply_id: str) -> None:
        await self._write("DELETE FROM in_flight WHERE id = ?", (reply_id,))

    async def in_flight(self, platform: Platform) -> list[InFlight]:
        rows = await self._all(
            "SELECT * FROM in_flight WHERE platform = ? ORDER BY started_at, rowid", (platform,)
        )
        return [_in_flight(row) for row in rows]

    async def take_in_flight(self, seen: InFlight, owner: str, until: datetime) -> InFlight | None:
        row = await self._one(
            "UPDATE in_flight SET owner = ?, expires_at = ?"
            " WHERE id = ? AND owner = ? AND expires_at = ? RETURNING *",
            (owner, _ts(until), seen.id, seen.owner, _ts(seen.expires_at)),
        )
        return _in_flight(row) if row else None
