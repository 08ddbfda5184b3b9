"""The outbox: window notices kept in the store until delivered, or until no longer true.

Every message the scheduler owes a user (the window opened, continues, closes soon, closed,
was missed; the goal-setting nudge; the recap) is a `Notice` in the store before it is sent.
A platform that is down, or a process that stops, no longer loses one.

What is kept, and when a notice is no longer true: scheduler/notices.py.

Sending. The process that makes the step's claim creates the notice already claimed by itself
(try 1) and sends at once, as before: the user hears "your window is open" on time, with the
Delivery's quick tries (1, 5, 30 s). What still fails is handed back with a next try after a
back-off by the number of tries, NOTICE_BACKOFF_SECONDS (1, 5, then every 30 minutes), but
never later than its expiry, so a notice that runs out is dropped promptly. Every scheduler's
refresh (also at start, on any process) claims the pending notices whose time has come and
tries each once more. A user on a platform this process has no notifier for (the console) is
dropped at once with a log line, as before.

One field, `next_try_at`, is both the back-off and the claim: a claim is a conditional update
"pending and next_try_at <= now" that sets it to `now + lease` and counts the try
(`attempts + 1`), so two processes never try one notice at the same time. The lease outlasts
the longest send (every quick try timing out, plus the waits, plus LEASE_MARGIN: about 3.6
minutes by default), so a live try keeps its claim. A failed try hands the notice back naming
itself by its try number, so a try that was taken over cannot move the newer try's claim;
marking it delivered or dropped needs only that it is still pending.

At least once, not exactly once. The notice is marked delivered right after the platform
accepted it. A process that dies between the two (or a database that fails that one write)
leaves a claim that runs out after the lease, and the notice is sent again: the user may, in
that rare case, get one message twice. The other order (mark first, then send) would lose the
message instead; here nothing is lost. A delivered or dropped notice is never sent again, by
any process, after any restart. On Discord each notice is posted with a nonce made from its
key, which Discord enforces for a few minutes: a quick retry after Discord took the message
but answered an error does not post it twice. (A resend after a crash comes after the lease,
usually beyond Discord's window. Slack has no such key.)

The database down when a notice is created: it is sent once anyway (the step's claim already
made it once-only), without later tries, with a warning in the log.

The store: `add_notice`, `pending_notices`, `claim_notice`, `retry_notice`, `settle_notice`
(single-document conditional updates, tested on both backends in tests/test_store_contract.py),
reached through the coach's window hooks (`coach.windows`): the `NoticeStore` port below.
Delivered and dropped notices stay, as the record that a step was told; they go with the user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from core.errors import StoreUnavailable
from core.metrics import NOTICES
from core.models import (
    Meeting,
    Notice,
    NoticeFacts,
    NoticeKind,
    NoticeState,
    User,
)
from core.texts import counted
from scheduler.notices import (
    NOTICE_BACKOFF,
    expiry,
    later_keys,
    next_try_at,
    notice_key,
    render,
    stale_reason,
)
from scheduler.notify import Delivery, Sent

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Zone = Callable[[User], ZoneInfo]

# A claim outlasts the longest send by this much (a slow database write, a busy loop).
LEASE_MARGIN = timedelta(minutes=1)
# Notices one refresh takes on; the rest wait for the next refresh.
NOTICES_PER_REFRESH = 200


class NoticeStore(Protocol):
    """What the outbox needs: the notices, and the user and meeting each is about
    (`coach.windows`, core/window_hooks.py, gives them)."""

    async def add_notice(self, notice: Notice) -> bool: ...
    async def get_notice(self, key: str) -> Notice | None: ...
    async def pending_notices(self, now: datetime, limit: int) -> list[Notice]: ...
    async def claim_notice(self, key: str, now: datetime, until: datetime) -> Notice | None: ...
    async def retry_notice(
        self, key: str, attempt: int, next_try_at: datetime, error: str
    ) -> Notice | None: ...
    async def settle_notice(
        self, key: str, state: NoticeState, now: datetime, reason: str | None = None
    ) -> Notice | None: ...
    async def get_user(self, user_id: str) -> User | None: ...
    async def get_meeting(self, meeting_id: str) -> Meeting | None: ...


class Outbox:
    """Creates, sends and retries the notices (see the module docstring)."""

    def __init__(
        self,
        store: NoticeStore,
        delivery: Delivery,
        *,
        clock: Clock,
        zone: Zone,
        backoff: Sequence[timedelta] = NOTICE_BACKOFF,
    ) -> None:
        if not backoff:
            raise ValueError("the notice back-off needs at least one wait")
        self.store = store
        self.delivery = delivery
        self.clock = clock
        self.zone = zone
        self.backoff = tuple(backoff)

    @property
    def lease(self) -> timedelta:
        return self.delivery.longest_send + LEASE_MARGIN

    async def post(
        self, user: User, meeting: Meeting, kind: NoticeKind, facts: NoticeFacts, now: datetime
    ) -> bool:
        """Keep a new notice and send it at once; True once the platform accepted it."""
        notice = Notice(
            id=notice_key(meeting.id, kind),
            user_id=user.id,
            meeting_id=meeting.id,
            kind=kind,
            facts=facts,
            created_at=now,
            expires_at=expiry(kind, facts, now),
            attempts=1,
            next_try_at=now + self.lease,
        )
        try:
            added = await self.store.add_notice(notice)
        except StoreUnavailable as error:
            # The step is claimed already, so sending cannot double it; only the retries
            # are lost with the database.
            log.warning(
                "could not keep notice %s (%s): sending it once, without later tries",
                notice.id,
                error,
            )
            text = render(notice, self.zone(user), now)
            outcome = await self.delivery.send(user, text, key=notice.id)
            NOTICES.labels(outcome.sent.value).inc()
            return outcome.sent is Sent.DELIVERED
        if not added:
            log.info("notice %s exists already: not sent again", notice.id)
            return False
        return await self._try(notice, user)

    async def pending(self, now: datetime) -> list[Notice]:
        """Notices free to try again at `now`, the longest waiting first."""
        return await self.store.pending_notices(now, NOTICES_PER_REFRESH)

    async def retry(self, key: str, now: datetime) -> bool:
        """Claim a pending notice and, if it is still true, try it once more; True once sent.
        False if another process holds it, it waits out its back-off, or it was dropped."""
        notice = await self.store.claim_notice(key, now, now + self.lease)
        if notice is None:
            return False
        user = await self.store.get_user(notice.user_id)
        meeting = await self.store.get_meeting(notice.meeting_id)
        stale = stale_reason(notice, meeting, user, now, await self._newer(notice))
        if stale is not None:
            log.log(
                logging.ERROR if stale.given_up else logging.WARNING,
                "%s the %s notice %s for user %s after %s: %s",
                "giving up" if stale.given_up else "dropped",
                notice.kind.value,
                notice.id,
                notice.user_id,
                counted(notice.attempts - 1, "try", "tries"),
                stale.reason,
            )
            await self._settle(notice, NoticeState.DROPPED, now, stale.reason)
            return False
        assert user is not None  # a notice without its user is stale
        log.info("trying notice %s again (try %d)", notice.id, notice.attempts)
        return await self._try(notice, user)

    async def _newer(self, notice: Notice) -> Notice | None:
        for key in later_keys(notice):
            if (newer := await self.store.get_notice(key)) is not None:
                return newer
        return None

    async def _try(self, notice: Notice, user: User) -> bool:
        """One send of a notice this process holds; settle it or hand it back."""
        text = render(notice, self.zone(user), self.clock())
        outcome = await self.delivery.send(user, text, key=notice.id)
        done = self.clock()
        NOTICES.labels(outcome.sent.value).inc()
        if outcome.sent is Sent.DELIVERED:
            await self._settle(notice, NoticeState.DELIVERED, done, None)
            return True
        if outcome.sent is Sent.UNREACHABLE:
            await self._settle(notice, NoticeState.DROPPED, done, outcome.error)
            return False
        retry = next_try_at(notice.attempts, done, notice.expires_at, self.backoff)
        error = outcome.error or "failed"
        try:
            handed = await self.store.retry_notice(notice.id, notice.attempts, retry, error)
        except StoreUnavailable as failure:
            log.warning(
                "notice %s not delivered, and the database is unavailable (%s): it is tried "
                "again once its claim runs out",
                notice.id,
                failure,
            )
            return False
        if handed is None:
            log.info("notice %s was taken over or settled by another process", notice.id)
        else:
            log.warning(
                "notice %s for user %s not delivered (try %d): next try after %s",
                notice.id,
                notice.user_id,
                notice.attempts,
                retry.isoformat(timespec="seconds"),
            )
        return False

    async def _settle(
        self, notice: Notice, state: NoticeState, now: datetime, reason: str | None
    ) -> None:
        try:
            settled = await self.store.settle_notice(notice.id, state, now, reason)
        except StoreUnavailable as error:
            log.error(
                "notice %s is %s but could not be marked so (%s)%s",
                notice.id,
                state.value,
                error,
                ": it may be sent again once its claim runs out"
                if state is NoticeState.DELIVERED
                else "",
            )
            return
        if settled is None:
            log.info("notice %s was settled by another process meanwhile", notice.id)
