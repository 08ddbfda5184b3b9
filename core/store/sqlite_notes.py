"""The SQLite store's commitments and memory notes (core/notes.py says what they are).

Commitments are rows of their own, which follow their user into a merge like goals. A user's
notes are one row, a JSON list, so that replacing them is one write (and a compare-and-set
with `expected`); a merge appends the merged-away user's notes to the other's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from core.models import Commitment, CommitmentStatus
from core.store.sqlite_rows import Rows, _ts


def _commitment(row: sqlite3.Row) -> Commitment:
    return Commitment.model_validate(dict(row))


def _notes_text(notes: Sequence[str]) -> str:
    return json.dumps(list(notes), ensure_ascii=False)


class NoteRows(Rows):
    # Commitments

    async def add_commitments(self, commitments: Sequence[Commitment]) -> None:
        # One statement for all: a window's commitments are kept together or not at all.
        await self._db.change_many(
            "INSERT INTO commitments (id, user_id, text, due, created_at, meeting_id, status,"
            " done_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (c.id, c.user_id, c.text, c.due, _ts(c.created_at), c.meeting_id, c.status,
                 _ts(c.done_at) if c.done_at else None)
                for c in commitments
            ],
        )  # fmt: skip

    async def list_commitments(
        self, user_id: str, status: CommitmentStatus | None = None
    ) -> list[Commitment]:
        if status is None:
            rows = await self._all(
                "SELECT * FROM commitments WHERE user_id = ? ORDER BY created_at, rowid",
                (user_id,),
            )
        else:
            rows = await self._all(
                "SELECT * FROM commitments WHERE user_id = ? AND status = ?"
                " ORDER BY created_at, rowid",
                (user_id, status),
            )
        return [_commitment(row) for row in rows]

    async def close_commitment(
        self, user_id: str, commitment_id: str, now: datetime
    ) -> Commitment | None:
        row = await self._one(
            "UPDATE commitments SET status = ?, done_at = ? WHERE id = ? AND user_id = ?"
            " AND status = ? RETURNING *",
            (CommitmentStatus.DONE, _ts(now), commitment_id, user_id, CommitmentStatus.OPEN),
        )
        return _commitment(row) if row else None

    # Memory notes

    async def memory_notes(self, user_id: str) -> list[str]:
        row = await self._one("SELECT notes FROM memory WHERE user_id = ?", (user_id,))
        return list(json.loads(row["notes"])) if row else []

    async def replace_memory_notes(
        self,
        user_id: str,
        notes: Sequence[str],
        now: datetime,
        *,
        expected: Sequence[str] | None = None,
    ) -> bool:
        if expected is None:
            await self._write(
                "INSERT INTO memory (user_id, notes, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET notes = excluded.notes,"
                " updated_at = excluded.updated_at",
                (user_id, _notes_text(notes), _ts(now)),
            )
            return True
        if not expected:  # no row and an empty row both mean "no notes"
            inserted = await self._write(
                "INSERT OR IGNORE INTO memory (user_id, notes, updated_at) VALUES (?, ?, ?)",
                (user_id, _notes_text(notes), _ts(now)),
            )
            if inserted:
                return True
        changed = await self._write(
            "UPDATE memory SET notes = ?, updated_at = ? WHERE user_id = ? AND notes = ?",
            (_notes_text(notes), _ts(now), user_id, _notes_text(expected)),
        )
        return changed == 1

    async def _merge_notes(self, from_id: str, into_id: str, now: datetime) -> None:
        """Append `from_id`'s notes to `into_id`'s (those it has not already), then drop them:
        run again after a crash, it adds nothing twice."""
        theirs = await self.memory_notes(from_id)
        if theirs:
            ours = await self.memory_notes(into_id)
            merged = [*ours, *(note for note in theirs if note not in ours)]
            await self.replace_memory_notes(into_id, merged, now)
        await self._write("DELETE FROM memory WHERE user_id = ?", (from_id,))
