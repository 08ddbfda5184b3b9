"""The production store: MongoDB through PyMongo's native async client (`AsyncMongoClient`).

Every write touches one document, so no transactions are needed: claims are
`find_one_and_update` with a state condition, dedupe keys are `_id`s (unique by nature).
Each document gets a `seq` ObjectId at insert, which breaks ties between equal timestamps in
insertion order (as SQLite's rowid does): a reply often shares its prompt's millisecond.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError, ServerSelectionTimeoutError

from core.models import (
    Goal,
    GoalStatus,
    Identity,
    InFlight,
    Meeting,
    MeetingStatus,
    Message,
    Notice,
    NoticeState,
    Phase,
    Platform,
    User,
)
from core.store import MeetingFlag, StoreUnavailable

SERVER_TIMEOUT_SECONDS = 5.0  # how long a call waits for a reachable server
LIVE = [MeetingStatus.SCHEDULED.value, MeetingStatus.OPEN.value]

P = ParamSpec("P")
R = TypeVar("R")


def _unavailable_on_error(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Report driver failures as StoreUnavailable, as the SQLite store does, so callers need
    not know the backend. A duplicate key is a caller's bug, not an outage: it passes through."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except DuplicateKeyError:
            raise
        except PyMongoError as error:
            raise StoreUnavailable(str(error)) from error

    return wrapper


def _doc(model: User | Goal | Meeting | Message | Notice) -> dict[str, Any]:
    data = model.model_dump(mode="python", exclude_none=True)
    data["_id"] = data.pop("id")
    data["seq"] = ObjectId()  # increases within a process: the tie-break for equal timestamps
    return data


def _by(field: str, direction: int = ASCENDING) -> list[tuple[str, int]]:
    return [(field, direction), ("seq", direction)]


def _load(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "id": data["_id"]}


def _recap_unclaimed_by(when: datetime) -> dict[str, Any]:
    """No recap claim, or one that ran out by `when` (None also matches a missing field)."""
    return {"$or": [{"recap_claimed_until": None}, {"recap_claimed_until": {"$lte": when}}]}


def _reason(error: PyMongoError) -> str:
    """PyMongo's message without the timeout settings and topology dump it appends: the
    operator reads this as one line at start-up."""
    text = str(error).split(", Timeout: ")[0]
    return re.sub(r" \(configured timeouts: [^)]*\)", "", text)


class MongoStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        db = client[database]
        self._users = db["users"]
        self._messages = db["messages"]
        self._goals = db["goals"]
        self._meetings = db["meetings"]
        self._events = db["events"]
        self._turns = db["turns"]
        self._turn_waits = db["turn_waits"]
        self._in_flight = db["in_flight"]
        self._notices = db["notices"]

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

    async def close(self) -> None:
        await self._client.close()

    # Users

    @_unavailable_on_error
    async def get_or_create_user(self, identity: Identity, now: datetime) -> tuple[User, bool]:
        query = {
            "identity.platform": identity.platform.value,
            "identity.external_id": identity.external_id,
        }
        # Read first: the user almost always exists, and a read is cheaper than an upsert.
        if (existing := await self._users.find_one(query)) is not None:
            return User.model_validate(_load(existing)), False
        fresh = User(identity=identity, created_at=now)
        try:
            found = await self._users.find_one_and_update(
                query,
                {"$setOnInsert": _doc(fresh)},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # a concurrent first message created it
            found = await self._users.find_one(query)
        assert found is not None
        return User.model_validate(_load(found)), found["_id"] == fresh.id

    @_unavailable_on_error
    async def get_user(self, user_id: str) -> User | None:
        found = await self._users.find_one({"_id": user_id})
        return User.model_validate(_load(found)) if found else None

    @_unavailable_on_error
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
        if not changes:
            return await self.get_user(user_id)
        found = await self._users.find_one_and_update(
            {"_id": user_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
        return User.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def claim_welcome(self, user_id: str) -> bool:
        result = await self._users.update_one(
            {"_id": user_id, "welcomed": {"$ne": True}}, {"$set": {"welcomed": True}}
        )
        return result.modified_count == 1

    @_unavailable_on_error
    async def list_users(self) -> list[User]:
        cursor = self._users.find().sort(_by("created_at"))
        return [User.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def delete_user(self, user_id: str) -> None:
        for collection in (
            self._in_flight, self._messages, self._goals, self._meetings, self._notices
        ):
            await collection.delete_many({"user_id": user_id})
        await self._turns.delete_one({"_id": user_id})
        await self._turn_waits.delete_many({"user_id": user_id})
        await self._users.delete_one({"_id": user_id})

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

    # Meetings

    @_unavailable_on_error
    async def add_meetings(self, meetings: Sequence[Meeting]) -> None:
        if meetings:
            await self._meetings.insert_many([_doc(m) for m in meetings])

    @_unavailable_on_error
    async def get_meeting(self, meeting_id: str) -> Meeting | None:
        found = await self._meetings.find_one({"_id": meeting_id})
        return Meeting.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def list_meetings(
        self, user_id: str, *, closing_after: datetime | None = None
    ) -> list[Meeting]:
        query: dict[str, Any] = {"user_id": user_id}
        if closing_after is not None:
            query["closes_at"] = {"$gt": closing_after}
        cursor = self._meetings.find(query).sort(_by("start"))
        return [Meeting.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def live_meetings(self, closing_after: datetime) -> list[Meeting]:
        cursor = self._meetings.find(
            {"status": {"$in": LIVE}, "closes_at": {"$gt": closing_after}}
        ).sort(_by("start"))
        return [Meeting.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def cancel_meetings(self, user_id: str, meeting_ids: Sequence[str]) -> int:
        result = await self._meetings.update_many(
            {"_id": {"$in": list(meeting_ids)}, "user_id": user_id, "status": {"$in": LIVE}},
            {"$set": {"status": MeetingStatus.CANCELLED.value}},
        )
        return result.modified_count

    @_unavailable_on_error
    async def claim_transition(
        self,
        meeting_id: str,
        from_status: MeetingStatus,
        to_status: MeetingStatus,
        *,
        recap_claimed_until: datetime | None = None,
    ) -> Meeting | None:
        changes: dict[str, Any] = {"status": to_status.value}
        if recap_claimed_until is not None:
            changes["recap_claimed_until"] = recap_claimed_until
        found = await self._meetings.find_one_and_update(
            {"_id": meeting_id, "status": from_status.value},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        return Meeting.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def claim_flag(self, meeting_id: str, flag: MeetingFlag) -> Meeting | None:
        found = await self._meetings.find_one_and_update(
            {"_id": meeting_id, flag: {"$ne": True}},
            {"$set": {flag: True}},
            return_document=ReturnDocument.AFTER,
        )
        return Meeting.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def pending_recaps(self, closed_after: datetime, now: datetime) -> list[Meeting]:
        # (status, closes_at) is the index; the rest is checked on its few documents.
        cursor = self._meetings.find(
            {
                "status": MeetingStatus.CLOSED.value,
                "closes_at": {"$gt": closed_after},
                "recap_sent": {"$ne": True},
                **_recap_unclaimed_by(now),
            }
        ).sort(_by("closes_at"))
        return [Meeting.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def claim_recap(
        self, meeting_id: str, *, expired_by: datetime, until: datetime
    ) -> Meeting | None:
        found = await self._meetings.find_one_and_update(
            {
                "_id": meeting_id,
                "status": MeetingStatus.CLOSED.value,
                "recap_sent": {"$ne": True},
                **_recap_unclaimed_by(expired_by),
            },
            {"$set": {"recap_claimed_until": until}},
            return_document=ReturnDocument.AFTER,
        )
        return Meeting.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def finish_recap(self, meeting_id: str, text: str) -> Meeting | None:
        found = await self._meetings.find_one_and_update(
            {"_id": meeting_id, "recap_sent": {"$ne": True}},
            {"$set": {"recap": text, "recap_sent": True}},
            return_document=ReturnDocument.AFTER,
        )
        return Meeting.model_validate(_load(found)) if found else None

    # Notices

    @_unavailable_on_error
    async def add_notice(self, notice: Notice) -> bool:
        try:
            await self._notices.insert_one(_doc(notice))
        except DuplicateKeyError:  # another process created this step's notice first
            return False
        return True

    @_unavailable_on_error
    async def get_notice(self, key: str) -> Notice | None:
        found = await self._notices.find_one({"_id": key})
        return Notice.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def pending_notices(self, now: datetime, limit: int) -> list[Notice]:
        if limit <= 0:
            return []
        cursor = (
            self._notices.find(
                {"state": NoticeState.PENDING.value, "next_try_at": {"$lte": now}}
            )
            .sort(_by("next_try_at"))
            .limit(limit)
        )
        return [Notice.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def claim_notice(self, key: str, now: datetime, until: datetime) -> Notice | None:
        found = await self._notices.find_one_and_update(
            {"_id": key, "state": NoticeState.PENDING.value, "next_try_at": {"$lte": now}},
            {"$set": {"next_try_at": until}, "$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return Notice.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def retry_notice(
        self, key: str, attempt: int, next_try_at: datetime, error: str
    ) -> Notice | None:
        found = await self._notices.find_one_and_update(
            {"_id": key, "state": NoticeState.PENDING.value, "attempts": attempt},
            {"$set": {"next_try_at": next_try_at, "last_error": error}},
            return_document=ReturnDocument.AFTER,
        )
        return Notice.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def settle_notice(
        self, key: str, state: NoticeState, now: datetime, reason: str | None = None
    ) -> Notice | None:
        changes: dict[str, Any] = {"state": state.value, "settled_at": now}
        if reason is not None:
            changes["last_error"] = reason
        found = await self._notices.find_one_and_update(
            {"_id": key, "state": NoticeState.PENDING.value},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        return Notice.model_validate(_load(found)) if found else None

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
