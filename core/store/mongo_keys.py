"""The MongoDB store's web keys (core/keys.py): tokens until revoked, passes used once."""

from __future__ import annotations

from datetime import datetime

from core.keys import KeyKind, Purpose
from core.store.mongo_base import Collections, _unavailable_on_error


class KeyDocs(Collections):
    @_unavailable_on_error
    async def add_token(self, digest: str, user_id: str, now: datetime, kind: KeyKind) -> None:
        await self._tokens.insert_one(
            {"_id": digest, "user_id": user_id, "created_at": now, "revoked": False,
             "kind": kind.value}
        )

    @_unavailable_on_error
    async def token_user(self, digest: str, kind: KeyKind) -> str | None:
        doc = await self._tokens.find_one({"_id": digest, "revoked": False, **_of_kind(kind)})
        return None if doc is None else str(doc["user_id"])

    @_unavailable_on_error
    async def revoke_tokens(self, user_id: str, kind: KeyKind | None = None) -> int:
        chosen = {} if kind is None else _of_kind(kind)
        result = await self._tokens.update_many(
            {"user_id": user_id, "revoked": False, **chosen}, {"$set": {"revoked": True}}
        )
        return result.modified_count

    @_unavailable_on_error
    async def add_pass(
        self, digest: str, user_id: str, purpose: Purpose, expires_at: datetime
    ) -> None:
        await self._passes.insert_one(
            {"_id": digest, "user_id": user_id, "purpose": purpose.value, "expires_at": expires_at}
        )

    @_unavailable_on_error
    async def use_pass(self, digest: str, purpose: Purpose, now: datetime) -> str | None:
        # find_one_and_delete: of two uses at once, exactly one gets the document.
        doc = await self._passes.find_one_and_delete({"_id": digest, "purpose": purpose.value})
        if doc is None or doc["expires_at"] <= now:
            return None
        return str(doc["user_id"])


def _of_kind(kind: KeyKind) -> dict[str, object]:
    # Tokens made before calendar keys existed have no kind: they are API tokens.
    if kind is KeyKind.API:
        return {"kind": {"$in": [KeyKind.API.value, None]}}
    return {"kind": kind.value}
