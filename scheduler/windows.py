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
  sent at most once, from whichever process gets to it (see "Recaps" below). The process that
  kept it then takes the window's notes once (core/notes.py: the user's commitments and the
  coach's notes on them); the next window's opening recalls the commitments still open
  ("Last time you said you would ...").
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
from core.models import Meeting, MeetingStatus, NoticeFacts, NoticeKind, Phase, User
from core.windows import (
    LIVE,
    RECAP_LEASE,
    Step,
    due_steps,
    recap_retry_at,
    recap_settled_until,
)
from scheduler.notices import NOTICE_BACKOFF
from scheduler.notify import Delivery
from scheduler.outbox import Outbox

log = logging.getLogger(__name__)

class WindowKeeper:
    """Runs the transitions for the coach's meetings (`coach.windows`), and tells users."""

    def __init__(
        self,
        coach: Coach,
        delivery: Delivery,
        *,
        late_grace: timedelta,
        notice_backoff: Sequence[timedelta] = NOTICE_BACKOFF,
    ) -> None:
        self.windows = windows = coach.windows
        self.policy: WindowPolicy = windows.policy
        self.delivery = delivery
        self.late_grace = late_grace
        self.outbox = Outbox(
            windows, delivery, clock=windows.now, zone=windows.zone, backoff=notice_backoff
        )

    async def advance(self, meeting_id: str, now: datetime) -> None:
        """Do what is due for this meeting at `now`; idempotent, so safe to call any time."""
        meeting = await self.windows.get_meeting(meeting_id)
        if meeting is None or meeting.status not in LIVE:
            return
        due = due_steps(meeting, now, self.policy)
        if not due:
            return
        user = await self.windows.get_user(meeting.user_id)
        if user is None:
            return
        if Step.CLOSE in due:
            await self.close(meeting, user, now)
            return
        if Step.OPEN in due:
            await self.open(meeting, user, now)
            if Step.REMIND in due:
                # The announcement just said when the window closes: no reminder on top.
                await self.windows.claim_reminder(meeting.id)
            return
        if Step.REMIND in due:
            await self.remind(meeting, user, now)

    # The transitions. Each returns whether this process won the claim.

    async def open(self, meeting: Meeting, user: User, now: datetime) -> bool:
        if not await self.windows.claim_open(meeting):
            return False
        log.info("window of meeting %s opened (user %s)", meeting.id, user.id)
        # "Last time you said you would ...": the opening recalls what is still open.
        recalled = tuple(c.text for c in await self.windows.open_commitments(user)) or None
        if user.phase is not Phase.TRACKING:
            facts = NoticeFacts(
                start=meeting.start, until=self.policy.closes_at(meeting), commitments=recalled
            )
            await self.outbox.post(user, meeting, NoticeKind.STARTING, facts, now)
            return True
        neighbours = await self.windows.neighbours(user, now)
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
        facts = NoticeFacts(
            start=meeting.start, until=until, commitments=None if continuing else recalled
        )
        await self.outbox.post(user, meeting, kind, facts, now)
        return True

    async def remind(self, meeting: Meeting, user: User, now: datetime) -> bool:
        if not await self.windows.claim_reminder(meeting.id):
            return False
        if user.phase is not Phase.TRACKING:
            return True
        neighbours = await self.windows.neighbours(user, now)
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
        was = await self.windows.claim_close(meeting, claim)
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
            await self._tell_closed(meeting, user, was, now)
        await self._recap(meeting, user, claim)
        return True

    async def _tell_closed(
        self, meeting: Meeting, user: User, was: MeetingStatus, now: datetime
    ) -> None:
        """The "closed" (or "missed", if it never opened) notice, unless the next window
        is open already."""
        neighbours = await self.windows.neighbours(user, now)
        if open_meeting(neighbours, now, self.policy) is not None:
            return
        upcoming = next_opening(neighbours, now, self.policy)
        facts = NoticeFacts(
            opened=self.policy.opens_at(meeting),
            closed=self.policy.closes_at(meeting),
            next_opens=upcoming[1] if upcoming else None,
        )
        kind = NoticeKind.CLOSED if was is MeetingStatus.OPEN else NoticeKind.MISSED
        await self.outbox.post(user, meeting, kind, facts, now)

    # Recaps

    async def pending_recaps(self, now: datetime) -> list[Meeting]:
        """Recaps still owed and free to try at `now` (see the module docstring)."""
        return await self.windows.pending_recaps(now)

    async def catch_up_recap(self, meeting_id: str, now: datetime) -> bool:
        """Claim and try a recap still owed (an earlier try failed, or its process stopped).
        True once this process sent it; False if another holds it or it is not owed."""
        claimed = await self.windows.claim_recap(meeting_id, now)
        if claimed is None:
            return False
        meeting, claim = claimed
        user = await self.windows.get_user(meeting.user_id)
        if user is None:
            return False
        log.info("catching up on the recap of meeting %s", meeting.id)
        return await self._recap(meeting, user, claim)

    async def _recap(self, meeting: Meeting, user: User, claim: datetime) -> bool:
        """One try, holding the recap's claim until `claim`: write, store and send the recap.

        True once sent. On failure the claim is handed back with the next try's time.
        """
        try:
            recap = await self.windows.write_recap(meeting, user)
        except LLMError as error:
            retry = recap_retry_at(meeting.closes_at, self.windows.now())
            if retry >= recap_settled_until(meeting):
                log.error("recap of meeting %s failed (%s): giving up", meeting.id, error)
            else:
                log.warning(
                    "recap of meeting %s failed (%s): next try after %s",
                    meeting.id,
                    error,
                    retry.isoformat(timespec="seconds"),
                )
            await self.windows.hand_back_recap(meeting, claim, retry)
            return False
        if recap is None:
            log.info("no conversation in the window of meeting %s: no recap", meeting.id)
            await self.windows.hand_back_recap(meeting, claim, recap_settled_until(meeting))
            return False
        # Text and flag in one conditional update: only one process ever gets past here.
        if not await self.windows.keep_recap(meeting, user, recap):
            log.info("recap of meeting %s was sent by another process", meeting.id)
            return False
        facts = NoticeFacts(start=meeting.start, recap=recap.text)
        now = self.windows.now()
        sent = await self.outbox.post(user, meeting, NoticeKind.RECAP, facts, now)
        # After the recap is out, so that nothing here can hold it back: one more model call
        # for the commitments and the coach's notes (it logs its own failure and never raises).
        await self.windows.take_notes(meeting, user)
        return sent
