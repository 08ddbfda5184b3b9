"""The SQLite store's proposals (core/proposals.py): stored pending, decided once."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from core.models import Proposal, ProposalStatus
from core.store.sqlite_rows import Rows, _ts


def _proposal(row: sqlite3.Row) -> Proposal:
    return Proposal.model_validate({**dict(row), "args": json.loads(row["args"])})


class ProposalRows(Rows):
    async def add_proposal(self, proposal: Proposal) -> None:
        await self._write(
            "INSERT INTO proposals (id, user_id, kind, args, summary, created_at, expires_at,"
            " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                proposal.id,
                proposal.user_id,
                proposal.kind.value,
                json.dumps(proposal.args),
                proposal.summary,
                _ts(proposal.created_at),
                _ts(proposal.expires_at),
                proposal.status.value,
            ),
        )

    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        row = await self._one("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
        return _proposal(row) if row else None

    async def decide_proposal(
        self, proposal_id: str, status: ProposalStatus, now: datetime
    ) -> Proposal | None:
        # One UPDATE ... RETURNING: of two answers at once, exactly one gets the row.
        row = await self._one(
            "UPDATE proposals SET status = ?, decided_at = ?"
            " WHERE id = ? AND status = ? AND expires_at > ? RETURNING *",
            (status.value, _ts(now), proposal_id, ProposalStatus.PENDING.value, _ts(now)),
        )
        return _proposal(row) if row else None

    async def finish_proposal(self, proposal_id: str, status: ProposalStatus, result: str) -> None:
        await self._write(
            "UPDATE proposals SET status = ?, result = ? WHERE id = ?",
            (status.value, result, proposal_id),
        )
