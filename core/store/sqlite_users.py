"""The SQLite store's users and their identities (core/linking.py says the rules).

A user's own (primary) identity is in its `users` row, unique there; identities linked to it
besides are rows of `identities`, unique there. A linked row outranks a `users` row: a user
whose primary identity is linked to another user is being merged into that user (a merge is
several statements, no transaction), and the lookup that finds one finishes the merge.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from core.models import Identity, Phase, User
from core.store.sqlite_notes import NoteRows
from core.store.sqlite_rows import _ts

# Tables whose rows belong to a user and follow it into a merge. The turn lease and the
# waiting tickets do not: they are the merged-away user's, deleted with it.
# The memory notes are merged apart (sqlite_notes.py): two lists become one.
_MERGED_TABLES = (
    "messages",
    "goals",
    "progress",
    "commitments",
    "meetings",
    "notices",
    "in_flight",
    "tokens",
    "passes",
    "proposals",
)

_FIND = (
    "SELECT users.*, 1 AS linked FROM identities JOIN users ON users.id = identities.user_id"
    " WHERE identities.platform = :platform AND identities.external_id = :external_id"
    " UNION ALL"
    " SELECT users.*, 0 AS linked FROM users"
    " WHERE platform = :platform AND external_id = :external_id"
)


def _user(row: sqlite3.Row) -> User:
    return User(
        id=row["id"],
        identity=_identity(row),
        phase=row["phase"],
        timezone=row["timezone"],
        created_at=row["created_at"],
        welcomed=bool(row["welcomed"]),
    )


def _identity(row: sqlite3.Row) -> Identity:
    return Identity(
        platform=row["platform"],
        external_id=row["external_id"],
        workspace_id=row["workspace_id"],
        display_name=row["display_name"],
    )


def _key(identity: Identity) -> dict[str, str]:
    return {"platform": identity.platform.value, "external_id": identity.external_id}


def _same(a: Identity, b: Identity) -> bool:
    return (a.platform, a.external_id) == (b.platform, b.external_id)


class UserRows(NoteRows):
    """Users and identities; a user's notes (NoteRows) come along because a merge joins them."""

    # Users

    async def get_or_create_user(self, identity: Identity, now: datetime) -> tuple[User, bool]:
        # Read first: the user almost always exists, and a read takes no write lock.
        if (existing := await self._find(identity, now)) is not None:
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
        # Found again, not assumed: a link of this identity may have landed meanwhile.
        created = await self._find(identity, now)
        assert created is not None
        return created, inserted == 1 and created.id == user.id

    async def _find(self, identity: Identity, now: datetime) -> User | None:
        """The user `identity` finds: the one it is linked to, else the one it is primary of
        (finishing a merge that stopped halfway, when it is both)."""
        linked = primary = None
        for row in await self._all(_FIND, _key(identity)):
            if row["linked"]:
                linked = _user(row)
            else:
                primary = _user(row)
        if linked is not None and primary is not None and primary.id != linked.id:
            await self.merge_user(primary.id, linked.id, now)
        return linked or primary

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
            ("commitments", "user_id"),
            ("memory", "user_id"),
            ("progress", "user_id"),
            ("meetings", "user_id"),
            ("notices", "user_id"),
            ("tokens", "user_id"),
            ("passes", "user_id"),
            ("proposals", "user_id"),
            ("identities", "user_id"),
            ("users", "id"),
        ):
            await self._write(f"DELETE FROM {table} WHERE {column} = ?", (user_id,))

    # Identities

    async def list_identities(self, user_id: str) -> list[Identity]:
        user = await self.get_user(user_id)
        if user is None:
            return []
        rows = await self._all(
            "SELECT * FROM identities WHERE user_id = ? ORDER BY linked_at, rowid", (user_id,)
        )
        linked = [_identity(row) for row in rows]
        return [user.identity, *(i for i in linked if not _same(i, user.identity))]

    async def add_identity(self, user_id: str, identity: Identity, now: datetime) -> None:
        await self._write(
            "INSERT INTO identities (platform, external_id, user_id, workspace_id, display_name,"
            " linked_at) VALUES (:platform, :external_id, :user, :workspace, :name, :now)"
            " ON CONFLICT (platform, external_id) DO UPDATE SET user_id = excluded.user_id,"
            " linked_at = excluded.linked_at WHERE user_id != excluded.user_id",
            {
                **_key(identity),
                "user": user_id,
                "workspace": identity.workspace_id,
                "name": identity.display_name,
                "now": _ts(now),
            },
        )

    async def remove_identity(self, user_id: str, identity: Identity) -> bool:
        removed = await self._write(
            "DELETE FROM identities WHERE platform = :platform AND external_id = :external_id"
            " AND user_id = :user",
            {**_key(identity), "user": user_id},
        )
        return removed == 1

    async def set_primary(self, user_id: str, identity: Identity, now: datetime) -> bool:
        await self._find(identity, now)  # a merge cut short would keep it primary elsewhere
        user = await self.get_user(user_id)
        if user is None:
            return False
        if _same(user.identity, identity):
            return True
        linked = await self._one(
            "SELECT * FROM identities WHERE platform = :platform AND external_id = :external_id"
            " AND user_id = :user",
            {**_key(identity), "user": user_id},
        )
        if linked is None:
            return False
        # Three steps, each leaving every identity finding this user: the old primary is
        # linked first, the row takes the new one, and then that one is no longer linked.
        await self.add_identity(user_id, user.identity, now)
        changed = await self._write(
            "UPDATE users SET platform = ?, external_id = ?, workspace_id = ?, display_name = ?"
            " WHERE id = ? AND platform = ? AND external_id = ?",
            (
                linked["platform"],
                linked["external_id"],
                linked["workspace_id"],
                linked["display_name"],
                user_id,
                user.identity.platform,
                user.identity.external_id,
            ),
        )
        if changed == 1:
            await self.remove_identity(user_id, identity)
        return changed == 1

    async def merge_user(self, from_id: str, into_id: str, now: datetime) -> bool:
        if from_id == into_id or await self.get_user(into_id) is None:
            return False
        # Identities first: from here on, every new message of theirs lands on `into`.
        if (source := await self.get_user(from_id)) is not None:
            await self.add_identity(into_id, source.identity, now)
        await self._write(
            "UPDATE identities SET user_id = ? WHERE user_id = ?", (into_id, from_id)
        )
        for table in _MERGED_TABLES:
            await self._write(
                f"UPDATE {table} SET user_id = ? WHERE user_id = ?", (into_id, from_id)
            )
        await self._merge_notes(from_id, into_id, now)
        await self.delete_user(from_id)
        return True
