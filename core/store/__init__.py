"""The store: everything the Coach and the scheduler keep, behind one async interface.

Two backends implement it (`sqlite.py`, the embedded default, and `mongo.py`) and one contract
suite (tests/test_store_contract.py) holds them to the same behaviour. Writes are single-record
atomic: claims are conditional updates, dedupe keys are unique. No multi-record transactions.

Contract details both backends keep: datetimes go in aware (any zone) and come back as UTC at
millisecond precision; records with equal timestamps keep insertion order; time only ever comes
from the caller's arguments, never the database's clock; an outage raises StoreUnavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.coach import CoachStore
from core.errors import StoreUnavailable
from core.models import MeetingFlag, Message

__all__ = ["MeetingFlag", "Store", "StoreUnavailable", "open_store", "sqlite_path"]


class Store(CoachStore, Protocol):
    """Everything the Coach and the scheduler keep: the union of their ports (CoachStore in
    core/coach.py, ReplyStore in core/turn.py, WindowStore in core/window_hooks.py,
    TurnStore in core/turn_order.py, InFlightStore in core/in_flight.py), plus these."""

    async def close(self) -> None: ...
    async def add_messages(self, messages: Sequence[Message]) -> None:
        """Insert many at once (imports, benchmarks), in order, as that many `add_message`
        calls would; not atomic: a failure may leave the first part inserted."""


def sqlite_path(url: str) -> str | None:
    """The file a `sqlite:///` DATABASE_URL names, relative to the current directory unless
    absolute (four slashes); ":memory:" when it names none; None for another backend."""
    if not url.startswith("sqlite://"):
        return None
    return url.removeprefix("sqlite://").removeprefix("/") or ":memory:"


async def open_store(
    url: str, *, mongodb_database: str = "momentum", timeout_seconds: float | None = None
) -> Store:
    """Open the backend named by `DATABASE_URL`. `timeout_seconds` bounds how long a call
    waits for the database before it raises StoreUnavailable (None: the backend's default)."""
    if (path := sqlite_path(url)) is not None:
        from core.store.sqlite import SQLiteStore

        if timeout_seconds is None:
            return await SQLiteStore.open(path)
        return await SQLiteStore.open(path, busy_timeout=timeout_seconds)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from core.store.mongo import MongoStore

        if timeout_seconds is None:
            return await MongoStore.open(url, database=mongodb_database)
        return await MongoStore.open(
            url, database=mongodb_database, server_timeout=timeout_seconds
        )
    raise ValueError(
        f"DATABASE_URL must start with sqlite:/// or mongodb:// (got {url.split(':', 1)[0]}:...)"
    )
