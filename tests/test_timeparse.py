"""Tests for core.timeparse: worked examples against a fixed `now`, and properties for any `now`.

NOW is Wednesday 2 Dec 2026, 11:30 UTC, which is 12:30 in Paris, 06:30 in New York,
17:00 in Kolkata and already Thursday 3 Dec, 00:30 in Auckland.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.timeparse import (
    MONTHS,
    WEEKDAYS,
    ScheduleRequest,
    parse_duration,
    parse_schedule_args,
    parse_when,
)
from core.zones import WhenError, format_local, resolve_timezone

NOW = datetime(2026, 12, 2, 11, 30, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
AUCKLAND = ZoneInfo("Pacific/Auckland")
UTC_ZONE = ZoneInfo("UTC")

ALL_ZONES = sorted(available_timezones() - {"localtime", "posixrules", "Factory"})
zones = st.sampled_from(ALL_ZONES).map(ZoneInfo)
nows = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
hours = st.integers(0, 23)
minutes = st.integers(0, 59)

# Markers of a Python object leaking into a message meant for a person.
LEAKS = ("Traceback", "datetime.", "datetime(", "ZoneInfo(", "timedelta(", "Error:", "\n")


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def is_skipped(wall: datetime, tz: ZoneInfo) -> bool:
    """PEP 495: in a spring-forward gap the later reading (fold=1) has the larger offset."""
    early = wall.replace(tzinfo=tz, fold=0).utcoffset()
    late = wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert early is not None and late is not None
    return late > early


def assert_user_facing(message: str) -> None:
    assert message.strip()
    assert message.rstrip()[-1] in ".?"
    assert not any(leak in message for leak in LEAKS), message


# --- parse_when: worked examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "text", "expected"),
    [
        # ISO forms (a past one is returned as read; scheduling rejects it later).
        (PARIS, "2026-12-04 09:00", utc(2026, 12, 4, 8, 0)),
        (PARIS, "2026-12-01T09:00", utc(2026, 12, 1, 8, 0)),
        (PARIS, "2026-12-01 9am", utc(2026, 12, 1, 8, 0)),
        (NEW_YORK, "2026-12-01 09:00", utc(2026, 12, 1, 14, 0)),
        (KOLKATA, "2026-12-05 10:15", utc(2026, 12, 5, 4, 45)),
        (UTC_ZONE, "2026-12-05 at 10:15", utc(2026, 12, 5, 10, 15)),
        # today / tomorrow
        (PARIS, "today 18:00", utc(2026, 12, 2, 17, 0)),
        (PARIS, "tomorrow 9am", utc(2026, 12, 3, 8, 0)),
        (PARIS, "tomorrow 9:30pm", utc(2026, 12, 3, 20, 30)),
        (PARIS, "  TOMORROW   at  9 A.M. ", utc(2026, 12, 3, 8, 0)),
        (NEW_YORK, "tomorrow 9am", utc(2026, 12, 3, 14, 0)),
        (KOLKATA, "tomorrow 9:30", utc(2026, 12, 3, 4, 0)),
        (KOLKATA, "today 18:00", utc(2026, 12, 2, 12, 30)),
        (AUCKLAND, "today 18:00", utc(2026, 12, 3, 5, 0)),  # Auckland is already on Thursday
        (AUCKLAND, "tomorrow 9am", utc(2026, 12, 3, 20, 0)),  # ...so tomorrow is Friday
        (UTC_ZONE, "tomorrow midnight", utc(2026, 12, 3, 0, 0)),
        # weekdays: the coming one, today if still ahead
        (PARIS, "fri 18:30", utc(2026, 12, 4, 17, 30)),
        (PARIS, "Friday 6pm", utc(2026, 12, 4, 17, 0)),
        (PARIS, "wed 13:00", utc(2026, 12, 2, 12, 0)),  # later today
        (PARIS, "wednesday 12:00", utc(2026, 12, 9, 11, 0)),  # passed today: next week
        (PARIS, "wed, 12:30", utc(2026, 12, 9, 11, 30)),  # exactly now is not "ahead"
        (NEW_YORK, "wed 6am", utc(2026, 12, 9, 11, 0)),
        (AUCKLAND, "fri 18:30", utc(2026, 12, 4, 5, 30)),
        (AUCKLAND, "thu 00:15", utc(2026, 12, 9, 11, 15)),
        (AUCKLAND, "thurs 01:00", utc(2026, 12, 2, 12, 0)),
        # next <weekday>: the first one after today
        (PARIS, "next monday 7:00", utc(2026, 12, 7, 6, 0)),
        (PARIS, "next wed 13:00", utc(2026, 12, 9, 12, 0)),  # today is Wednesday: a week on
        (PARIS, "next fri 9am", utc(2026, 12, 4, 8, 0)),
        (PARIS, "next wed 12:00", utc(2026, 12, 9, 11, 0)),
        (PARIS, "next thursday 9am", utc(2026, 12, 3, 8, 0)),  # tomorrow
        (AUCKLAND, "next thu 9am", utc(2026, 12, 9, 20, 0)),  # already Thursday there
        # the past, read as such (scheduling refuses it)
        (PARIS, "yesterday 9am", utc(2026, 12, 1, 8, 0)),
        (PARIS, "last monday 9am", utc(2026, 11, 30, 8, 0)),
        (PARIS, "last wed 13:00", utc(2026, 11, 25, 12, 0)),  # today is Wednesday: a week ago
        (PARIS, "2 hours ago", utc(2026, 12, 2, 9, 30)),
        # in <duration>
        (PARIS, "in 2 hours", utc(2026, 12, 2, 13, 30)),
        (PARIS, "in 90 min", utc(2026, 12, 2, 13, 0)),
        (AUCKLAND, "in 1h30", utc(2026, 12, 2, 13, 0)),
        # month and day: the next occurrence
        (PARIS, "dec 3 10:00", utc(2026, 12, 3, 9, 0)),
        (PARIS, "3 dec 10am", utc(2026, 12, 3, 9, 0)),
        (PARIS, "December 3rd 10am", utc(2026, 12, 3, 9, 0)),
        (PARIS, "dec 2 9am", utc(2027, 12, 2, 8, 0)),  # passed this year
        (PARIS, "5 jan 9am", utc(2027, 1, 5, 8, 0)),
        (PARIS, "feb 29 9am", utc(2028, 2, 29, 8, 0)),  # the next leap year
        # a bare time: the next time the clock shows it
        (UTC_ZONE, "noon", utc(2026, 12, 2, 12, 0)),
        (UTC_ZONE, "midnight", utc(2026, 12, 3, 0, 0)),
        (UTC_ZONE, "11:00", utc(2026, 12, 3, 11, 0)),
        (KOLKATA, "midnight", utc(2026, 12, 2, 18, 30)),
    ],
)
def test_parse_when_examples(tz: ZoneInfo, text: str, expected: datetime) -> None:
    result = parse_when(text, now=NOW, tz=tz)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9", time(9)),
        ("9am", time(9)),
        ("9 am", time(9)),
        ("9:30", time(9, 30)),
        ("09:30", time(9, 30)),
        ("21:15", time(21, 15)),
        ("21h15", time(21, 15)),
        ("9.30pm", time(21, 30)),
        ("9:30 PM", time(21, 30)),
        ("12am", time(0)),
        ("12pm", time(12)),
        ("noon", time(12)),
        ("midnight", time(0)),
        ("0:05", time(0, 5)),
    ],
)
def test_time_forms(text: str, expected: time) -> None:
    result = parse_when(f"tomorrow {text}", now=NOW, tz=PARIS)
    assert result.astimezone(PARIS).time() == expected
    assert result.astimezone(PARIS).date() == date(2026, 12, 3)


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow 25:00",
        "tomorrow 9:60",
        "tomorrow 13pm",
        "tomorrow 0am",
        "tomorrow 9:3",
        "tomorrow soon",
        "fri sharp",
    ],
)
def test_bad_times_say_what_a_time_looks_like(text: str) -> None:
    with pytest.raises(WhenError, match="as a time") as caught:
        parse_when(text, now=NOW, tz=PARIS)
    assert "9am" in str(caught.value)
    assert_user_facing(str(caught.value))


@pytest.mark.parametrize(
    ("text", "example"),
    [
        ("2026-12-01", "'2026-12-01 09:00'"),
        ("tomorrow", "'tomorrow 9am'"),
        ("Friday", "'friday 9am'"),
        ("next mon", "'next mon 9am'"),
        ("dec 3", "'dec 3 9am'"),
        ("3 dec", "'3 dec 09:00'"),
    ],
)
def test_a_day_without_a_time_asks_for_the_time(text: str, example: str) -> None:
    with pytest.raises(WhenError, match="need a time") as caught:
        parse_when(text, now=NOW, tz=PARIS)
    assert example in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "When should it be?"),
        ("whenever suits", "'tomorrow 9am'"),
        ("in 2", "Add a unit"),
        ("in a while", "'in 2 hours'"),
        ("2026-02-30 09:00", "isn't a real date"),
        ("feb 30 9am", "no 30 Feb"),
        ("9999-12-31 23:00", "too far away"),
        ("0001-01-01 00:00", "too far away"),
    ],
)
def test_parse_when_errors(text: str, fragment: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_when(text, now=NOW, tz=NEW_YORK if text.startswith("9999") else KOLKATA)
    assert fragment in str(caught.value)
    assert_user_facing(str(caught.value))


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("tomorrow 9am sharp", "'sharp'. Leave it out"),
        ("fri 18:30 with bob", "'with bob'. Leave them out"),
        ("in 2 hours or so", "'or so'. Leave them out"),
        ("meeting at 5 with bob", "'meeting' and 'with bob'. Leave them out"),
        ("soon tomorrow 9am", "'soon'. Leave it out"),
        ("2026-12-04 09:00 utc", "'utc'. Leave it out"),
        ("tomorrow 9am 25:00", "'25:00'. Leave it out"),
    ],
)
def test_words_around_a_time_are_named_not_guessed_past(text: str, unknown: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_when(text, now=NOW, tz=PARIS)
    assert str(caught.value).startswith(f"I didn't understand {unknown}, or try 'tomorrow 9am'")
    assert_user_facing(str(caught.value))


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow 9am please",
        "please, tomorrow at 9am",
        "tomorrow 9am, thanks!",
        "Tomorrow 9am. Thank you",
        "tomorrow 9am pls thx",
        "tomorrow 9am?",
    ],
)
def test_politeness_and_a_closing_stop_are_ignored(text: str) -> None:
    assert parse_when(text, now=NOW, tz=PARIS) == utc(2026, 12, 3, 8, 0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 12, 1, 10, 0), utc(2026, 12, 7, 8, 0)),  # a Tuesday: 6 days away
        (utc(2026, 12, 6, 10, 0), utc(2026, 12, 7, 8, 0)),  # a Sunday: tomorrow
        (utc(2026, 12, 7, 6, 0), utc(2026, 12, 14, 8, 0)),  # a Monday before 9am: next week
    ],
)
def test_next_monday_is_the_first_monday_after_today(now: datetime, expected: datetime) -> None:
    assert parse_when("next monday 9am", now=now, tz=PARIS) == expected


@pytest.mark.parametrize(
    ("text", "shown"), [("yesterday", "'Yesterday'"), ("last fri", "'Last fri'")]
)
def test_a_past_day_without_a_time_is_already_passed(text: str, shown: str) -> None:
    with pytest.raises(WhenError, match="has already passed") as caught:
        parse_when(text, now=NOW, tz=PARIS)
    assert str(caught.value).startswith(shown)
    assert_user_facing(str(caught.value))


def test_naive_now_is_a_programming_error_not_a_user_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware") as caught:
        parse_when("tomorrow 9am", now=datetime(2026, 12, 2, 11, 30), tz=PARIS)
    assert not isinstance(caught.value, WhenError)


# --- daylight saving ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "text", "shown", "instead"),
    [
        (PARIS, "2026-03-29 02:30", "Sun 29 Mar 2026, 02:30", "03:30"),
        (NEW_YORK, "2026-03-08 02:30", "Sun 8 Mar 2026, 02:30", "03:30"),
        (AUCKLAND, "2026-09-27 02:00", "Sun 27 Sep 2026, 02:00", "03:00"),
    ],
)
def test_a_time_skipped_by_the_clock_change_is_refused(
    tz: ZoneInfo, text: str, shown: str, instead: str
) -> None:
    with pytest.raises(WhenError, match="skip") as caught:
        parse_when(text, now=NOW, tz=tz)
    message = str(caught.value)
    assert shown in message and tz.key in message and f"Try {instead}" in message
    assert_user_facing(message)


def test_relative_forms_hit_the_gap_too() -> None:
    saturday = utc(2026, 3, 28, 12, 0)
    with pytest.raises(WhenError, match="skip"):
        parse_when("tomorrow 2:30", now=saturday, tz=PARIS)
    with pytest.raises(WhenError, match="skip"):
        parse_when("sun 2:30", now=saturday, tz=PARIS)


def test_a_skipped_time_already_behind_us_rolls_on_to_next_week() -> None:
    sunday_noon = utc(2026, 3, 29, 10, 0)
    assert parse_when("sun 2:30", now=sunday_noon, tz=PARIS) == utc(2026, 4, 5, 0, 30)


@pytest.mark.parametrize(
    ("tz", "text", "first"),
    [
        (PARIS, "2026-10-25 02:30", utc(2026, 10, 25, 0, 30)),  # still CEST (+2)
        (NEW_YORK, "2026-11-01 01:30", utc(2026, 11, 1, 5, 30)),  # still EDT (-4)
        (AUCKLAND, "2026-04-05 02:30", utc(2026, 4, 4, 13, 30)),  # still NZDT (+13)
    ],
)
def test_an_ambiguous_time_means_the_first_occurrence(
    tz: ZoneInfo, text: str, first: datetime
) -> None:
    result = parse_when(text, now=NOW, tz=tz)
    assert result == first
    second = datetime.fromisoformat(text).replace(tzinfo=tz, fold=1).astimezone(UTC)
    assert second - result == timedelta(hours=1)


def test_tomorrow_stays_ahead_when_a_clock_change_repeats_hours_across_midnight() -> None:
    # Antarctica/Casey went from 02:00 (+11) on 5 Mar 2010 back to 23:00 (+08) on 4 Mar.
    casey = ZoneInfo("Antarctica/Casey")
    second_pass_2330 = utc(2010, 3, 4, 15, 30)
    assert second_pass_2330.astimezone(casey).strftime("%d %H:%M") == "04 23:30"
    result = parse_when("tomorrow 00:30", now=second_pass_2330, tz=casey)
    assert result == utc(2010, 3, 4, 16, 30)  # the second 00:30, not the one 2 h ago
    assert parse_when("fri 00:30", now=second_pass_2330, tz=casey) > second_pass_2330


# --- parse_when: properties ---------------------------------------------------------------------


@given(now=nows, tz=zones, hour=hours, minute=minutes)
def test_tomorrow_is_the_next_local_day_at_that_time(
    now: datetime, tz: ZoneInfo, hour: int, minute: int
) -> None:
    local_now = now.astimezone(tz)
    wall = datetime.combine(local_now.date() + timedelta(days=1), time(hour, minute))
    try:
        result = parse_when(f"tomorrow {hour:02d}:{minute:02d}", now=now, tz=tz)
    except WhenError as error:
        assert is_skipped(wall, tz)
        assert_user_facing(str(error))
        return
    local = result.astimezone(tz)
    assert local.replace(tzinfo=None) == wall
    assert f"{hour:02d}:{minute:02d} ({tz.key})" in format_local(result, tz)
    # 0-48 h of wall-clock time, give or take a clock change in between.
    offset_change = max(timedelta(0), local_now.utcoffset() - local.utcoffset())  # type: ignore[operator]
    assert timedelta(0) < result - now < timedelta(hours=48) + offset_change


@given(
    now=nows,
    tz=zones,
    name=st.sampled_from(sorted(WEEKDAYS)),
    hour=hours,
    minute=minutes,
    following=st.booleans(),
)
def test_weekdays_land_on_that_day_within_a_week_or_two(
    now: datetime, tz: ZoneInfo, name: str, hour: int, minute: int, following: bool
) -> None:
    text = f"{'next ' if following else ''}{name} {hour}:{minute:02d}"
    today = now.astimezone(tz).date()
    try:
        result = parse_when(text, now=now, tz=tz)
    except WhenError as error:
        candidates = [today + timedelta(days=n) for n in range(15)]
        assert any(
            day.weekday() == WEEKDAYS[name]
            and is_skipped(datetime.combine(day, time(hour, minute)), tz)
            for day in candidates
        )
        assert_user_facing(str(error))
        return
    local = result.astimezone(tz)
    days_ahead = (local.date() - today).days
    assert local.weekday() == WEEKDAYS[name]
    assert (local.hour, local.minute) == (hour, minute)
    assert result > now
    assert days_ahead in (range(1, 8) if following else range(8))
    assert result - now <= timedelta(days=8)


@given(now=nows, tz=zones, name=st.sampled_from(sorted(WEEKDAYS)), hour=hours)
def test_next_weekday_differs_from_the_plain_one_only_on_that_very_day(
    now: datetime, tz: ZoneInfo, name: str, hour: int
) -> None:
    today = now.astimezone(tz).date()
    try:
        plain = parse_when(f"{name} {hour}:00", now=now, tz=tz)
        following = parse_when(f"next {name} {hour}:00", now=now, tz=tz)
    except WhenError as error:
        assert "skip" in str(error)
        return
    if plain.astimezone(tz).date() == today:
        assert following.astimezone(tz).date() == today + timedelta(days=7)
    else:
        assert following == plain


@given(
    now=nows, tz=zones, amount=st.integers(0, 10_000), unit=st.sampled_from(["min", "minutes", "m"])
)
def test_in_minutes_is_exactly_that_much_later(
    now: datetime, tz: ZoneInfo, amount: int, unit: str
) -> None:
    assert parse_when(f"in {amount} {unit}", now=now, tz=tz) == now + timedelta(minutes=amount)


@given(now=nows, tz=zones, amount=st.integers(1, 48))
def test_in_hours_is_never_in_the_past(now: datetime, tz: ZoneInfo, amount: int) -> None:
    assert parse_when(f"in {amount} hours", now=now, tz=tz) == now + timedelta(hours=amount)


@given(now=nows, tz=zones, hour=hours, minute=minutes)
def test_a_bare_time_is_the_next_time_the_clock_shows_it(
    now: datetime, tz: ZoneInfo, hour: int, minute: int
) -> None:
    try:
        result = parse_when(f"{hour}:{minute:02d}", now=now, tz=tz)
    except WhenError as error:
        assert "skip" in str(error)
        return
    local = result.astimezone(tz)
    assert result > now
    assert (local.hour, local.minute) == (hour, minute)
    assert (local.date() - now.astimezone(tz).date()).days in (0, 1)


@given(
    now=nows, tz=zones, month=st.sampled_from(sorted(MONTHS)), day=st.integers(1, 28), hour=hours
)
def test_a_month_and_day_is_the_next_occurrence(
    now: datetime, tz: ZoneInfo, month: str, day: int, hour: int
) -> None:
    try:
        result = parse_when(f"{month} {day} {hour}:00", now=now, tz=tz)
    except WhenError as error:
        assert "skip" in str(error)
        return
    local = result.astimezone(tz)
    assert result > now
    assert (local.month, local.day, local.hour) == (MONTHS[month], day, hour)
    assert result - now <= timedelta(days=367)


# --- parse_duration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("45", 45),
        ("45m", 45),
        ("45 min", 45),
        ("45 mins", 45),
        ("1h", 60),
        ("1 hr", 60),
        ("1h30", 90),
        ("1h30m", 90),
        ("1h 30m", 90),
        ("1 hour and 30 minutes", 90),
        ("1.5h", 90),
        (".5h", 30),
        ("1.33h", 80),  # rounded to whole minutes
        ("90 minutes", 90),
        ("2 hours", 120),
        (" 2  HOURS ", 120),
        ("0", 0),
    ],
)
def test_parse_duration_examples(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    "text", ["", "   ", "soon", "1.5", "90.5 min", "-5", "1h-30", "h", "1 day", "9999999", "1:30"]
)
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_duration(text)
    assert_user_facing(str(caught.value))


def test_durations_longer_than_a_year_are_refused() -> None:
    with pytest.raises(WhenError, match="longer than a year"):
        parse_duration("999999 hours")


@given(total=st.integers(0, 525_600))
def test_parse_duration_round_trips_minutes(total: int) -> None:
    hours_part, minutes_part = divmod(total, 60)
    spellings = [
        f"{total}",
        f"{total}m",
        f"{total} min",
        f"{total} minutes",
        f"{hours_part}h{minutes_part:02d}",
        f"{hours_part}h {minutes_part}m",
        f"{hours_part} hours {minutes_part} minutes",
    ]
    for spelling in spellings:
        assert parse_duration(spelling) == timedelta(minutes=total), spelling


@given(tenths=st.integers(0, 1000))
def test_decimal_hours_are_exact_minutes(tenths: int) -> None:
    assert parse_duration(f"{tenths // 10}.{tenths % 10}h") == timedelta(minutes=tenths * 6)


# --- parse_schedule_args ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow 9am", ScheduleRequest(utc(2026, 12, 3, 8, 0), timedelta(minutes=45), False)),
        (
            "tomorrow 9am for 30m weekly",
            ScheduleRequest(utc(2026, 12, 3, 8, 0), timedelta(minutes=30), True),
        ),
        (
            "tomorrow 9am weekly for 30m",
            ScheduleRequest(utc(2026, 12, 3, 8, 0), timedelta(minutes=30), True),
        ),
        (
            "weekly fri 18:30",
            ScheduleRequest(utc(2026, 12, 4, 17, 30), timedelta(minutes=45), True),
        ),
        ("every friday 6pm", ScheduleRequest(utc(2026, 12, 4, 17, 0), timedelta(minutes=45), True)),
        (
            "next monday 7:00 for 1h",
            ScheduleRequest(utc(2026, 12, 7, 6, 0), timedelta(hours=1), False),
        ),
        (
            "for 1 hour 30 minutes next monday 7:00",
            ScheduleRequest(utc(2026, 12, 7, 6, 0), timedelta(minutes=90), False),
        ),
        (
            "tomorrow 3pm for 30m weekly please",
            ScheduleRequest(utc(2026, 12, 3, 14, 0), timedelta(minutes=30), True),
        ),
        (
            "2026-12-05T09:00 for 10m",
            ScheduleRequest(utc(2026, 12, 5, 8, 0), timedelta(minutes=10), False),
        ),
        ("today 12:30 for 4h", ScheduleRequest(NOW, timedelta(hours=4), False)),  # now is fine
    ],
)
def test_parse_schedule_args_examples(text: str, expected: ScheduleRequest) -> None:
    assert parse_schedule_args(text, now=NOW, tz=PARIS) == expected


def test_schedule_request_is_frozen() -> None:
    request = parse_schedule_args("tomorrow 9am", now=NOW, tz=PARIS)
    with pytest.raises(AttributeError):
        request.weekly = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("today 8:00 for 30m", "Wed 2 Dec 2026, 08:00 (Europe/Paris)"),
        ("yesterday 9am", "Tue 1 Dec 2026, 09:00 (Europe/Paris)"),
        ("last monday 9am weekly", "Mon 30 Nov 2026, 09:00 (Europe/Paris)"),
        ("30 min ago for 1h", "Wed 2 Dec 2026, 12:00 (Europe/Paris)"),
        ("2026-01-05 09:00", "Mon 5 Jan 2026, 09:00 (Europe/Paris)"),
    ],
)
def test_a_past_time_is_refused_and_shown_in_the_users_zone(text: str, shown: str) -> None:
    with pytest.raises(WhenError, match="already passed") as caught:
        parse_schedule_args(text, now=NOW, tz=PARIS)
    assert shown in str(caught.value)
    assert_user_facing(str(caught.value))


@given(now=nows, tz=zones, hour=hours, minute=minutes)
def test_yesterday_is_always_already_passed(
    now: datetime, tz: ZoneInfo, hour: int, minute: int
) -> None:
    with pytest.raises(WhenError) as caught:
        parse_schedule_args(f"yesterday {hour}:{minute:02d}", now=now, tz=tz)
    assert "already passed" in str(caught.value) or "skip" in str(caught.value)


@pytest.mark.parametrize("length", ["5m", "9", "4h01", "5 hours", "0"])
def test_durations_out_of_bounds_name_the_bounds(length: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_schedule_args(f"tomorrow 9am for {length}", now=NOW, tz=PARIS)
    message = str(caught.value)
    assert "10 min" in message and "4 h" in message and "'for 45 min'" in message
    assert_user_facing(message)


def test_custom_bounds_and_default() -> None:
    request = parse_schedule_args(
        "tomorrow 9am",
        now=NOW,
        tz=PARIS,
        default_duration=timedelta(minutes=20),
        min_duration=timedelta(minutes=15),
        max_duration=timedelta(minutes=90),
    )
    assert request.duration == timedelta(minutes=20)
    with pytest.raises(WhenError, match="from 15 min to 1 h 30 min"):
        parse_schedule_args(
            "tomorrow 9am for 2h",
            now=NOW,
            tz=PARIS,
            min_duration=timedelta(minutes=15),
            max_duration=timedelta(minutes=90),
        )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "'tomorrow 9am for 30m'"),
        ("weekly for 30m", "When should we meet?"),
        ("whenever you like", "'tomorrow 9am for 30m'"),
        ("tomorrow 9am for ages", "after 'for'"),
        ("tomorrow 9am for", "after 'for'"),
        ("tomorrow 9am for 30m for 1h", "one length"),
        ("tomorrow", "need a time"),
        ("2026-03-29 02:30", "skip"),
        ("tomorrow 3pm for 30m weekly later", "I didn't understand 'later'"),
        ("tomorrow 3pm for 30m daily", "I didn't understand 'daily'"),
        ("tomorrow 3pm for 30m sharp weekly", "I didn't understand 'sharp'"),
        ("weekley tomorrow 3pm", "I didn't understand 'weekley'"),
    ],
)
def test_parse_schedule_args_errors(text: str, fragment: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_schedule_args(text, now=utc(2026, 3, 1, 0, 0), tz=PARIS)
    assert fragment in str(caught.value)
    assert_user_facing(str(caught.value))


@given(now=nows, tz=zones, hour=hours, length=st.integers(10, 240), data=st.data())
def test_trailing_parts_may_come_in_any_order(
    now: datetime, tz: ZoneInfo, hour: int, length: int, data: st.DataObject
) -> None:
    trailing = data.draw(st.permutations([f"for {length}m", "weekly"]))
    text = " ".join([f"in {hour} hours", *trailing])
    expected = ScheduleRequest(now + timedelta(hours=hour), timedelta(minutes=length), True)
    assert parse_schedule_args(text, now=now, tz=tz) == expected
    assert parse_schedule_args(f"weekly in {hour} hours for {length}m", now=now, tz=tz) == expected


schedule_texts = st.sampled_from(
    ["tomorrow 9am", "fri 18:30 for 30m", "next mon 7:00 weekly", "in 3 hours for 1h", "noon"]
)


@given(now=nows, tz=zones, text=schedule_texts, filler=st.sampled_from(["please", "thanks!"]))
def test_a_filler_word_changes_nothing(now: datetime, tz: ZoneInfo, text: str, filler: str) -> None:
    try:
        expected = parse_schedule_args(text, now=now, tz=tz)
    except WhenError as error:
        assert "skip" in str(error)
        return
    assert parse_schedule_args(f"{text} {filler}", now=now, tz=tz) == expected
    assert parse_schedule_args(f"{filler} {text}", now=now, tz=tz) == expected


@given(
    now=nows,
    tz=zones,
    text=schedule_texts,
    word=st.text("bcdfgjkqvxz", min_size=2, max_size=8),
    first=st.booleans(),
)
def test_any_other_word_is_named_in_the_error(
    now: datetime, tz: ZoneInfo, text: str, word: str, first: bool
) -> None:
    try:
        parse_schedule_args(text, now=now, tz=tz)
    except WhenError:
        return  # a skipped hour: its own message
    with pytest.raises(WhenError) as caught:
        parse_schedule_args(f"{word} {text}" if first else f"{text} {word}", now=now, tz=tz)
    assert str(caught.value).startswith(f"I didn't understand '{word}'. Leave it out")


# --- errors are always for people ----------------------------------------------------------------

WORDS = [
    "tomorrow",
    "today",
    "next",
    "fri",
    "monday",
    "in",
    "for",
    "weekly",
    "every",
    "at",
    "dec",
    "3",
    "9",
    "9am",
    "25:00",
    "12pm",
    "noon",
    "1h30",
    "min",
    "2026-03-29",
    "02:30",
    "-",
    ".",
    "feb",
    "29",
    "9999-12-31",
    "hours",
    "0",
    "yesterday",
    "last",
    "ago",
    "please",
    "sharp",
    "!",
]
soups = st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join)
texts = st.one_of(st.text(max_size=40), soups)


@given(text=texts, now=nows, tz=zones)
def test_any_input_either_parses_or_gets_a_friendly_message(
    text: str, now: datetime, tz: ZoneInfo
) -> None:
    for attempt in (
        lambda: parse_when(text, now=now, tz=tz),
        lambda: parse_duration(text),
        lambda: parse_schedule_args(text, now=now, tz=tz),
        lambda: resolve_timezone(text),
    ):
        try:
            attempt()
        except WhenError as error:
            assert_user_facing(str(error))


# --- format_local and resolve_timezone ----------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "tz", "expected"),
    [
        (utc(2026, 12, 4, 8, 0), PARIS, "Fri 4 Dec 2026, 09:00 (Europe/Paris)"),
        (utc(2026, 12, 4, 8, 0), NEW_YORK, "Fri 4 Dec 2026, 03:00 (America/New_York)"),
        (utc(2026, 12, 4, 20, 0), AUCKLAND, "Sat 5 Dec 2026, 09:00 (Pacific/Auckland)"),
        (utc(2026, 12, 4, 8, 0), KOLKATA, "Fri 4 Dec 2026, 13:30 (Asia/Kolkata)"),
        (utc(2026, 1, 31, 23, 5), UTC_ZONE, "Sat 31 Jan 2026, 23:05 (UTC)"),
    ],
)
def test_format_local(instant: datetime, tz: ZoneInfo, expected: str) -> None:
    assert format_local(instant, tz) == expected


def test_format_local_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_local(datetime(2026, 12, 4, 8, 0), PARIS)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Europe/Paris", "Europe/Paris"),
        ("europe/paris", "Europe/Paris"),
        (" AMERICA/NEW_YORK ", "America/New_York"),
        ("America/New York", "America/New_York"),
        ("asia/kolkata", "Asia/Kolkata"),
        ("utc", "UTC"),
        ("UTC", "UTC"),
        ("Etc/UTC", "Etc/UTC"),
    ],
)
def test_resolve_timezone(name: str, key: str) -> None:
    assert resolve_timezone(name) == ZoneInfo(key)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("Paris", "Did you mean 'Europe/Paris'?"),
        ("Europe/Pariss", "Did you mean 'Europe/Paris'?"),
        ("Mars/Olympus_Mons", ""),
        ("", "Which timezone"),
        ("localtime", ""),
        ("../../etc/passwd", ""),
    ],
)
def test_unknown_timezones_get_a_hint(name: str, hint: str) -> None:
    with pytest.raises(WhenError) as caught:
        resolve_timezone(name)
    message = str(caught.value)
    assert hint in message and "Europe/Paris" in message and "America/New_York" in message
    assert_user_facing(message)
