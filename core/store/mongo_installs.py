"""The MongoDB store's app installations (core/installs.py): encrypted records by workspace,
one document each, its `_id` made of the whole key (so a save is one upsert)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core.installs import InstallKey
from core.store.mongo_base import Collections, _unavailable_on_error


def _id(key: InstallKey) -> str:
    return json.dumps([key.kind, key.enterprise_id, key.team_id, key.user_id])


class InstallDocs(Collections):
    @_unavailable_on_error
    async def save_install(self, key: InstallKey, data: str, now: datetime) -> None:
        await self._installs.replace_one(
            {"_id": _id(key)},
            {"kind": key.kind, "enterprise_id": key.enterprise_id, "team_id": key.team_id,
             "user_id": key.user_id, "data": data, "saved_at": now},
            upsert=True,
        )  # fmt: skip

    @_unavailable_on_error
    async def find_install(self, key: InstallKey) -> str | None:
        doc = await self._installs.find_one({"_id": _id(key)})
        return None if doc is None else str(doc["data"])

    @_unavailable_on_error
    async def delete_installs(
        self, kind: str | None, enterprise_id: str, team_id: str, user_id: str | None = None
    ) -> int:
        query: dict[str, Any] = {"enterprise_id": enterprise_id, "team_id": team_id}
        if kind is not None:
            query["kind"] = kind
        if user_id is not None:
            query["user_id"] = user_id
        result = await self._installs.delete_many(query)
        return result.deleted_count
