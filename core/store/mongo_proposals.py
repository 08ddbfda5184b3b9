"""The MongoDB store's proposals (core/proposals.py): stored pending, decided once."""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument

from core.models import Proposal, ProposalStatus
from core.store.mongo_base import Collections, _doc, _load, _unavailable_on_error


class ProposalDocs(Collections):
    @_unavailable_on_error
    async def add_proposal(self, proposal: Proposal) -> None:
        await self._proposals.insert_one(_doc(proposal))

    @_unavailable_on_error
    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        found = await self._proposals.find_one({"_id": proposal_id})
        return Proposal.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def decide_proposal(
        self, proposal_id: str, status: ProposalStatus, now: datetime
    ) -> Proposal | None:
        # One conditional update: of two answers at once, exactly one gets the document.
        found = await self._proposals.find_one_and_update(
            {
                "_id": proposal_id,
                "status": ProposalStatus.PENDING.value,
                "expires_at": {"$gt": now},
            },
            {"$set": {"status": status.value, "decided_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return Proposal.model_validate(_load(found)) if found else None

    @_unavailable_on_error
    async def finish_proposal(self, proposal_id: str, status: ProposalStatus, result: str) -> None:
        await self._proposals.update_one(
            {"_id": proposal_id}, {"$set": {"status": status.value, "result": result}}
        )
