"""The meeting-window transitions: open, closing-soon reminder, close, recap.

Every transition is an atomic claim in the store (scheduled -> open -> closed, the once-only
flag `reminder_sent`, and the recap's claim and `recap_sent`); only the process whose claim
succeeds speaks, so any number of scheduler processes on one database tell a user once. The
decisions use core.access on the user's meetings, so the scheduler says what the gate does: a
window that overlaps or touches the next one does not announce a close in between.

`advance(meeting_id, now)` does whatever is due for a meeting at `now`, so a job that fires
late, twice or after a restart does the right thing. Choices for the cases a clock makes hard:

- Restart inside a window: the window is opened and announced at once ("available until ...");
  the reminder is marked sent without a message when it is already due (the announcement just
  said when the window closes).
- A window that opened and closed while no scheduler ran (scheduled -> closed) gets ONE message
  saying so, with the next opening, never "open" then "closed" back to back; plus the recap if
  the user talked to the coach in it (the gate does not need the scheduler).
- A close more than `late_grace` (SCHEDULER_MISFIRE_GRACE_SECONDS) after the window ended is
  done silently: no message and no recap about a session long gone.
- Recap: owed for every window that closed with conversation in it (and not silently), and
  sent at most once, from whichever process gets to it (see "Recaps" below).
- Goal setting has no windows: the user gets a nudge when the window opens and the recap, but no
  "available until", reminder or "closed" message.

What a step tells the user goes through the outbox (scheduler.outbox): kept in the store as a
notice keyed by meeting and step, sent at once, and tried again later by any scheduler, across
restarts, when the platform refuses it, until delivered or no longer true. The step's claim says
"this step is done"; the notice says "the user has (not yet) been told".

Recaps outlive the process that closed the window. A recap is tried by whoever holds its claim,
`recap_claimed_until`, an expiring lease on the meeting document:

- The close sets the claim in the same update as the status (`now + RECAP_LEASE`), so the
  closer tries first, right after the "closed" message, and nobody else can start before it.
- Any scheduler's refresh (also at start) asks the store for `pending_recaps`: closed, not
  sent, closed less than RECAP_CATCH_UP ago, claim unset or run out. It claims each one
  (`claim_recap`, atomic) and the winner tries. One try per claim: a failure hands the claim
  back set to the next try's time (`recap_retry_at`: waits of 1, 5, then 30 minutes, chosen by
  the time since the close, so the schedule survives restarts without a counter); a process
  that stops mid-try leaves a claim that runs out after RECAP_LEASE. This replaces in-process
  retries with sleeps, which died with their process.
- The text and `recap_sent` are written in ONE conditional update (`finish_recap`, only if not
  yet sent), and only its winner stores the history message and posts the recap's notice. So
  one recap per meeting is written and kept, even if a try outlives its lease and a second
  process tries too; and while a lease holds, only one process calls the model. We claim first
  and release on failure (rather than claim a flag for good) so that a crash costs a delay, not
  the recap. From there the recap is a notice like any other (scheduler.outbox): kept until
  delivered, at least once. Only a crash between `finish_recap` and creating the notice, two
  database writes apart, loses the message (the recap stays with the meeting and in history).
- Nothing to recap (no conversation, or a silent late close): the claim is set to the end of
  the catch-up, `closes_at + RECAP_CATCH_UP`, so no refresh looks at the meeting again. A recap
  still failing when its catch-up ends is given up with an error in the log.
- RECAP_CATCH_UP is 24 hours: "what you committed to" still helps the same day or the next
  morning; older history is not recapped days later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from core.access import WindowPolicy, merged_close, next_opening, open_meeting
from core.coach import Coach
from core.llm import LLMError
from core.models import (
    Meeting,
    MeetingStatus,
    Message,
    MessageMeta,
    NoticeFacts,
    NoticeKind,
    Phase,
    Role,
    User,
)
from core.recap import session_messages, write_recap
from core.windows import (
    LIVE,
    NEIGHBOURS_LOOKBACK,
    RECAP_CATCH_UP,
    RECAP_LEASE,
    Step,
    due_steps,
    recap_retry_at,
    recap_settled_until,
)
from scheduler.notify import Delivery
from scheduler.outbox import NOTICE_BACKOFF, Outbox

log = logging.getLogger(__name__)

class WindowKeeper:
    """Runs the transitions for the meetings in the coach's store, and tells users."""

    def __init__(
        self,
        coach: Coach,
        delivery: Delivery,
        *,
        late_grace: timedelta,
        notice_backoff: Sequence[timedelta] = NOTICE_BACKOFF,
    ) -> None:
        self.coach = coach
        self.store = coach.store
        self.policy: WindowPolicy = coach.policy
        self.delivery = delivery
        self.late_grace = late_grace
        self.outbox = Outbox(
            self.store, delivery, clock=coach.clock, zone=coach.zone, backoff=notice_backoff
        )

    async def advance(self, meeting_id: str, now: datetime) -> None:
        """Do what is due for this meeting at `now`; idempotent, so safe to call any time."""
        meeting = await self.store.get_meeting(meeting_id)
        if meeting is None or meeting.status not in LIVE:
            return
        due = due_steps(meeting, now, self.policy)
        if not due:
            return
        user = await self.store.get_user(meeting.user_id)
        if user is None:
            return
        if Step.CLOSE in due:
            await self.close(meeting, user, now)
            return
        if Step.OPEN in due:
            await self.open(meeting, user, now)
            if Step.REMIND in due:
                # The announcement just said when the window closes: no reminder on top.
                await self.coach.claim_flag(meeting.id, "reminder_sent")
            return
        if Step.REMIND in due:
            await self.remind(meeting, user, now)

    # The transitions. Each returns whether this process won the claim.

    async def open(self, meeting: Meeting, user: User, now: datetime) -> bool:
        claimed = await self.coach.claim_window(
            meeting.id, MeetingStatus.SCHEDULED, MeetingStatus.OPEN
        )
        if claimed is None:
            return False
        log.info("window of meeting %s opened (user %s)", meeting.id, user.id)
        if user.phase is not Phase.TRACKING:
            facts = NoticeFacts(start=meeting.start, until=self.policy.closes_at(meeting))
            await self.outbox.post(user, meeting, NoticeKind.STARTING, facts, now)
            return True
        neighbours = await self._neighbours(user, now)
        until = merged_close(neighbours, now, self.policy)
        if until is None:  # cancelled meanwhile: the gate is closed, so say nothing
            return True
        opens = self.policy.opens_at(meeting)
        continuing = any(
            other.id != meeting.id
            and other.status is not MeetingStatus.CANCELLED
            and self.policy.opens_at(other) < opens <= self.policy.closes_at(other)
            for other in neighbours
        )
        kind = NoticeKind.CONTINUES if continuing else NoticeKind.OPEN
        facts = NoticeFacts(start=meeting.start, until=until)
        await self.outbox.post(user, meeting, kind, facts, now)
        return True

    async def remind(self, meeting: Meeting, user: User, now: datetime) -> bool:
        if await self.coach.claim_flag(meeting.id, "reminder_sent") is None:
            return False
        if user.phase is not Phase.TRACKING:
            return True
        neighbours = await self._neighbours(user, now)
        close = merged_close(neighbours, now, self.policy)
        if close is None or close != self.policy.closes_at(meeting):
            return True  # cancelled, or the window runs on into the next meeting's
        facts = NoticeFacts(until=close)
        await self.outbox.post(user, meeting, NoticeKind.CLOSING_SOON, facts, now)
        return True

    async def close(self, meeting: Meeting, user: User, now: datetime) -> bool:
        closed_at = self.policy.closes_at(meeting)
        silent = now - closed_at > self.late_grace
        # The close claims the recap too: the closer tries first, after its "closed" message.
        claim = recap_settled_until(meeting) if silent else now + RECAP_LEASE
        was = await self._claim_close(meeting, claim)
        if was is None:
            return False
        if silent:
            log.info(
                "window of meeting %s closed %s late: closed without messages",
                meeting.id,
                now - closed_at,
            )
            return True
        log.info("window of meeting %s closed (was %s)", meeting.id, was.value)
        if user.phase is Phase.TRACKING:
            neighbours = await self._neighbours(user, now)
            if open_meeting(neighbours, now, self.policy) is None:
                upcoming = next_opening(neighbours, now, self.policy)
                facts = NoticeFacts(
                    opened=self.policy.opens_at(meeting),
                    closed=closed_at,
                    next_opens=upcoming[1] if upcoming else None,
                )
                kind = NoticeKind.CLOSED if was is MeetingStatus.OPEN else NoticeKind.MISSED
                await self.outbox.post(user, meeting, kind, facts, now)
        await self._recap(meeting, user, claim)
        return True

    # Recaps

    async def pending_recaps(self, now: datetime) -> list[Meeting]:
        """Recaps still owed and free to try at `now` (see the module docstring)."""
        return await self.store.pending_recaps(now - RECAP_CATCH_UP, now)

    async def catch_up_recap(self, meeting_id: str, now: datetime) -> bool:
        """Claim and try a recap still owed (an earlier try failed, or its process stopped).
        True once this process sent it; False if another holds it or it is not owed."""
        claim = now + RECAP_LEASE
        meeting = await self.store.claim_recap(meeting_id, expired_by=now, until=claim)
        if meeting is None:
            return False
        user = await self.store.get_user(meeting.user_id)
        if user is None:
            return False
        log.info("catching up on the recap of meeting %s", meeting.id)
        return await self._recap(meeting, user, claim)

    async def _recap(self, meeting: Meeting, user: User, claim: datetime) -> bool:
        """One try, holding the recap's claim until `claim`: write, store and send the recap.

        True once sent. On failure the claim is handed back with the next try's time.
        """
        tz = self.coach.zone(user)
        conversation = session_messages(
            await self.store.messages_between(
                user.id, self.policy.opens_at(meeting), self.policy.closes_at(meeting)
            ),
            meeting.id,
        )
        if not conversation:
            log.info("no conversation in the window of meeting %s: no recap", meeting.id)
            await self._hand_back(meeting, claim, recap_settled_until(meeting))
            return False
        try:
            recap = await write_recap(self.coach.llm, self.coach.persona, meeting, conversation, tz)
        except LLMError as error:
            retry = recap_retry_at(meeting.closes_at, self.coach.clock())
            if retry >= recap_settled_until(meeting):
                log.error("recap of meeting %s failed (%s): giving up", meeting.id, error)
            else:
                log.warning(
                    "recap of meeting %s failed (%s): next try after %s",
                    meeting.id,
                    error,
                    retry.isoformat(timespec="seconds"),
                )
            await self._hand_back(meeting, claim, retry)
            return False
        # Text and flag in one conditional update: only one process ever gets past here.
        if await self.store.finish_recap(meeting.id, recap.text) is None:
            log.info("recap of meeting %s was sent by another process", meeting.id)
            return False
        completion = recap.completion
        await self.store.add_message(
            Message(
                user_id=user.id,
                role=Role.ASSISTANT,
                text=recap.text,
                created_at=self.coach.clock(),
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
        facts = NoticeFacts(start=meeting.start, recap=recap.text)
        return await self.outbox.post(user, meeting, NoticeKind.RECAP, facts, self.coach.clock())

    async def _hand_back(self, meeting: Meeting, claim: datetime, until: datetime) -> None:
        """Move our own claim to `until`; a no-op if another process has taken it over."""
        if await self.store.claim_recap(meeting.id, expired_by=claim, until=until) is None:
            log.info("recap claim of meeting %s was taken over meanwhile", meeting.id)

    # Helpers

    async def _claim_close(self, meeting: Meeting, recap_claim: datetime) -> MeetingStatus | None:
        """Move a live meeting to closed from whichever state it is in, claiming its recap until
        `recap_claim` in the same update; the state it was in."""
        status = meeting.status
        for _ in LIVE:
            if status not in LIVE:
                return None
            if await self.store.claim_transition(
                meeting.id, status, MeetingStatus.CLOSED, recap_claimed_until=recap_claim
            ):
                return status
            fresh = await self.store.get_meeting(meeting.id)
            if fresh is None:
                return None
            status = fresh.status
        return None

    async def _neighbours(self, user: User, now: datetime) -> list[Meeting]:
        return await self.store.list_meetings(user.id, closing_after=now - NEIGHBOURS_LOOKBACK)
