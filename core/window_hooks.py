"""The scheduler's door into the coach: meetings and their window steps, recaps, notices.

`coach.windows` is what scheduler/ uses, and all it uses: reading the meetings it plans jobs
for, each step as an atomic claim in the store (scheduled -> open -> closed, the reminder's
flag, the recap's lease), writing a recap with the coach's model and persona, and keeping
the notices of the outbox (scheduler/outbox.py). The rules of when a step is due are pure,
in core/windows.py; what to say and whom to tell are the scheduler's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from core.access import WindowPolicy
from core.errors import StoreUnavailable
from core.llm import LLM, LLMError
from core.models import (
    Commitment,
    CommitmentStatus,
    Meeting,
    MeetingFlag,
    MeetingStatus,
    Message,
    MessageMeta,
    Notice,
    NoticeState,
    Role,
    User,
)
from core.notes import MemoryBounds, NotesError, NotesStore, extract_notes
from core.persona import Persona
from core.recap import Recap, session_messages, write_recap
from core.windows import LIVE, NEIGHBOURS_LOOKBACK, RECAP_CATCH_UP, RECAP_LEASE

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class WindowStore(NotesStore, Protocol):
    """What the window steps, the notes after a recap and the outbox need of the store."""

    async def get_user(self, user_id: str) -> User | None: ...
    async def get_meeting(self, meeting_id: str) -> Meeting | None: ...
    async def list_meetings(
        self, user_id: str, *, closing_after: datetime | None = None
    ) -> list[Meeting]: ...
    async def live_meetings(self, closing_after: datetime) -> list[Meeting]:
        """Every user's scheduled or open meetings whose window closes after the given time."""

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

    async def messages_between(
        self, user_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Message]:
        """Messages with start <= created_at < end, oldest first."""

    async def add_message(self, message: Message) -> None: ...

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


