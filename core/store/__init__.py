"""The Store port: everything the Coach and the scheduler keep, behind one async interface.

Two backends implement it (`sqlite.py`, the embedded default, and `mongo.py`) and one contract
suite (tests/test_store_contract.py) holds them to the same behaviour. Writes are single-record
atomic: claims are conditional updates, dedupe keys are unique. No multi-record transactions.

Contract details both backends keep: datetimes go in aware (any zone) and come back as UTC at
millisecond precision; records with equal timestamps keep insertion order; time only ever comes
from the caller's arguments, never the database's clock; an outage raises StoreUnavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from core.in_flight import InFlightStore
from core.models import (
    Goal,
    GoalStatus,
    Identity,
    Meeting,
    MeetingStatus,
    Message,
    Notice,
    NoticeState,
    Phase,
    User,
)
from core.turn_order import TurnStore

# `recap_sent` is no plain flag: `finish_recap` sets it together with the recap's text.
MeetingFlag = Literal["reminder_sent"]


class StoreUnavailable(Exception):
    """The database cannot be reached or written right now."""


class Store(TurnStore, InFlightStore, Protocol):
    async def close(self) -> None: ...

    # Users
    async def get_or_create_user(self, identity: Identity, now: datetime) -> tuple[User, bool]:
        """The user for this identity, and whether it was just created."""

    async def get_user(self, user_id: str) -> User | None: ...
    async def update_user(
        self,
        user_id: str,
        *,
        phase: Phase | None = None,
        timezone: str | None = None,
        welcomed: bool | None = None,
    ) -> User | None: ...
    async def claim_welcome(self, user_id: str) -> bool:
        """Mark the user welcomed; True only for the call that changed it (one welcome)."""

    async def list_users(self) -> list[User]: ...
    async def delete_user(self, user_id: str) -> None:
        """Delete the user and everything of theirs (turn lease and replies in flight too)."""

    # Messages
    async def add_message(self, message: Message) -> None: ...
    async def add_messages(self, messages: Sequence[Message]) -> None:
        """Insert many at once (imports, benchmarks), in order, as that many `add_message`
        calls would; not atomic: a failure may leave the first part inserted."""

    async def recent_messages(self, user_id: str, limit: int) -> list[Message]:
        """The last `limit` messages, oldest first."""

    async def history_page(
        self, user_id: str, page: int, page_size: int
    ) -> tuple[list[Message], int]:
        """Page `page` (1-based, newest first) and the total number of messages."""

    async def messages_between(
        self, user_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Message]:
        """Messages with start <= created_at < end, oldest first."""

    async def mark_undelivered(self, message_id: str) -> None:
        """The platform never showed this message (see Message.delivered)."""

    async def clear_messages(self, user_id: str) -> int: ...

    # Goals
    async def add_goal(self, goal: Goal) -> None: ...
    async def list_goals(self, user_id: str, status: GoalStatus | None = None) -> list[Goal]: ...
    async def close_goal(
        self, user_id: str, goal_id: str, status: GoalStatus, now: datetime
    ) -> Goal | None:
        """Mark an active goal done or dropped; None if there is no such active goal."""

    # Meetings
    async def add_meetings(self, meetings: Sequence[Meeting]) -> None: ...
    async def get_meeting(self, meeting_id: str) -> Meeting | None: ...
    async def list_meetings(
        self, user_id: str, *, closing_after: datetime | None = None
    ) -> list[Meeting]:
        """The user's meetings by start time; with `closing_after`, only windows closing later."""

    async def live_meetings(self, closing_after: datetime) -> list[Meeting]:
        """Every user's scheduled or open meetings whose window closes after the given time."""

    async def cancel_meetings(self, user_id: str, meeting_ids: Sequence[str]) -> int:
        """Cancel those of the user's meetings that have not closed; returns how many."""

    async def claim_transition(
        self,
        meeting_id: str,
        from_status: MeetingStatus,
        to_status: MeetingStatus,
        *,
        recap_claimed_until: datetime | None = None,
    ) -> Meeting | None:
        """Atomically move a meeting between states; None if another process got there first.

        With `recap_claimed_until`, the same update sets the recap claim: a close hands the
        recap to its closer, leaving no moment in which another process could start it.
        """

    async def claim_flag(self, meeting_id: str, flag: MeetingFlag) -> Meeting | None:
        """Atomically set a once-only flag; None if it was already set."""

    # Recaps: claimed with an expiring lease, finished once (see scheduler.windows)
    async def pending_recaps(self, closed_after: datetime, now: datetime) -> list[Meeting]:
        """Closed meetings closing after `closed_after` whose recap is unsent and unclaimed at
        `now` (no claim, or one that ran out by then), by window close."""

    async def claim_recap(
        self, meeting_id: str, *, expired_by: datetime, until: datetime
    ) -> Meeting | None:
        """Claim a closed meeting's unsent recap until `until` if it is unclaimed or its claim
        ran out by `expired_by`; None otherwise. A claim taken over from an expired one ends
        later than it, so a holder passing its own expiry as `expired_by` releases or extends
        its own claim and never another process's."""

    async def finish_recap(self, meeting_id: str, text: str) -> Meeting | None:
        """Store the recap and mark it sent, in one update; None if one was sent already."""

    # Notices: the scheduler's outbox, tried under an expiring claim (see scheduler.outbox)
    async def add_notice(self, notice: Notice) -> bool:
        """Insert the notice unless one with its key exists; True if this call inserted it."""

    async def get_notice(self, key: str) -> Notice | None: ...
    async def pending_notices(self, now: datetime, limit: int) -> list[Notice]:
        """Up to `limit` pending notices free to try at `now` (`next_try_at` <= now), the
        longest waiting first."""

    async def claim_notice(self, key: str, now: datetime, until: datetime) -> Notice | None:
        """Claim a pending notice free at `now` for one try: `attempts` goes up by one and
        `next_try_at` becomes `until`, in one update. The notice as claimed, or None if it is
        settled, held by another try, or waiting out its back-off."""

    async def retry_notice(
        self, key: str, attempt: int, next_try_at: datetime, error: str
    ) -> Notice | None:
        """Try number `attempt` failed: free the notice at `next_try_at`, noting the error.
        None (and no change) unless it is pending and `attempt` is still its latest try, so a
        try taken over by another process cannot move that process's claim."""

    async def settle_notice(
        self, key: str, state: NoticeState, now: datetime, reason: str | None = None
    ) -> Notice | None:
        """Mark a pending notice delivered or dropped for good (`reason` kept as its last
        error); None if it was settled already."""

    # Dedupe
    async def claim_event(self, key: str, now: datetime, expires_at: datetime) -> bool:
        """True the first time a key is seen (or once `now` >= its expiry), False for a repeat."""

    async def release_event(self, key: str) -> None:
        """Forget a claimed key (no-op if unknown): its event was not handled after all."""


async def open_store(
    url: str, *, mongodb_database: str = "momentum", timeout_seconds: float | None = None
) -> Store:
    """Open the backend named by `DATABASE_URL`. `timeout_seconds` bounds how long a call
    waits for the database before it raises StoreUnavailable (None: the backend's default)."""
    if url.startswith("sqlite://"):
        from core.store.sqlite import SQLiteStore

        path = url.removeprefix("sqlite://").removeprefix("/") or ":memory:"
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
