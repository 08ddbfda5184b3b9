"""The production store: MongoDB through PyMongo's native async client (`AsyncMongoClient`).

Every write touches one document, so no transactions are needed: claims are
`find_one_and_update` with a state condition, dedupe keys are `_id`s (unique by nature).
Each document gets a `seq` ObjectId at insert, which breaks ties between equal timestamps in
insertion order (as SQLite's rowid does): a reply often shares its prompt's millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError, ServerSelectionTimeoutError

from core.models import (
    Goal,
    GoalStatus,
    Message,
)
from core.store import StoreUnavailable
from core.store.mongo_base import Collections, _by, _doc, _load, _reason, _unavailable_on_error
from core.store.mongo_installs import InstallDocs
from core.store.mongo_keys import KeyDocs
from core.store.mongo_meetings import MeetingDocs
from core.store.mongo_progress import ProgressDocs
from core.store.mongo_proposals import ProposalDocs
from core.store.mongo_turns import TurnDocs
from core.store.mongo_users import UserDocs

SERVER_TIMEOUT_SECONDS = 5.0  # how long a call waits for a reachable server















class MongoStore(
    UserDocs, KeyDocs, ProposalDocs, TurnDocs, MeetingDocs, ProgressDocs, InstallDocs, Collections
):
    """Messages, goals and dedupe keys here; users and their identities in UserDocs
    (mongo_users.py), meetings and notices in MeetingDocs (mongo_meetings.py), turn leases
    and replies in flight in TurnDocs (mongo_turns.py), progress in ProgressDocs."""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        database: str = "momentum",
        server_timeout: float = SERVER_TIMEOUT_SECONDS,
    ) -> MongoStore:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            tzinfo=UTC,
            serverSelectionTimeoutMS=round(server_timeout * 1000),
        )
        store = cls(client, database)
        try:
            await store._ensure_indexes()
        except PyMongoError as error:
            await client.close()
            within = (
                f" within {server_timeout:g} s"
                if isinstance(error, ServerSelectionTimeoutError)
                else ""
            )
            raise StoreUnavailable(f"cannot reach MongoDB{within}: {_reason(error)}") from error
        return store

    async def _ensure_indexes(self) -> None:
        await self._users.create_index(
            [("identity.platform", ASCENDING), ("identity.external_id", ASCENDING)], unique=True
        )
        await self._messages.create_index([("user_id", ASCENDING), *_by("created_at")])
        await self._goals.create_index([("user_id", ASCENDING), *_by("created_at")])
        await self._progress.create_index(
            [("user_id", ASCENDING), ("goal_id", ASCENDING), *_by("created_at")]
        )
        await self._meetings.create_index([("status", ASCENDING), ("closes_at", ASCENDING)])
        await self._meetings.create_index([("user_id", ASCENDING), *_by("start")])
        # Not a TTL index: expiry follows the caller's clock (claim_event's `now`), not the
        # server's, or keys would vanish early or late whenever the two disagree.
        await self._events.create_index("expires_at")
        await self._in_flight.create_index([("platform", ASCENDING), ("started_at", ASCENDING)])
        await self._turn_waits.create_index([("user_id", ASCENDING), ("order", ASCENDING)])
        # The outbox: the notice key is the `_id` (one notice per meeting step, unique by nature).
        await self._notices.create_index([("state", ASCENDING), *_by("next_try_at")])
        await self._notices.create_index("user_id")
        await self._tokens.create_index("user_id")  # the digest is the `_id`
        await self._passes.create_index("user_id")
        await self._installs.create_index([("kind", ASCENDING), ("team_id", ASCENDING)])
        await self._proposals.create_index([("user_id", ASCENDING), *_by("created_at")])
        # Linked identities: the `_id` is the identity, so unique (mongo_users.py).
        await self._identities.create_index([("user_id", ASCENDING), *_by("linked_at")])
        await self._commitments.create_index([("user_id", ASCENDING), *_by("created_at")])

    async def close(self) -> None:
        await self._client.close()

    # Messages

    @_unavailable_on_error
    async def add_message(self, message: Message) -> None:
        await self._messages.insert_one(_doc(message))

    @_unavailable_on_error
    async def add_messages(self, messages: Sequence[Message]) -> None:
        if messages:  # ordered: `seq` follows the list, as separate inserts would
            await self._messages.insert_many([_doc(m) for m in messages])

    @_unavailable_on_error
    async def recent_messages(self, user_id: str, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        cursor = (
            self._messages.find({"user_id": user_id})
            .sort(_by("created_at", DESCENDING))
            .limit(limit)
        )
        newest_first = [Message.model_validate(_load(d)) async for d in cursor]
        return newest_first[::-1]

    @_unavailable_on_error
    async def history_page(
        self, user_id: str, page: int, page_size: int
    ) -> tuple[list[Message], int]:
        total = await self._messages.count_documents({"user_id": user_id})
        cursor = (
            self._messages.find({"user_id": user_id})
            .sort(_by("created_at", DESCENDING))
            .skip((page - 1) * page_size)
            .limit(page_size)
        )
        return [Message.model_validate(_load(d)) async for d in cursor], total

    @_unavailable_on_error
    async def messages_between(
        self, user_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Message]:
        query: dict[str, Any] = {"user_id": user_id}
        window = {**({"$gte": start} if start else {}), **({"$lt": end} if end else {})}
        if window:
            query["created_at"] = window
        cursor = self._messages.find(query).sort(_by("created_at"))
        return [Message.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def mark_undelivered(self, message_id: str) -> None:
        await self._messages.update_one({"_id": message_id}, {"$set": {"delivered": False}})

    @_unavailable_on_error
    async def clear_messages(self, user_id: str) -> int:
        result = await self._messages.delete_many({"user_id": user_id})
        return result.deleted_count

    # Goals

    @_unavailable_on_error
    async def add_goal(self, goal: Goal) -> None:
        await self._goals.insert_one(_doc(goal))

    @_unavailable_on_error
    async def list_goals(self, user_id: str, status: GoalStatus | None = None) -> list[Goal]:
        query: dict[str, Any] = {"user_id": user_id}
        if status is not None:
            query["status"] = status.value
        cursor = self._goals.find(query).sort(_by("created_at"))
        return [Goal.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def close_goal(
        self, user_id: str, goal_id: str, status: GoalStatus, now: datetime
    ) -> Goal | None:
        found = await self._goals.find_one_and_update(
            {"_id": goal_id, "user_id": user_id, "status": GoalStatus.ACTIVE.value},
            {"$set": {"status": status.value, "closed_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return Goal.model_validate(_load(found)) if found else None

    # Dedupe

    @_unavailable_on_error
    async def claim_event(self, key: str, now: datetime, expires_at: datetime) -> bool:
        # Whoever purges an expired key first and then inserts it wins; the rest hit its _id.
        await self._events.delete_many({"expires_at": {"$lte": now}})
        try:
            await self._events.insert_one({"_id": key, "expires_at": expires_at})
        except DuplicateKeyError:
            return False
        return True

    @_unavailable_on_error
    async def release_event(self, key: str) -> None:
        await self._events.delete_one({"_id": key})

