"""The MongoDB store's plumbing: its collections, failures reported as StoreUnavailable, and
documents keyed by `_id` with a `seq` that keeps insertion order among equal timestamps."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from core.metrics import STORE_ERRORS
from core.models import (
    Commitment,
    Goal,
    Meeting,
    Message,
    Notice,
    ProgressEntry,
    Proposal,
    User,
)
from core.store import StoreUnavailable

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
            STORE_ERRORS.labels("mongodb").inc()
            raise StoreUnavailable(str(error)) from error

    return wrapper


def _doc(
    model: User | Goal | Commitment | ProgressEntry | Meeting | Message | Notice | Proposal,
) -> dict[str, Any]:
    data = model.model_dump(mode="python", exclude_none=True)
    data["_id"] = data.pop("id")
    data["seq"] = ObjectId()  # increases within a process: the tie-break for equal timestamps
    return data


def _by(field: str, direction: int = ASCENDING) -> list[tuple[str, int]]:
    return [(field, direction), ("seq", direction)]


def _load(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "id": data["_id"]}


def _reason(error: PyMongoError) -> str:
    """PyMongo's message without the timeout settings and topology dump it appends: the
    operator reads this as one line at start-up."""
    text = str(error).split(", Timeout: ")[0]
    return re.sub(r" \(configured timeouts: [^)]*\)", "", text)


class Collections:
    """A MongoDB store's collections: the base of its parts (users and messages, meetings,
    turns), which share one database."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        db = client[database]
        self._users = db["users"]
        self._messages = db["messages"]
        self._goals = db["goals"]
        self._progress = db["progress"]
        self._meetings = db["meetings"]
        self._events = db["events"]
        self._turns = db["turns"]
        self._turn_waits = db["turn_waits"]
        self._in_flight = db["in_flight"]
        self._notices = db["notices"]
        self._tokens = db["tokens"]
        self._passes = db["passes"]
        self._identities = db["identities"]
        self._proposals = db["proposals"]
        self._commitments = db["commitments"]
        self._installs = db["installs"]  # `_id`: kind, enterprise, team and user joined
        self._memory = db["memory"]  # one document per user, `_id` the user's id
