"""The meeting-window transitions: open, closing-soon reminder, close, recap.

Every transition is an atomic claim in the store (scheduled -> open -> closed, and the once-only
flags `reminder_sent` and `recap_sent`); only the process whose claim succeeds speaks, so any
number of scheduler processes on one database tell a user exactly once. The decisions use
core.access on the user's meetings, so the scheduler says what the gate does: a window that
overlaps or touches the next one does not announce a close in between.

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
- Recap: only the process that closed the window writes it. The LLM is tried again with backoff
  (RECAP_RETRY_DELAYS) and the `recap_sent` flag is claimed only once a recap text exists and is
  stored, so the flag never stands for a recap that was not written. If every try fails the flag
  stays unset and the failure is logged; the recap is then not retried automatically.
- Goal setting has no windows: the user gets a nudge when the window opens and the recap, but no
  "available until", reminder or "closed" message.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum

from core.access import WindowPolicy, merged_close, next_opening, open_meeting
from core.coach import Coach
from core.llm import LLMError
from core.models import Meeting, MeetingStatus, Message, MessageMeta, Phase, Role, User
from core.recap import session_messages, write_recap
from scheduler import messages
from scheduler.notify import Delivery, Sleep

log = logging.getLogger(__name__)

REMINDER_BEFORE_CLOSE = timedelta(minutes=10)
RECAP_RETRY_DELAYS: tuple[float, ...] = (60.0, 300.0, 1800.0)
# Meetings this far back are enough to tell whether another window is open or touching.
NEIGHBOURS_LOOKBACK = timedelta(days=1)
LIVE = (MeetingStatus.SCHEDULED, MeetingStatus.OPEN)


class Step(StrEnum):
    OPEN = "open"
    REMIND = "remind"
    CLOSE = "close"


def reminder_at(meeting: Meeting, policy: WindowPolicy) -> datetime | None:
    """When to send the closing-soon reminder; None if the window is too short for one."""
    when = policy.closes_at(meeting) - REMINDER_BEFORE_CLOSE
    return when if when > policy.opens_at(meeting) else None


def step_times(meeting: Meeting, policy: WindowPolicy) -> dict[Step, datetime]:
    """When each step still to be done for this meeting is due."""
    if meeting.status not in LIVE:
        return {}
    times: dict[Step, datetime] = {}
    if meeting.status is MeetingStatus.SCHEDULED:
        times[Step.OPEN] = policy.opens_at(meeting)
    remind = reminder_at(meeting, policy)
    if remind is not None and not meeting.reminder_sent:
        times[Step.REMIND] = remind
    times[Step.CLOSE] = policy.closes_at(meeting)
    return times


def due_steps(meeting: Meeting, now: datetime, policy: WindowPolicy) -> list[Step]:
    return [step for step, when in step_times(meeting, policy).items() if when <= now]


class WindowKeeper:
    """Runs the transitions for the meetings in the coach's store, and tells users."""

    def __init__(
        self,
        coach: Coach,
        delivery: Delivery,
        *,
        late_grace: timedelta,
        recap_delays: tuple[float, ...] = RECAP_RETRY_DELAYS,
        sleep: Sleep | None = None,
    ) -> None:
        self.coach = coach
        self.store = coach.store
        self.policy: WindowPolicy = coach.policy
        self.delivery = delivery
        self.late_grace = late_grace
        self._recap_delays = recap_delays
        # Recap retries wait with the same (injectable) sleep as notification retries.
        self._sleep: Sleep = sleep or delivery.sleep

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
        tz = self.coach.zone(user)
        log.info("window of meeting %s opened (user %s)", meeting.id, user.id)
        if user.phase is not Phase.TRACKING:
            await self.delivery.send(user, messages.meeting_starting(meeting.start, tz, now))
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
        text = (
            messages.window_continues(meeting.start, until, tz, now)
            if continuing
            else messages.window_opened(until, tz, now)
        )
        await self.delivery.send(user, text)
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
        await self.delivery.send(user, messages.closing_soon(close, self.coach.zone(user), now))
        return True

    async def close(self, meeting: Meeting, user: User, now: datetime) -> bool:
        was = await self._claim_close(meeting)
        if was is None:
            return False
        closed_at = self.policy.closes_at(meeting)
        if now - closed_at > self.late_grace:
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
                next_opens = upcoming[1] if upcoming else None
                tz = self.coach.zone(user)
                text = (
                    messages.window_closed(closed_at, next_opens, tz, now)
                    if was is MeetingStatus.OPEN
                    else messages.window_missed(
                        self.policy.opens_at(meeting), closed_at, next_opens, tz, now
                    )
                )
                await self.delivery.send(user, text)
        await self.recap(meeting, user)
        return True

    async def recap(self, meeting: Meeting, user: User) -> bool:
        """Summarize the window's conversation, store it, and send it. True once sent."""
        tz = self.coach.zone(user)
        conversation = session_messages(
            await self.store.messages_between(
                user.id, self.policy.opens_at(meeting), self.policy.closes_at(meeting)
            ),
            meeting.id,
        )
        if not conversation:
            log.info("no conversation in the window of meeting %s: no recap", meeting.id)
            return False
        delays = (*self._recap_delays, None)
        for attempt, delay in enumerate(delays, 1):
            try:
                recap = await write_recap(
                    self.coach.llm, self.coach.persona, meeting, conversation, tz
                )
                break
            except LLMError as error:
                if delay is None:
                    log.error(
                        "recap of meeting %s failed %d times (%s): not sent; recap_sent stays "
                        "unset",
                        meeting.id,
                        attempt,
                        error,
                    )
                    return False
                log.warning(
                    "recap of meeting %s failed (%s), retrying in %ss", meeting.id, error, delay
                )
                await self._sleep(delay)
        # Stored before the flag is claimed: a claimed flag always has its recap.
        await self.store.set_recap(meeting.id, recap.text)
        if await self.coach.claim_flag(meeting.id, "recap_sent") is None:
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
        return await self.delivery.send(user, messages.recap(meeting.start, recap.text, tz))

    # Helpers

    async def _claim_close(self, meeting: Meeting) -> MeetingStatus | None:
        """Move a live meeting to closed from whichever state it is in; the state it was in."""
        status = meeting.status
        for _ in LIVE:
            if status not in LIVE:
                return None
            if await self.coach.claim_window(meeting.id, status, MeetingStatus.CLOSED):
                return status
            fresh = await self.store.get_meeting(meeting.id)
            if fresh is None:
                return None
            status = fresh.status
        return None

    async def _neighbours(self, user: User, now: datetime) -> list[Meeting]:
        return await self.store.list_meetings(user.id, closing_after=now - NEIGHBOURS_LOOKBACK)
