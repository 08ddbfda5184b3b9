"""The MongoDB store's commitments and memory notes (core/notes.py says what they are).

Commitments are documents of their own, which follow their user into a merge like goals. A
user's notes are one document keyed by the user's id, holding the list, so that replacing
them is one write (and a compare-and-set with `expected`); a merge appends the merged-away
user's notes to the other's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.models import Commitment, CommitmentStatus
from core.store.mongo_base import Collections, _by, _doc, _load, _unavailable_on_error


class NoteDocs(Collections):
    # Commitments

    @_unavailable_on_error
    async def add_commitments(self, commitments: Sequence[Commitment]) -> None:
        if commitments:  # ordered: `seq` follows the list
            await self._commitments.insert_many([_doc(c) for c in commitments])

    @_unavailable_on_error
    async def list_commitments(
        self, user_id: str, status: CommitmentStatus | None = None
    ) -> list[Commitment]:
        query: dict[str, Any] = {"user_id": user_id}
        if status is not None:
            query["status"] = status.value
        cursor = self._commitments.find(query).sort(_by("created_at"))
        return [Commitment.model_validate(_load(d)) async for d in cursor]

    @_unavailable_on_error
    async def close_commitment(
        self, user_id: str, commitment_id: str, now: datetime
    ) -> Commitment | None:
        found = await self._commitments.find_one_and_update(
            {"_id": commitment_id, "user_id": user_id, "status": CommitmentStatus.OPEN.value},
            {"$set": {"status": CommitmentStatus.DONE.value, "done_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return Commitment.model_validate(_load(found)) if found else None

    # Memory notes

    @_unavailable_on_error
    async def memory_notes(self, user_id: str) -> list[str]:
        found = await self._memory.find_one({"_id": user_id})
        return list(found["notes"]) if found else []

    @_unavailable_on_error
    async def replace_memory_notes(
        self,
        user_id: str,
        notes: Sequence[str],
        now: datetime,
        *,
        expected: Sequence[str] | None = None,
    ) -> bool:
        change = {"$set": {"notes": list(notes), "updated_at": now}}
        if expected is None:
            await self._memory.update_one({"_id": user_id}, change, upsert=True)
            return True
        if not expected:  # no document and an empty list both mean "no notes"
            try:
                await self._memory.insert_one({"_id": user_id, **change["$set"]})
                return True
            except DuplicateKeyError:
                pass
        result = await self._memory.update_one({"_id": user_id, "notes": list(expected)}, change)
        return result.matched_count == 1

    async def _merge_notes(self, from_id: str, into_id: str, now: datetime) -> None:
        """Append `from_id`'s notes to `into_id`'s (those it has not already), then drop them:
        run again after a crash, it adds nothing twice."""
        theirs = await self.memory_notes(from_id)
        if theirs:
            ours = await self.memory_notes(into_id)
            merged = [*ours, *(note for note in theirs if note not in ours)]
            await self.replace_memory_notes(into_id, merged, now)
        await self._memory.delete_one({"_id": from_id})