class WindowHooks:
    def __init__(
        self,
        store: WindowStore,
        llm: LLM,
        persona: Persona,
        policy: WindowPolicy,
        clock: Clock,
        zone: Callable[[User], ZoneInfo],
        memory: MemoryBounds,
    ) -> None:
        self._store, self._llm, self._persona = store, llm, persona
        self.policy, self.now, self.zone = policy, clock, zone
        self.memory = memory

    # What there is to plan for

    async def live_meetings(self, closing_after: datetime) -> list[Meeting]:
        return await self._store.live_meetings(closing_after)

    async def neighbours(self, user: User, now: datetime) -> list[Meeting]:
        """The user's meetings near `now`: enough to tell if another window is open or touches."""
        return await self._store.list_meetings(user.id, closing_after=now - NEIGHBOURS_LOOKBACK)

    # The steps, each an atomic claim: True (or the state it was in) for the one process
    # that made it

    async def claim_open(self, meeting: Meeting) -> bool:
        claimed = await self._store.claim_transition(
            meeting.id, MeetingStatus.SCHEDULED, MeetingStatus.OPEN
        )
        return claimed is not None

    async def claim_reminder(self, meeting_id: str) -> bool:
        return await self._store.claim_flag(meeting_id, "reminder_sent") is not None

    async def claim_close(self, meeting: Meeting, recap_claim: datetime) -> MeetingStatus | None:
        """Move a live meeting to closed from whichever state it is in, claiming its recap until
        `recap_claim` in the same update; the state it was in, or None if another got there."""
        status = meeting.status
        for _ in LIVE:
            if status not in LIVE:
                return None
            if await self._store.claim_transition(
                meeting.id, status, MeetingStatus.CLOSED, recap_claimed_until=recap_claim
            ):
                return status
            fresh = await self._store.get_meeting(meeting.id)
            if fresh is None:
                return None
            status = fresh.status
        return None

    # Recaps (scheduler/windows.py has the whole story)

    async def pending_recaps(self, now: datetime) -> list[Meeting]:
        """Recaps still owed and free to try at `now`."""
        return await self._store.pending_recaps(now - RECAP_CATCH_UP, now)

    async def claim_recap(self, meeting_id: str, now: datetime) -> tuple[Meeting, datetime] | None:
        """Claim a recap still owed for RECAP_LEASE: the meeting and the claim's end."""
        until = now + RECAP_LEASE
        meeting = await self._store.claim_recap(meeting_id, expired_by=now, until=until)
        return None if meeting is None else (meeting, until)

    async def hand_back_recap(self, meeting: Meeting, claim: datetime, until: datetime) -> None:
        """Move our own claim (ending `claim`) to `until`; a no-op if another has taken it."""
        if await self._store.claim_recap(meeting.id, expired_by=claim, until=until) is None:
            log.info("recap claim of meeting %s was taken over meanwhile", meeting.id)

    async def _conversation(self, meeting: Meeting, user: User) -> list[Message]:
        messages = await self._store.messages_between(
            user.id, self.policy.opens_at(meeting), self.policy.closes_at(meeting)
        )
        return session_messages(messages, meeting.id)

    async def write_recap(self, meeting: Meeting, user: User) -> Recap | None:
        """The recap of the window's conversation; None when there was none. Raises LLMError."""
        conversation = await self._conversation(meeting, user)
        if not conversation:
            return None
        return await write_recap(self._llm, self._persona, meeting, conversation, self.zone(user))

    # What the coach carries forward (core/notes.py)

    async def open_commitments(self, user: User) -> list[Commitment]:
        return await self._store.list_commitments(user.id, CommitmentStatus.OPEN)

    async def take_notes(self, meeting: Meeting, user: User) -> int | None:
        """After a window's recap was kept: ask the model for the user's commitments and the
        coach's updated notes, and keep them. How many commitments were kept; None when it
        failed. Never raises: the recap has gone out, and a failure (the model down, an
        answer that is not the JSON asked for, the store down) costs only this window's notes.
        """
        try:
            conversation = await self._conversation(meeting, user)
            if not conversation:
                return 0
            notes = await self._store.memory_notes(user.id)
            taken = await extract_notes(
                self._llm,
                meeting,
                conversation,
                self.zone(user),
                notes,
                await self.open_commitments(user),
                self.memory,
            )
            if await self._store.get_user(user.id) is None:
                return 0  # forgotten meanwhile: keep nothing of theirs
            now = self.now()
            await self._store.add_commitments(
                [
                    Commitment(
                        user_id=user.id,
                        text=promise.text,
                        due=promise.due,
                        created_at=now,
                        meeting_id=meeting.id,
                    )
                    for promise in taken.commitments
                ]
            )
            if taken.memory is not None and taken.memory != notes:
                # Only over the notes the model was shown: a /memory forget meanwhile wins.
                if not await self._store.replace_memory_notes(
                    user.id, taken.memory, now, expected=notes
                ):
                    log.info("notes of user %s changed meanwhile: update skipped", user.id)
        except (LLMError, NotesError, StoreUnavailable) as error:
            log.warning(
                "notes after the recap of meeting %s not taken (%s): no commitments or "
                "memory update this time",
                meeting.id,
                error,
            )
            return None
        except Exception:  # the recap went out already: nothing here may undo that
            log.exception("notes after the recap of meeting %s failed", meeting.id)
            return None
        log.info(
            "meeting %s: %d commitments kept for user %s",
            meeting.id,
            len(taken.commitments),
            user.id,
        )
        return len(taken.commitments)

    async def keep_recap(self, meeting: Meeting, user: User, recap: Recap) -> bool:
        """Store the recap with the meeting and in the history, once: False if another
        process kept one already (text and "sent" are one conditional update)."""
        if await self._store.finish_recap(meeting.id, recap.text) is None:
            return False
        completion = recap.completion
        await self._store.add_message(
            Message(
                user_id=user.id,
                role=Role.ASSISTANT,
                text=recap.text,
                created_at=self.now(),
                meta=MessageMeta(
                    platform=user.identity.platform,
                    kind="recap",
                    meeting_id=meeting.id,
                    model=completion.model if completion else None,
                    usage=completion.usage if completion else None,
                    stop_reason=completion.stop_reason if completion else None,
                ),
            )
        )
        return True

    # The outbox's notices (scheduler/outbox.py `NoticeStore`)

    async def add_notice(self, notice: Notice) -> bool:
        return await self._store.add_notice(notice)

    async def get_notice(self, key: str) -> Notice | None:
        return await self._store.get_notice(key)

    async def get_user(self, user_id: str) -> User | None:
        return await self._store.get_user(user_id)

    async def get_meeting(self, meeting_id: str) -> Meeting | None:
        return await self._store.get_meeting(meeting_id)

    async def pending_notices(self, now: datetime, limit: int) -> list[Notice]:
        return await self._store.pending_notices(now, limit)

    async def claim_notice(self, key: str, now: datetime, until: datetime) -> Notice | None:
        return await self._store.claim_notice(key, now, until)

    async def retry_notice(
        self, key: str, attempt: int, next_try_at: datetime, error: str
    ) -> Notice | None:
        return await self._store.retry_notice(key, attempt, next_try_at, error)

    async def settle_notice(
        self, key: str, state: NoticeState, now: datetime, reason: str | None = None
    ) -> Notice | None:
        return await self._store.settle_notice(key, state, now, reason)

