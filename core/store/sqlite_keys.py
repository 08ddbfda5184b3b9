"""The SQLite store's web keys (core/keys.py): tokens until revoked, passes used once."""

from __future__ import annotations

from datetime import datetime

from core.keys import KeyKind, Purpose
from core.store.sqlite_rows import Rows, _ts


class KeyRows(Rows):
    async def add_token(self, digest: str, user_id: str, now: datetime, kind: KeyKind) -> None:
        await self._write(
            "INSERT INTO tokens (digest, user_id, created_at, kind) VALUES (?, ?, ?, ?)",
            (digest, user_id, _ts(now), kind.value),
        )

    async def token_user(self, digest: str, kind: KeyKind) -> str | None:
        row = await self._one(
            "SELECT user_id FROM tokens WHERE digest = ? AND kind = ? AND NOT revoked",
            (digest, kind.value),
        )
        return None if row is None else str(row["user_id"])

    async def revoke_tokens(self, user_id: str, kind: KeyKind | None = None) -> int:
        if kind is None:
            return await self._write(
                "UPDATE tokens SET revoked = 1 WHERE user_id = ? AND NOT revoked", (user_id,)
            )
        return await self._write(
            "UPDATE tokens SET revoked = 1 WHERE user_id = ? AND kind = ? AND NOT revoked",
            (user_id, kind.value),
        )

    async def add_pass(
        self, digest: str, user_id: str, purpose: Purpose, expires_at: datetime
    ) -> None:
        await self._write(
            "INSERT INTO passes (digest, user_id, purpose, expires_at) VALUES (?, ?, ?, ?)",
            (digest, user_id, purpose.value, _ts(expires_at)),
        )

    async def use_pass(self, digest: str, purpose: Purpose, now: datetime) -> str | None:
        # One DELETE ... RETURNING: of two uses at once, exactly one gets the row.
        row = await self._one(
            "DELETE FROM passes WHERE digest = ? AND purpose = ? RETURNING user_id, expires_at",
            (digest, purpose.value),
        )
        if row is None or row["expires_at"] <= _ts(now):
            return None
        return str(row["user_id"])
