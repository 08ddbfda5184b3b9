"""The calendar feed (bots/web/calendar.py), read back the way a calendar app reads it.

Each test parses the bytes with icalendar and expands recurrences with dateutil (RFC 5545
rules: the RRULE repeats the local wall time, EXDATE removes one), then checks what a person
would see in Google, Apple or Outlook: which events, at what local time, with what text.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event

from bots.web.calendar import PAST_HORIZON, describe_window, meetings_calendar
from core.access import WindowPolicy
from core.models import Meeting, MeetingStatus
from core.zones import weekly_starts

BERLIN = ZoneInfo("Europe/Berlin")
DEFAULT = WindowPolicy()
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # Monday; Berlin is on CET (UTC+1)
MONDAY_9_BERLIN = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # Berlin moves to CEST on 29 March
CANCELLED, SCHEDULED = MeetingStatus.CANCELLED, MeetingStatus.SCHEDULED


def meeting(
    start: datetime,
    minutes: int = 45,
    *,
    series: str | None = None,
    status: MeetingStatus = MeetingStatus.SCHEDULED,
) -> Meeting:
    return Meeting(
        user_id="u1",
        start=start,
        duration_minutes=minutes,
        series_id=series,
        status=status,
        closes_at=start + timedelta(minutes=minutes) + DEFAULT.after,
    )


def weekly(
    first: datetime, count: int, *, cancelled: frozenset[int] = frozenset()
) -> list[Meeting]:
    """A series as Session.schedule books it in Berlin, with the `cancelled` weeks cancelled."""
    return [
        meeting(start, series="s1", status=CANCELLED if week in cancelled else SCHEDULED)
        for week, start in enumerate(weekly_starts(first, BERLIN, count))
    ]


def feed(
    meetings: list[Meeting],
    *,
    now: datetime = NOW,
    zone: ZoneInfo = BERLIN,
    policy: WindowPolicy = DEFAULT,
) -> Calendar:
    raw = meetings_calendar(meetings, zone=zone, now=now, policy=policy, name="Coaching")
    return Calendar.from_ical(raw)


def occurrences(event: Event) -> list[datetime]:
    """The starts a calendar app shows for `event`, in the event's own zone."""
    start = event.start
    rule = event.get("RRULE")
    if rule is None:
        return [start]
    skipped = set(event.exdates)
    expanded = rrulestr(rule.to_ical().decode(), dtstart=start)
    return [moment for moment in expanded if moment not in skipped]


def length(event: Event) -> timedelta:
    """How long the event really lasts (subtracting in its own zone would count wall time)."""
    return event.end.astimezone(UTC) - event.start.astimezone(UTC)


def shown_starts(calendar: Calendar) -> list[datetime]:
    return sorted(moment for event in calendar.events for moment in occurrences(event))


