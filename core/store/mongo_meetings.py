"""The MongoDB store's meetings, their window steps and recaps, and the scheduler's notices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.models import (
    Meeting,
    MeetingStatus,
    Notice,
    NoticeState,
)
from core.store import MeetingFlag
from core.store.mongo_base import Collections, _by, _doc, _load, _unavailable_on_error

LIVE = [MeetingStatus.SCHEDULED.value, MeetingStatus.OPEN.value]


def _recap_unclaimed_by(when: datetime) -> dict[str, Any]:
    """No recap claim, or one that ran out by `when` (None also matches a missing field)."""
    return {"$or": [{"recap_claimed_until": None}, {"recap_claimed_until": {"$lte": when}}]}


class MeetingDocs(Collections):
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

