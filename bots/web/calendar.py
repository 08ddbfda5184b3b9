"""A user's meetings as an iCalendar feed (RFC 5545) that Google, Apple and Outlook subscribe to.

Pure: a function of the meetings, the user's zone, the window policy and `now`. What it decides:
- Shown: every meeting that is not cancelled and whose window closed less than `past_horizon`
  (a week by default) ago. A subscribed calendar deletes what the feed drops, so a session
  stays visible for a while after it happened instead of vanishing at its next refresh.
- Times are wall-clock times in the user's zone (TZID and its VTIMEZONE), so the calendar
  shows them where the coach says they are, and a recurrence keeps its hour across DST.
- A weekly series (one `series_id`) is ONE event: DTSTART at its first shown occurrence, an
  RRULE FREQ=WEEKLY;COUNT up to its last, and an EXDATE for each week in between it lacks
  (cancelled, or moved). Occurrences the RRULE would not produce exactly (another time or
  length, or a window that a DST change bends) are separate events of their own.
- UIDs come from the store's ids (`series-<id>` / `meeting-<id>`), so a re-fetch updates the
  events a calendar already has instead of adding copies; DTSTAMP is `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vDuration, vRecur

from core.access import WindowPolicy
from core.models import Meeting, MeetingStatus
from core.zones import format_wall, require_aware, weekly_starts

PRODID = "-//Momentum//Coaching meetings//EN"
SUMMARY = "Coaching with Momentum"
UID_DOMAIN = "momentum"
PAST_HORIZON = timedelta(days=7)
# How often calendars should re-fetch (RFC 7986 REFRESH-INTERVAL; X-PUBLISHED-TTL for Outlook).
REFRESH_EVERY = timedelta(hours=1)
# The VTIMEZONE covers the events' dates, plus this on either side.
ZONE_MARGIN = timedelta(days=31)
WEEK = timedelta(weeks=1)
OTHER_DAY = {0: "", -1: " the day before", 1: " the next day"}


@dataclass(frozen=True)
class _Entry:
    """One VEVENT: a meeting, or a weekly series' `slots` weeks from `first` without `skipped`."""

    uid: str
    first: Meeting
    slots: int = 1
    skipped: tuple[datetime, ...] = ()


def meetings_calendar(
    meetings: Iterable[Meeting],
    *,
    zone: ZoneInfo,
    now: datetime,
    policy: WindowPolicy,
    name: str,
    past_horizon: timedelta = PAST_HORIZON,
) -> bytes:
    """The feed of the user's `meetings` (as the store lists them, cancelled ones included)."""
    require_aware(now, "now")
    shown = sorted(
        (
            m
            for m in meetings
            if m.status is not MeetingStatus.CANCELLED and policy.closes_at(m) > now - past_horizon
        ),
        key=lambda m: m.start,
    )
    calendar = Calendar()
    calendar.prodid = PRODID
    calendar.version = "2.0"
    calendar.calscale = "GREGORIAN"
    calendar.method = "PUBLISH"
    calendar.calendar_name = name
    calendar.add("REFRESH-INTERVAL", REFRESH_EVERY, parameters={"VALUE": "DURATION"})
    calendar.add("X-PUBLISHED-TTL", vDuration(REFRESH_EVERY))
    entries = _entries(shown, zone, policy)
    calendar.add_component(_timezone(zone, entries, now))
    for entry in entries:
        calendar.add_component(_event(entry, zone, now, policy))
    feed: bytes = calendar.to_ical()  # icalendar leaves it untyped
    return feed


def describe_window(meeting: Meeting, zone: ZoneInfo, policy: WindowPolicy) -> str:
    """When the coach is reachable around `meeting`, in the user's local time."""
    start = meeting.start.astimezone(zone)
    opens = _clock(policy.opens_at(meeting), start, zone)
    closes = _clock(policy.closes_at(meeting), start, zone)
    before = f"{_minutes(policy.before)} before" if policy.before else "when it starts"
    after = f"{_minutes(policy.after)} after it ends" if policy.after else "when it ends"
    return f"You can reach your coach from {opens} ({before}) until {closes} ({after})."


