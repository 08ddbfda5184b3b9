"""MongoDB turn leases (core/turn_order.py) and replies in flight (core/in_flight.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.models import (
    InFlight,
    Platform,
)
from core.store.mongo_base import Collections, _load, _unavailable_on_error


class TurnDocs(Collections):
    # Turn leases (core/turn_order.py): one lease document per user, one per waiting ticket

    @_unavailable_on_error
    async def claim_turn(
        self, user_id: str, ticket: str, order: str, now: datetime, until: datetime
    ) -> bool:
        # Two steps (no transactions): an earlier ticket that starts waiting between them came
        # to the store later than this one, and waits its turn after it.
        earlier = await self._turn_waits.find_one(
            {
                "user_id": user_id,
                "_id": {"$ne": ticket},
                "order": {"$lt": order},
                "expires_at": {"$gt": now},
            }
        )
        if earlier is not None:
            return False
        # An upsert: when the lease exists but is not free for us, its insert meets the
        # existing _id, which is how the claim is refused.
        try:
            await self._turns.find_one_and_update(
                {
                    "_id": user_id,
                    "$or": [{"holder": None}, {"holder": ticket}, {"expires_at": {"$lte": now}}],
                },
                {"$set": {"holder": ticket, "expires_at": until}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        await self._turn_waits.delete_one({"_id": ticket})
        return True

    @_unavailable_on_error
    async def wait_turn(
        self, user_id: str, ticket: str, order: str, now: datetime, until: datetime
    ) -> None:
        await self._turn_waits.update_one(
            {"_id": ticket},
            {"$set": {"user_id": user_id, "order": order, "expires_at": until}},
            upsert=True,
        )

    @_unavailable_on_error
    async def renew_turn(self, user_id: str, ticket: str, until: datetime) -> bool:
        result = await self._turns.update_one(
            {"_id": user_id, "holder": ticket}, {"$set": {"expires_at": until}}
        )
        return result.matched_count == 1

    @_unavailable_on_error
    async def release_turn(self, user_id: str, ticket: str) -> None:
        await self._turns.update_one(
            {"_id": user_id, "holder": ticket}, {"$set": {"holder": None, "expires_at": None}}
        )
        await self._turn_waits.delete_one({"_id": ticket})

    # Replies in flight (core/in_flight.py)

    @_unavailable_on_error
    async def add_in_flight(self, reply: InFlight) -> None:
        data = reply.model_dump(mode="python")
        data["_id"] = data.pop("id")
        await self._in_flight.insert_one(data)

    @_unavailable_on_error
    async def update_in_flight(
        self,
        reply_id: str,
        *,
        place: Mapping[str, str] | None = None,
        text: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        changes: dict[str, Any] = {"place": dict(place) if place is not None else None}
        changes.update(text=text, expires_at=expires_at)
        changes = {key: value for key, value in changes.items() if value is not None}
        if changes:
            await self._in_flight.update_one({"_id": reply_id}, {"$set": changes})

    @_unavailable_on_error
    async def remove_in_flight(self, reply_id: str) -> None:
        await self._in_flight.delete_one({"_id": reply_id})

    @_unavailable_on_error
    async def in_flight(self, platform: Platform) -> list[InFlight]:
        cursor = self._in_flight.find({"platform": platform.value}).sort("started_at", ASCENDING)
        return [InFlight.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def take_in_flight(self, seen: InFlight, owner: str, until: datetime) -> InFlight | None:
        found = await self._in_flight.find_one_and_update(
            {"_id": seen.id, "owner": seen.owner, "expires_at": seen.expires_at},
            {"$set": {"owner": owner, "expires_at": until}},
            return_document=ReturnDocument.AFTER,
        )
        return InFlight.model_validate(_load(found)) if found else None