def test_a_meeting_is_one_event_in_the_users_zone_with_its_window() -> None:
    calendar = feed([meeting(MONDAY_9_BERLIN, 45)])

    [event] = calendar.events
    assert event["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert event.start == datetime(2026, 3, 9, 9, 0, tzinfo=BERLIN)
    assert event.end == datetime(2026, 3, 9, 9, 45, tzinfo=BERLIN)
    assert event.summary == "Coaching with Momentum"
    assert event.description == (
        "You can reach your coach from 08:30 (30 min before) until 10:45 (60 min after it ends)."
    )
    assert "RRULE" not in event
    assert [tz.tz_name for tz in calendar.timezones] == ["Europe/Berlin"]


def test_the_calendar_names_itself_and_asks_to_be_refetched_hourly() -> None:
    calendar = feed([])

    assert calendar["VERSION"] == "2.0"
    assert "Momentum" in calendar["PRODID"]
    assert calendar["X-WR-CALNAME"] == "Coaching"
    assert calendar.refresh_interval == timedelta(hours=1)
    assert calendar["REFRESH-INTERVAL"].params["VALUE"] == "DURATION"
    assert calendar["X-PUBLISHED-TTL"].to_ical() == b"PT1H"
    assert calendar.events == []
    assert calendar.timezones  # an empty feed still holds a component, as RFC 5545 asks


def test_the_window_follows_the_policy_and_says_when_it_crosses_midnight() -> None:
    just_after_midnight = datetime(2026, 3, 9, 23, 15, tzinfo=UTC)  # 00:15 Tue in Berlin
    policy = WindowPolicy(before=timedelta(minutes=45), after=timedelta(0))

    [event] = feed([meeting(just_after_midnight, 30)], policy=policy).events

    assert event.description == (
        "You can reach your coach from 23:30 the day before (45 min before) "
        "until 00:45 (when it ends)."
    )


def test_cancelled_meetings_and_long_closed_windows_are_gone() -> None:
    recently = NOW - timedelta(days=2)  # its window closed two days ago: still shown
    calendar = feed(
        [
            meeting(MONDAY_9_BERLIN, status=MeetingStatus.CANCELLED),
            meeting(NOW - PAST_HORIZON - timedelta(hours=3)),
            meeting(recently, status=MeetingStatus.CLOSED),
            meeting(NOW - timedelta(minutes=10), status=MeetingStatus.OPEN),
            meeting(MONDAY_9_BERLIN + timedelta(days=1)),
        ]
    )

    assert shown_starts(calendar) == [
        recently,
        NOW - timedelta(minutes=10),
        MONDAY_9_BERLIN + timedelta(days=1),
    ]


def test_a_weekly_series_is_one_recurring_event_without_its_cancelled_weeks() -> None:
    series = weekly(MONDAY_9_BERLIN, 8, cancelled=frozenset({2, 7}))

    [event] = feed(series).events

    assert event["RRULE"].to_ical() == b"FREQ=WEEKLY;COUNT=7"  # the last week is cancelled
    assert event.exdates == [datetime(2026, 3, 23, 9, 0, tzinfo=BERLIN)]
    assert shown_starts(feed(series)) == [
        m.start for m in series if m.status is not MeetingStatus.CANCELLED
    ]


def test_a_weekly_series_stays_at_nine_across_the_change_to_summer_time() -> None:
    series = weekly(MONDAY_9_BERLIN, 6)  # 9, 16, 23 Mar on CET; 30 Mar, 6, 13 Apr on CEST

    [event] = feed(series).events
    shown = occurrences(event)

    assert [(s.day, s.hour, s.minute) for s in shown] == [
        (9, 9, 0), (16, 9, 0), (23, 9, 0), (30, 9, 0), (6, 9, 0), (13, 9, 0),
    ]  # fmt: skip
    assert [s.astimezone(UTC).hour for s in shown] == [8, 8, 8, 7, 7, 7]
    assert shown == [m.start for m in series]
    change = next(tz for tz in feed(series).timezones)
    assert "20260329T030000" in change.to_ical().decode()  # the VTIMEZONE knows the change


def test_a_weekly_series_stays_at_nine_across_the_change_to_winter_time() -> None:
    first = datetime(2026, 10, 12, 7, 0, tzinfo=UTC)  # 09:00 CEST; CET from 25 October
    series = weekly(first, 4)

    [event] = feed(series, now=first - timedelta(days=1)).events

    assert {(s.hour, s.minute) for s in occurrences(event)} == {(9, 0)}
    assert occurrences(event) == [m.start for m in series]


@pytest.mark.parametrize("week", [0, 1, 3])
def test_a_moved_occurrence_is_its_own_event_and_its_week_is_skipped(week: int) -> None:
    series = weekly(MONDAY_9_BERLIN, 4)
    slot = series[week].start
    series[week] = series[week].model_copy(update={"start": slot + timedelta(hours=2)})

    events = feed(series).events

    [recurring] = [e for e in events if "RRULE" in e]
    [single] = [e for e in events if "RRULE" not in e]
    assert single.start == (slot + timedelta(hours=2)).astimezone(BERLIN)
    assert single.description.startswith("You can reach your coach from 10:30")
    inside = 0 < week < 3  # only a week between others needs skipping
    assert recurring.exdates == ([slot.astimezone(BERLIN)] if inside else [])
    assert shown_starts(feed(series)) == sorted(m.start for m in series)


def test_a_week_whose_window_the_clock_change_bends_is_its_own_event() -> None:
    # Sundays 03:15: on 29 March the clocks jump from 02:00 to 03:00, so that window opens
    # at 01:45, not 02:45; the series' one description would be wrong for that week.
    series = weekly(datetime(2026, 3, 22, 2, 15, tzinfo=UTC), 3)

    events = feed(series).events

    [recurring] = [e for e in events if "RRULE" in e]
    [single] = [e for e in events if "RRULE" not in e]
    assert recurring.description.startswith("You can reach your coach from 02:45")
    assert single.start == datetime(2026, 3, 29, 3, 15, tzinfo=BERLIN)
    assert single.description.startswith("You can reach your coach from 01:45")
    assert recurring.exdates == [datetime(2026, 3, 29, 3, 15, tzinfo=BERLIN)]


def test_a_refetch_updates_the_same_events_rather_than_adding_copies() -> None:
    series = weekly(MONDAY_9_BERLIN, 4)
    one_off = meeting(MONDAY_9_BERLIN + timedelta(days=30))
    before = feed([*series, one_off])
    # Later the first week's window is past the horizon, and the third week is cancelled.
    series[2] = series[2].model_copy(update={"status": MeetingStatus.CANCELLED})
    later = NOW + PAST_HORIZON + timedelta(days=8)
    after = feed([*series, one_off], now=later)

    def uids(calendar: Calendar) -> list[str]:
        return sorted(str(e["UID"]) for e in calendar.events)

    assert uids(before) == uids(after)
    assert len(set(uids(before))) == 2
    recurring = next(e for e in after.events if "RRULE" in e)
    assert recurring.start == datetime(2026, 3, 16, 9, 0, tzinfo=BERLIN)  # moves on, same UID
    assert shown_starts(after) == [series[1].start, series[3].start, one_off.start]


def test_the_same_meetings_give_the_same_bytes() -> None:
    series = weekly(MONDAY_9_BERLIN, 3)
    make = lambda: meetings_calendar(series, zone=BERLIN, now=NOW, policy=DEFAULT, name="C")  # noqa: E731

    assert make() == make()


ZONES = [BERLIN, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]


@st.composite
def users_meetings(draw: st.DrawFn) -> tuple[ZoneInfo, datetime, list[Meeting]]:
    """A zone, a `now`, and a store's worth of meetings: weekly series (some weeks cancelled,
    some moved, some past) and one-offs, at any minute (DST gaps and repeats included)."""
    zone = draw(st.sampled_from(ZONES))
    base = datetime(2026, 1, 1, tzinfo=UTC)
    minute = st.integers(0, 365 * 24 * 60)
    now = base + timedelta(minutes=draw(minute))
    meetings = []
    for number in range(draw(st.integers(0, 3))):
        first = base + timedelta(minutes=draw(minute))
        minutes = draw(st.sampled_from([15, 30, 45, 60, 90]))
        for start in weekly_starts(first, zone, draw(st.integers(1, 10))):
            fate = draw(st.sampled_from(["kept"] * 4 + ["cancelled", "moved"]))
            if fate == "moved":
                start += timedelta(minutes=draw(st.integers(-600, 600)))
            status = MeetingStatus.CANCELLED if fate == "cancelled" else MeetingStatus.SCHEDULED
            meetings.append(meeting(start, minutes, series=f"s{number}", status=status))
    for _ in range(draw(st.integers(0, 3))):
        meetings.append(meeting(base + timedelta(minutes=draw(minute)), 30))
    return zone, now, meetings


@settings(max_examples=150, deadline=None)
@given(users_meetings())
def test_every_shown_meeting_appears_exactly_once_with_its_time_length_and_window(
    case: tuple[ZoneInfo, datetime, list[Meeting]],
) -> None:
    zone, now, meetings = case
    calendar = feed(meetings, now=now, zone=zone)

    expected = Counter(
        (m.start, timedelta(minutes=m.duration_minutes), describe_window(m, zone, DEFAULT))
        for m in meetings
        if m.status is not MeetingStatus.CANCELLED and DEFAULT.closes_at(m) > now - PAST_HORIZON
    )
    shown = Counter(
        (moment.astimezone(UTC), length(event), event.description)
        for event in calendar.events
        for moment in occurrences(event)
    )
    assert shown == expected
    assert len({str(e["UID"]) for e in calendar.events}) == len(calendar.events)


def test_a_week_left_out_on_the_day_dst_skips_its_hour_is_not_shown_twice() -> None:
    """Weekly at 02:00 Berlin from 8 March: on 29 March 02:00 does not exist (03:00 CEST),
    and that week's window reads otherwise, so it is an event of its own; the series' EXDATE
    must name the instance as the RRULE writes it (02:00), or the week shows twice.
    Found by the property test below."""
    starts = [datetime(2026, 3, day, 1, 0, tzinfo=UTC) for day in (8, 15, 22, 29)]
    starts.append(datetime(2026, 4, 5, 0, 0, tzinfo=UTC))
    meetings = [meeting(start, 15, series="s0") for start in starts]
    calendar = feed(meetings, now=datetime(2026, 1, 1, tzinfo=UTC))
    shown = sorted(moment.astimezone(UTC) for e in calendar.events for moment in occurrences(e))
    assert shown == starts
