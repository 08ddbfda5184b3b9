"""The MongoDB store's users and their identities (core/linking.py says the rules).

A user's own (primary) identity is in its `users` document, unique there; identities linked
to it besides are documents of `identities`, keyed `<platform>:<external id>` (the platform
holds no colon), so unique there. A linked identity outranks a `users` document: a user whose
primary identity is linked to another user is being merged into that user (a merge is
several single-document writes, no transaction), and the lookup that finds one finishes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.models import Identity, Phase, User
from core.store.mongo_base import _by, _doc, _load, _unavailable_on_error
from core.store.mongo_notes import NoteDocs


def _key(identity: Identity) -> str:
    return f"{identity.platform.value}:{identity.external_id}"


def _primary(identity: Identity) -> dict[str, str]:
    return {
        "identity.platform": identity.platform.value,
        "identity.external_id": identity.external_id,
    }


def _same(a: Identity, b: Identity) -> bool:
    return (a.platform, a.external_id) == (b.platform, b.external_id)


def _identity(doc: dict[str, Any]) -> Identity:
    return Identity.model_validate(doc)


class UserDocs(NoteDocs):
    """Users and identities; a user's notes (NoteDocs) come along because a merge joins them."""

    # Users

    @_unavailable_on_error
    async def get_or_create_user(self, identity: Identity, now: datetime) -> tuple[User, bool]:
        # Read first: the user almost always exists, and a read is cheaper than an upsert.
        if (existing := await self._find(identity, now)) is not None:
            return existing, False
        fresh = User(identity=identity, created_at=now)
        try:
            await self._users.update_one(
                _primary(identity), {"$setOnInsert": _doc(fresh)}, upsert=True
            )
        except DuplicateKeyError:  # a concurrent first message created it
            pass
        # Found again, not assumed: a link of this identity may have landed meanwhile.
        found = await self._find(identity, now)
        assert found is not None
        return found, found.id == fresh.id

    async def _find(self, identity: Identity, now: datetime) -> User | None:
        """The user `identity` finds: the one it is linked to, else the one it is primary of
        (finishing a merge that stopped halfway, when it is both)."""
        primary_doc = await self._users.find_one(_primary(identity))
        primary = User.model_validate(_load(primary_doc)) if primary_doc else None
        link = await self._identities.find_one({"_id": _key(identity)})
        if link is None or (primary is not None and primary.id == link["user_id"]):
            return primary
        linked = await self.get_user(link["user_id"])
        if linked is None:  # its user was deleted meanwhile: the link leads nowhere
            return primary
        if primary is not None:
            await self.merge_user(primary.id, linked.id, now)
        return linked

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
            self._in_flight,
            self._messages,
            self._goals,
            self._commitments,
            self._progress,
            self._meetings,
            self._notices,
            self._turn_waits,
            self._tokens,
            self._passes,
            self._proposals,
            self._identities,
        ):
            await collection.delete_many({"user_id": user_id})
        await self._turns.delete_one({"_id": user_id})
        await self._memory.delete_one({"_id": user_id})
        await self._users.delete_one({"_id": user_id})

    # Identities

    @_unavailable_on_error
    async def list_identities(self, user_id: str) -> list[Identity]:
        user = await self.get_user(user_id)
        if user is None:
            return []
        cursor = self._identities.find({"user_id": user_id}).sort(_by("linked_at"))
        linked = [_identity(doc) async for doc in cursor]
        return [user.identity, *(i for i in linked if not _same(i, user.identity))]

    @_unavailable_on_error
    async def add_identity(self, user_id: str, identity: Identity, now: datetime) -> None:
        key = _key(identity)
        moved = await self._identities.update_one(
            {"_id": key, "user_id": {"$ne": user_id}},
            {"$set": {"user_id": user_id, "linked_at": now, "seq": ObjectId()}},
        )
        if moved.matched_count:
            return
        document = {
            "_id": key,
            **identity.model_dump(mode="python", exclude_none=True),
            "user_id": user_id,
            "linked_at": now,
            "seq": ObjectId(),
        }
        try:
            await self._identities.insert_one(document)
        except DuplicateKeyError:  # it is linked already, to this user or (a race) another
            await self._identities.update_one(
                {"_id": key, "user_id": {"$ne": user_id}},
                {"$set": {"user_id": user_id, "linked_at": now, "seq": ObjectId()}},
            )

    @_unavailable_on_error
    async def remove_identity(self, user_id: str, identity: Identity) -> bool:
        result = await self._identities.delete_one({"_id": _key(identity), "user_id": user_id})
        return result.deleted_count == 1

    @_unavailable_on_error
    async def set_primary(self, user_id: str, identity: Identity, now: datetime) -> bool:
        await self._find(identity, now)  # a merge cut short would keep it primary elsewhere
        user = await self.get_user(user_id)
        if user is None:
            return False
        if _same(user.identity, identity):
            return True
        link = await self._identities.find_one({"_id": _key(identity), "user_id": user_id})
        if link is None:
            return False
        # Three steps, each leaving every identity finding this user: the old primary is
        # linked first, the document takes the new one, and then that one is no longer linked.
        await self.add_identity(user_id, user.identity, now)
        changed = await self._users.update_one(
            {"_id": user_id, **_primary(user.identity)},
            {"$set": {"identity": _identity(link).model_dump(mode="python", exclude_none=True)}},
        )
        if changed.modified_count == 1:
            await self.remove_identity(user_id, identity)
        return changed.modified_count == 1

    @_unavailable_on_error
    async def merge_user(self, from_id: str, into_id: str, now: datetime) -> bool:
        if from_id == into_id or await self.get_user(into_id) is None:
            return False
        # Identities first: from here on, every new message of theirs lands on `into`.
        if (source := await self.get_user(from_id)) is not None:
            await self.add_identity(into_id, source.identity, now)
        # The turn lease and the waiting tickets stay: they are `from`'s, deleted with it.
        for collection in (
            self._identities,
            self._messages,
            self._goals,
            self._commitments,
            self._progress,
            self._meetings,
            self._notices,
            self._in_flight,
            self._tokens,
            self._passes,
            self._proposals,
        ):
            await collection.update_many({"user_id": from_id}, {"$set": {"user_id": into_id}})
        await self._merge_notes(from_id, into_id, now)
        await self.delete_user(from_id)
        return True