def _entries(shown: Sequence[Meeting], zone: ZoneInfo, policy: WindowPolicy) -> list[_Entry]:
    series: dict[str, list[Meeting]] = {}
    entries = []
    for meeting in shown:
        if meeting.series_id is None:
            entries.append(_Entry(f"meeting-{meeting.id}@{UID_DOMAIN}", meeting))
        else:
            series.setdefault(meeting.series_id, []).append(meeting)
    for series_id, occurrences in series.items():
        entries.extend(_series_entries(series_id, occurrences, zone, policy))
    return sorted(entries, key=lambda e: e.first.start)


def _series_entries(
    series_id: str, occurrences: list[Meeting], zone: ZoneInfo, policy: WindowPolicy
) -> list[_Entry]:
    """The series as one recurring entry from the anchor that explains most occurrences, and
    the occurrences it does not explain as entries of their own."""
    best: dict[int, Meeting] = {}
    for anchor in occurrences:
        fits = _fitting(anchor, occurrences, zone, policy)
        if len(fits) > len(best):
            best = fits
    slots = max(best) + 1
    # An EXDATE is written as the RRULE writes its instance: the first start's wall clock
    # on that day, even where a DST change skips it (the app resolves both the same way).
    wall = best[0].start.astimezone(zone).replace(tzinfo=None)
    recurring = _Entry(
        f"series-{series_id}@{UID_DOMAIN}",
        best[0],
        slots,
        tuple((wall + WEEK * w).replace(tzinfo=zone) for w in range(slots) if w not in best),
    )
    explained = {m.id for m in best.values()}
    odd = [m for m in occurrences if m.id not in explained]
    return [recurring] + [_Entry(f"meeting-{m.id}@{UID_DOMAIN}", m) for m in odd]


def _fitting(
    anchor: Meeting, occurrences: list[Meeting], zone: ZoneInfo, policy: WindowPolicy
) -> dict[int, Meeting]:
    """The occurrences a weekly RRULE from `anchor` reproduces exactly, by week number."""
    later = [m for m in occurrences if m.start >= anchor.start]
    weeks = round((later[-1].start - anchor.start) / WEEK) + 1
    starts = weekly_starts(anchor.start, zone, weeks)
    window = describe_window(anchor, zone, policy)
    fits: dict[int, Meeting] = {}
    for meeting in later:
        week = round((meeting.start - anchor.start) / WEEK)
        if (
            starts[week] == meeting.start
            and meeting.duration_minutes == anchor.duration_minutes
            and describe_window(meeting, zone, policy) == window
        ):
            fits[week] = meeting
    return fits


def _timezone(zone: ZoneInfo, entries: Sequence[_Entry], now: datetime) -> Timezone:
    """The zone's rules over the entries' dates. Always there, even in a feed with no meetings,
    which then still holds the one component RFC 5545 asks for."""
    first = min((e.first.start for e in entries), default=now)
    last = max((e.first.end + WEEK * (e.slots - 1) for e in entries), default=now)
    return Timezone.from_tzid(
        zone.key, first_date=(first - ZONE_MARGIN).date(), last_date=(last + ZONE_MARGIN).date()
    )


def _event(entry: _Entry, zone: ZoneInfo, now: datetime, policy: WindowPolicy) -> Event:
    meeting = entry.first
    event = Event.new(
        uid=entry.uid,
        stamp=now,
        start=meeting.start.astimezone(zone),
        end=meeting.end.astimezone(zone),
        summary=SUMMARY,
        description=describe_window(meeting, zone, policy),
    )
    if entry.slots > 1:
        event.add("RRULE", vRecur(freq="WEEKLY", count=entry.slots))
    if entry.skipped:
        event.add("EXDATE", list(entry.skipped))
    return event


def _clock(moment: datetime, start: datetime, zone: ZoneInfo) -> str:
    """`HH:MM` in the user's zone, saying so when it falls on another day than the meeting."""
    local = moment.astimezone(zone)
    days = (local.date() - start.date()).days
    if days not in OTHER_DAY:
        return format_wall(local)
    return f"{local:%H:%M}{OTHER_DAY[days]}"


def _minutes(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 60)} min"
