"""Window notices as data: their keys, when each stops being worth sending, their text.

Pure: `now` is an argument. The outbox (scheduler/outbox.py) keeps and sends them.

What is kept. One notice per meeting step, keyed `<meeting id>:<step>` (open, remind, close,
recap): inserting a key that exists does nothing, so a step's notice exists once even if two
processes create it. A notice keeps its kind and the facts its text is made of (times, the
recap's text), not the text: it is rendered when sent, in the user's timezone then, so a
"closed at 10:45" sent the next morning reads "closed at Tue 2 Jun 2026, 10:45". It also keeps
`expires_at` (after it, not worth sending), `attempts`, `next_try_at`, its last error and its
state: pending, then delivered or dropped for good.

No longer true. Before each later try (not the first) the notice is checked at `now`
(`stale_reason`):
- open, continues, closing soon and the goal-setting nudge are dropped once the window they
  announce has closed (`until`), or when their meeting was cancelled;
- closed and missed are given up once the next window opens (they announce it) or a day after
  they were made; a recap a day after it was written (it stays in the history and with the
  meeting). These are given up with an error in the log: the user missed something;
- a window notice is dropped once a later step of the same window has its own notice (a
  "closes soon" or "closed" made meanwhile): a late "is open" after those would be out of order;
- every notice is dropped when its user was forgotten (`forget` deletes their notices too) or
  its meeting is gone.
The "open" check goes by the close the notice announced; a neighbouring meeting cancelled
later can end the window earlier than the text says (the gate, not this text, decides access).
Order: a notice delivered at its first try reaches the user in step order; one that needed
later tries can arrive after a newer one of another kind (a "closed" retried after its recap
went through), which is why superseded window notices are dropped rather than sent late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.models import Meeting, MeetingStatus, Notice, NoticeFacts, NoticeKind, User
from scheduler import messages

# Waits between later tries, by tries so far (NOTICE_BACKOFF_SECONDS); the last one repeats.
NOTICE_BACKOFF: tuple[timedelta, ...] = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
)
# Closed, missed and recap notices are news for about a day; then they are given up.
NOTICE_GIVE_UP = timedelta(hours=24)

# Which step of a meeting a kind of notice tells: the notice key's second half.
STEP_OF: dict[NoticeKind, str] = {
    NoticeKind.OPEN: "open",
    NoticeKind.CONTINUES: "open",
    NoticeKind.STARTING: "open",
    NoticeKind.CLOSING_SOON: "remind",
    NoticeKind.CLOSED: "close",
    NoticeKind.MISSED: "close",
    NoticeKind.RECAP: "recap",
}
# Notices about a window still to come or still open: untrue once it closed or was cancelled.
WHILE_OPEN = frozenset(
    {NoticeKind.OPEN, NoticeKind.CONTINUES, NoticeKind.STARTING, NoticeKind.CLOSING_SOON}
)
# A window's steps in the order the user hears them; recaps follow the close.
STEP_ORDER = ("open", "remind", "close")


def notice_key(meeting_id: str, kind: NoticeKind) -> str:
    return _key(meeting_id, STEP_OF[kind])


def later_keys(notice: Notice) -> list[str]:
    """The keys of the same meeting's later window steps, which supersede a window notice
    still waiting (a "closes soon" makes a late "is open" old news, out of order)."""
    if notice.kind not in WHILE_OPEN:
        return []
    step = STEP_OF[notice.kind]
    later = STEP_ORDER[STEP_ORDER.index(step) + 1 :]
    return [_key(notice.meeting_id, other) for other in later]


def expiry(kind: NoticeKind, facts: NoticeFacts, now: datetime) -> datetime:
    """When a notice made at `now` stops being worth sending."""
    if kind in WHILE_OPEN:
        return _need(facts.until, "until", kind)
    give_up = now + NOTICE_GIVE_UP
    if kind in (NoticeKind.CLOSED, NoticeKind.MISSED) and facts.next_opens is not None:
        return min(give_up, facts.next_opens)
    return give_up


def next_try_at(
    attempts: int,
    now: datetime,
    expires_at: datetime,
    backoff: Sequence[timedelta] = NOTICE_BACKOFF,
) -> datetime:
    """After try number `attempts` failed at `now`: the back-off for that many tries (the
    last step repeating), but no later than the expiry, when the notice is dropped."""
    wait = backoff[min(max(attempts, 1), len(backoff)) - 1]
    return min(now + wait, max(expires_at, now))


@dataclass(frozen=True)
class Stale:
    reason: str
    given_up: bool  # it was still news when made, and the user never got it: an error


def stale_reason(
    notice: Notice,
    meeting: Meeting | None,
    user: User | None,
    now: datetime,
    superseded_by: Notice | None = None,
) -> Stale | None:
    """Why a pending notice should not be sent at `now`; None while it is still true.
    `superseded_by` is a notice of a later step of the same window (see `later_keys`)."""
    if user is None:
        return Stale("its user was forgotten", given_up=False)
    if meeting is None:
        return Stale("its meeting is gone", given_up=False)
    if notice.kind in WHILE_OPEN:
        if meeting.status is MeetingStatus.CANCELLED:
            return Stale("its meeting was cancelled", given_up=False)
        if superseded_by is not None:
            return Stale(f"superseded by the {superseded_by.kind.value} notice", given_up=False)
        if now >= notice.expires_at:
            return Stale(
                f"no longer true: the window closed at {_iso(notice.expires_at)}", given_up=False
            )
        return None
    if now < notice.expires_at:
        return None
    next_opens = notice.facts.next_opens
    if next_opens is not None and now >= next_opens:
        return Stale(
            f"not delivered before the next window opened ({_iso(next_opens)})", given_up=True
        )
    hours = NOTICE_GIVE_UP / timedelta(hours=1)
    return Stale(f"not delivered within {hours:g} hours of being made", given_up=True)


def render(notice: Notice, tz: ZoneInfo, now: datetime) -> str:
    """The notice's text at `now` in the user's zone."""
    kind, facts = notice.kind, notice.facts

    def need(value: datetime | None, name: str) -> datetime:
        return _need(value, name, kind)

    if kind is NoticeKind.OPEN:
        return messages.window_opened(need(facts.until, "until"), tz, now, facts.commitments or ())
    if kind is NoticeKind.CONTINUES:
        return messages.window_continues(
            need(facts.start, "start"), need(facts.until, "until"), tz, now
        )
    if kind is NoticeKind.STARTING:
        return messages.meeting_starting(
            need(facts.start, "start"), tz, now, facts.commitments or ()
        )
    if kind is NoticeKind.CLOSING_SOON:
        return messages.closing_soon(need(facts.until, "until"), tz, now)
    if kind is NoticeKind.CLOSED:
        return messages.window_closed(need(facts.closed, "closed"), facts.next_opens, tz, now)
    if kind is NoticeKind.MISSED:
        return messages.window_missed(
            need(facts.opened, "opened"), need(facts.closed, "closed"), facts.next_opens, tz, now
        )
    if facts.recap is None:
        raise ValueError("a recap notice needs its text")
    return messages.recap(need(facts.start, "start"), facts.recap, tz)


def _key(meeting_id: str, step: str) -> str:
    return f"{meeting_id}:{step}"


def _need(value: datetime | None, name: str, kind: NoticeKind) -> datetime:
    if value is None:
        raise ValueError(f"a {kind.value} notice needs its `{name}` time")
    return value


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")
