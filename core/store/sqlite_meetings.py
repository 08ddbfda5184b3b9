"""The SQLite store's meetings, their window steps and recaps, and the scheduler's notices."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from core.models import (
    Meeting,
    MeetingStatus,
    Notice,
    NoticeFacts,
    NoticeState,
)
from core.store import MeetingFlag
from core.store.sqlite_rows import Rows, _ts


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


class MeetingRows(Rows):
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

