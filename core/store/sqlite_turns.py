"""The SQLite store's turn leases (core/turn_order.py) and replies in flight (core/in_flight.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.models import (
    InFlight,
    Platform,
)
from core.store.sqlite_rows import Rows, _ts


def _in_flight(row: sqlite3.Row) -> InFlight:
    return InFlight.model_validate({**dict(row), "place": json.loads(row["place"])})


def _turn_params(
    user_id: str, ticket: str, order: str, now: datetime, until: datetime
) -> dict[str, str]:
    return {"user": user_id, "ticket": ticket, "order": order, "now": _ts(now), "until": _ts(until)}


class TurnRows(Rows):
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
