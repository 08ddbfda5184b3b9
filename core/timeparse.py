"""Read the meeting times, durations and timezones that users type, in their own words.

Everything here is pure: the current instant (`now`) and the user's zone are explicit
arguments and the clock is never read, so every answer is reproducible (DESIGN rule 3).
Results are aware UTC datetimes; the user's zone only reads input and renders output.

Choices, written down so neither callers nor users meet surprises:
- `fri 18:30` is the coming Friday: today if 18:30 is still ahead, otherwise within a week.
- `next fri 18:30` is the first Friday after today, what most people mean: on a Wednesday
  the Friday two days later, on a Thursday tomorrow, on a Friday the one a week later.
  It differs from `fri 18:30` only when said on a Friday. The answer to `/schedule` shows
  the weekday and the date, so a different reading is seen at once.
- `yesterday 9am`, `last mon 9am` (the latest Monday before today) and `2 hours ago` are
  read as the past times they are, so scheduling answers "already passed", not "unknown".
- A bare time (`18:30`) is the next time the clock shows it: today or tomorrow.
- `midnight` is 00:00 at the start of the named day; `noon` is 12:00.
- A local time skipped by a spring-forward change is an error (we do not guess); a local
  time that happens twice (fall-back) means the first occurrence (fold=0). The one
  exception keeps relative forms out of the past: if the first occurrence of "tomorrow"
  has already gone by (only when a clock change repeats hours across midnight), the second.
- Dated forms (`today 8:00`, ISO dates) may lie in the past: `parse_when` returns them as
  read, and `parse_schedule_args` refuses them with the time shown in the user's zone.
- Durations are whole minutes (`1.33h` rounds to 80 min) and at most a year.
- Politeness is harmless: `please`, `pls`, `thanks`, `thank you` and a sentence's closing
  `.`, `!` or `?` are ignored. Any other word that is not part of a time is named in the
  error ("I didn't understand 'soon'"): we never guess past a word we do not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from core.zones import (
    MONTH_ABBREVIATIONS,
    WhenError,
    echo,
    format_local,
    format_wall,
    require_aware,
)

WHEN_EXAMPLES = "'tomorrow 9am', 'fri 18:30' or 'in 2 hours'"
DURATION_EXAMPLES = "'45m', '1h30' or '2 hours'"
SCHEDULE_EXAMPLES = "'tomorrow 9am for 30m', 'fri 18:30 weekly' or 'next monday 7:00 for 1h'"
TIME_EXAMPLES = "'9am', '09:30' or '21:15'"

DEFAULT_DURATION = timedelta(minutes=45)
MIN_DURATION = timedelta(minutes=10)
MAX_DURATION = timedelta(hours=4)
LONGEST_DURATION = timedelta(days=365)  # beyond this a typo is likelier than a plan
YEARS_TO_FIND_A_DATE = 8  # enough to reach the next 29 Feb, even across 2100
LONGEST_WHEN_WORDS = 6  # `in 1 hour and 30 minutes`: no time takes more words than this
FILLER_WORDS = frozenset({"please", "pls", "plz", "thanks", "thx"})
ONE_WEEK = timedelta(weeks=1)
ONE_DAY = timedelta(days=1)

WEEKDAYS: dict[str, int] = {
    "monday": 0, "mon": 0,
    "tuesday": 1, "tue": 1, "tues": 1,
    "wednesday": 2, "wed": 2, "weds": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3,
    "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}  # fmt: skip
MONTHS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3,
    "april": 4, "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7,
    "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
NAMED_TIMES: dict[str, time] = {"noon": time(12), "midday": time(12), "midnight": time(0)}


def _alternation(words: dict[str, int]) -> str:
    """A regex alternation, longest word first so `monday` never stops at `mon`."""
    return "|".join(sorted(words, key=len, reverse=True))


_WEEKDAY = _alternation(WEEKDAYS)
_MONTH = _alternation(MONTHS)
_ORDINAL = r"(?:st|nd|rd|th)?"
_REST = r"(?: (.+))?"  # the time part; absent means the user gave only a day

_TIME_RE = re.compile(r"(\d{1,2})(?:[:.h](\d{2}))? ?(am|pm)?", re.ASCII)
_IN_RE = re.compile(r"in (.+)", re.ASCII)
_ISO_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[t ](.+))?", re.ASCII)
_AGO_RE = re.compile(r"(.+) ago", re.ASCII)
_RELATIVE_DAY_RE = re.compile(r"(today|tomorrow|yesterday)" + _REST, re.ASCII)
_WEEKDAY_RE = re.compile(rf"(?:(next|last) )?({_WEEKDAY}){_REST}", re.ASCII)
_MONTH_DAY_RE = re.compile(rf"({_MONTH}) (\d{{1,2}}){_ORDINAL}{_REST}", re.ASCII)
_DAY_MONTH_RE = re.compile(rf"(\d{{1,2}}){_ORDINAL} ({_MONTH}){_REST}", re.ASCII)

_HOUR_UNITS = r"(?:hours|hour|hrs|hr|h)"
_MINUTE_UNITS = r"(?:minutes|minute|mins|min|m)"
_MINUTES_RE = re.compile(rf"(\d{{1,6}}) ?{_MINUTE_UNITS}?", re.ASCII)
_HOURS_RE = re.compile(rf"(\d{{1,6}}(?:\.\d{{1,6}})?|\.\d{{1,6}}) ?{_HOUR_UNITS}", re.ASCII)
_HOURS_MINUTES_RE = re.compile(
    rf"(\d{{1,6}}) ?{_HOUR_UNITS} ?(?:and )?(\d{{1,6}}) ?{_MINUTE_UNITS}?", re.ASCII
)


class _UnknownWords(Exception):
    """Words around a time that we could read: named back to the user, never guessed past."""

    def __init__(self, *parts: str) -> None:
        super().__init__(*parts)
        self.parts = [part for part in parts if part]

    def message(self, examples: str) -> str:
        quoted = " and ".join(f"'{echo(part)}'" for part in self.parts)
        them = "them" if len(" ".join(self.parts).split()) > 1 else "it"
        return f"I didn't understand {quoted}. Leave {them} out, or try {examples}."


@dataclass(frozen=True)
class ScheduleRequest:
    """A meeting the user asked for: when it starts (UTC), how long, and whether it repeats."""

    start: datetime
    duration: timedelta
    weekly: bool


def parse_duration(text: str) -> timedelta:
    """Read a length of time; a bare number means minutes, because meetings are short."""
    cleaned = " ".join(text.lower().split())
    if not cleaned:
        raise WhenError(f"How long should it be? For example {DURATION_EXAMPLES}.")
    minutes = _duration_minutes(cleaned)
    if minutes is None:
        raise WhenError(
            f"I couldn't read '{echo(text)}' as a length of time. Try {DURATION_EXAMPLES}."
        )
    if minutes > LONGEST_DURATION // timedelta(minutes=1):
        raise WhenError("That's longer than a year. Please give a shorter length of time.")
    return timedelta(minutes=minutes)


def parse_when(text: str, *, now: datetime, tz: ZoneInfo) -> datetime:
    """Read when something happens, in the user's zone, as an aware UTC datetime."""
    return _parse_when(text, now=now, tz=tz, examples=WHEN_EXAMPLES)


def parse_schedule_args(
    text: str,
    *,
    now: datetime,
    tz: ZoneInfo,
    default_duration: timedelta = DEFAULT_DURATION,
    min_duration: timedelta = MIN_DURATION,
    max_duration: timedelta = MAX_DURATION,
) -> ScheduleRequest:
    """Read `<when> [for <duration>] [weekly]`, trailing parts in any order.

    `weekly` may also lead (`weekly fri 18:30`), and `every fri 18:30` means the same.
    The start must not be in the past; the duration must lie within the bounds.
    """
    words = _normalize(text).split()
    words, weekly = _take_weekly(words)
    words, duration = _take_duration(words, default_duration)
    if not words:
        raise WhenError(f"When should we meet? For example {SCHEDULE_EXAMPLES}.")
    start = _parse_when(" ".join(words), now=now, tz=tz, examples=SCHEDULE_EXAMPLES)
    if start < now:
        raise WhenError(
            f"That time has already passed: {format_local(start, tz)}. "
            "Please pick a time in the future, e.g. 'tomorrow 9am'."
        )
    if not min_duration <= duration <= max_duration:
        raise WhenError(
            f"A meeting can last from {_format_duration(min_duration)} to "
            f"{_format_duration(max_duration)}, so {_format_duration(duration)} won't fit. "
            f"Try e.g. 'for {_format_duration(default_duration)}'."
        )
    return ScheduleRequest(start=start, duration=duration, weekly=weekly)


# --- when ------------------------------------------------------------------------------------


def _parse_when(text: str, *, now: datetime, tz: ZoneInfo, examples: str) -> datetime:
    """`parse_when`, with the examples to offer when the text matches no form at all."""
    require_aware(now, "now")
    cleaned = _normalize(text)
    if not cleaned:
        raise WhenError(f"When should it be? For example {examples}.")
    try:
        found = _read_when(cleaned, now.astimezone(UTC), tz)
        if found is None:
            _name_words_around_a_time(cleaned.split(), now.astimezone(UTC), tz)
    except _UnknownWords as unknown:
        raise WhenError(unknown.message(examples)) from None
    except OverflowError:
        raise WhenError("That date is too far away for me. Please pick a nearer one.") from None
    if found is None:
        raise WhenError(f"I couldn't understand '{echo(text)}' as a time. Try {examples}.")
    return found


def _name_words_around_a_time(words: list[str], now: datetime, tz: ZoneInfo) -> None:
    """No form matches the whole text: find the longest (then leftmost) run of words that is
    one, and name the words around it; a run that errs (a day with no time, an hour the clock
    skips) says so instead. Returns only when no run of the words is a time at all."""
    for length in range(min(len(words) - 1, LONGEST_WHEN_WORDS), 0, -1):
        for start in range(len(words) - length + 1):
            before, after = " ".join(words[:start]), " ".join(words[start + length :])
            try:
                found = _read_when(" ".join(words[start : start + length]), now, tz)
            except _UnknownWords as inner:
                raise _UnknownWords(before, *inner.parts, after) from None
            if found is not None:
                raise _UnknownWords(before, after)


def _read_when(text: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """Try each form in turn; None when none matches, WhenError when one matches but is wrong."""
    today = now.astimezone(tz).date()
    if match := _IN_RE.fullmatch(text):
        return now + _read_offset(match[1])
    if (match := _AGO_RE.fullmatch(text)) and (minutes := _duration_minutes(match[1])) is not None:
        return now - timedelta(minutes=minutes)
    if match := _ISO_RE.fullmatch(text):
        day = _make_date(int(match[1]), int(match[2]), int(match[3]))
        return _to_utc(day, _read_time(match[4], day.isoformat()), tz)
    if match := _RELATIVE_DAY_RE.fullmatch(text):
        said = match[1]
        if said == "yesterday":
            return _to_utc(today - ONE_DAY, _read_past_time(match[2], said), tz)
        at = _read_time(match[2], said)
        if said == "today":
            return _to_utc(today, at, tz)
        return _still_ahead(_to_utc(today + ONE_DAY, at, tz), now, tz)
    if match := _WEEKDAY_RE.fullmatch(text):
        which, weekday = match[1], WEEKDAYS[match[2]]
        said = f"{which} {match[2]}" if which else match[2]
        if which == "last":  # the latest one before today
            day = today - ONE_DAY * ((today.weekday() - weekday - 1) % 7 + 1)
            return _to_utc(day, _read_past_time(match[3], said), tz)
        at = _read_time(match[3], said)
        if which == "next":  # the first one after today
            day = today + ONE_DAY * ((weekday - today.weekday() - 1) % 7 + 1)
            return _still_ahead(_to_utc(day, at, tz), now, tz)
        return _to_utc(_coming(today, at, now, tz, weekday=weekday), at, tz)
    if match := _MONTH_DAY_RE.fullmatch(text):
        return _month_day(MONTHS[match[1]], int(match[2]), match[3], match[0], now, tz)
    if match := _DAY_MONTH_RE.fullmatch(text):
        return _month_day(MONTHS[match[2]], int(match[1]), match[3], match[0], now, tz)
    if (bare := _parse_time(text)) is not None:
        return _to_utc(_coming(today, bare, now, tz), bare, tz)
    return None


def _read_offset(text: str) -> timedelta:
    """`in <duration>`: a unit is required, since `in 2` could mean minutes or hours."""
    if not re.search("[a-z]", text):
        raise WhenError("In how long? Add a unit, e.g. 'in 2 hours' or 'in 90 min'.")
    try:
        return parse_duration(text)
    except WhenError:
        words = text.split()
        for end in range(len(words) - 1, 0, -1):  # `in 2 hours sharp`: name `sharp`
            head = " ".join(words[:end])
            if re.search("[a-z]", head) and _duration_minutes(head) is not None:
                raise _UnknownWords(" ".join(words[end:])) from None
        raise WhenError(
            f"I couldn't read 'in {echo(text)}'. Try 'in 2 hours' or 'in 90 min'."
        ) from None


def _month_day(
    month: int, day_of_month: int, time_text: str | None, said: str, now: datetime, tz: ZoneInfo
) -> datetime:
    """`dec 3 10:00` / `3 dec 10am`: the next time that date and time come round."""
    day_words = said.removesuffix(f" {time_text}") if time_text else said
    at = _read_time(time_text, day_words)
    try:
        date(2000, month, day_of_month)  # a leap year: accepts every date that ever exists
    except ValueError:
        raise WhenError(
            f"There's no {day_of_month} {MONTH_ABBREVIATIONS[month - 1]}. "
            f"Please check the date, e.g. 'dec 3 10:00'."
        ) from None
    local_year = now.astimezone(tz).year
    for year in range(local_year, local_year + YEARS_TO_FIND_A_DATE + 1):
        try:
            day = date(year, month, day_of_month)
        except ValueError:  # 29 Feb outside a leap year
            continue
        if _wall_instant(day, at, tz) > now:
            return _to_utc(day, at, tz)
    raise OverflowError("no such date within reach")


def _coming(today: date, at: time, now: datetime, tz: ZoneInfo, weekday: int | None = None) -> date:
    """The first day (from today, on `weekday` if given) whose `at` is still ahead of `now`.

    A time skipped by a clock change still counts as ahead or behind by where it would
    have fallen, so a past one moves on rather than raising for a day already gone.
    """
    if weekday is None:
        day, step = today, ONE_DAY
    else:
        day, step = today + ONE_DAY * ((weekday - today.weekday()) % 7), ONE_WEEK
    while _wall_instant(day, at, tz) <= now:
        day += step
    return day


def _still_ahead(instant: datetime, now: datetime, tz: ZoneInfo) -> datetime:
    """The second occurrence of an ambiguous time if the first has passed.

    Only a fall-back that repeats hours across midnight (Antarctica/Casey, 2010) can put
    "tomorrow" behind `now`; a relative form must still never land in the past.
    """
    if instant > now:
        return instant
    return instant.astimezone(tz).replace(fold=1).astimezone(UTC)


def _read_time(text: str | None, day_words: str) -> time:
    """The time part of a dated form; its absence or a typo gets a pointed message."""
    if text is None:
        example = f"{day_words} 09:00" if day_words[:1].isdigit() else f"{day_words} 9am"
        raise WhenError(f"I need a time as well as the day, e.g. '{example}'.")
    at = _parse_time(text)
    if at is None:
        words = text.split()
        for end in range(len(words) - 1, 0, -1):  # `9am sharp`: name `sharp`
            if _parse_time(" ".join(words[:end])) is not None:
                raise _UnknownWords(" ".join(words[end:]))
        raise WhenError(f"I couldn't read '{echo(text)}' as a time. Try {TIME_EXAMPLES}.")
    return at


def _read_past_time(text: str | None, day_words: str) -> time:
    """The time of a day already gone: without one, the day itself is what has passed."""
    if text is None:
        raise WhenError(
            f"'{day_words.capitalize()}' has already passed. "
            "Please pick a time in the future, e.g. 'tomorrow 9am'."
        )
    return _read_time(text, day_words)


def _parse_time(text: str) -> time | None:
    """`9`, `9am`, `9:30`, `21:15`, `9.30pm`, `21h15`, `noon`, `midnight`; None if not a time."""
    if text in NAMED_TIMES:
        return NAMED_TIMES[text]
    match = _TIME_RE.fullmatch(text)
    if match is None:
        return None
    hour, minute, suffix = int(match[1]), int(match[2] or 0), match[3]
    if minute > 59:
        return None
    if suffix is None:
        return time(hour, minute) if hour <= 23 else None
    if not 1 <= hour <= 12:
        return None
    return time(hour % 12 + (12 if suffix == "pm" else 0), minute)


def _make_date(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise WhenError(
            f"{year:04d}-{month:02d}-{day:02d} isn't a real date. "
            "Please check it, e.g. '2026-12-01 09:00'."
        ) from None


def _wall_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time (fold=0), even if the clock skips that time."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time; ambiguous means the first one, skipped is an error."""
    wall = datetime.combine(day, at)
    instant = _wall_instant(day, at, tz)
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        shifted = instant.astimezone(tz)
        raise WhenError(
            f"{format_wall(wall)} doesn't exist in {tz.key}: the clocks skip that time "
            f"for a daylight-saving change. Try {shifted:%H:%M} instead, or another time."
        )
    return instant


def _normalize(text: str) -> str:
    """Lower case, single spaces, no commas, no filler (`tomorrow at 9 a.m., please!`)."""
    text = text.lower().replace(",", " ").replace("a.m.", "am").replace("p.m.", "pm")
    text = text.replace("thank you", "thanks")
    words = (word.rstrip(".!?") for word in text.split())
    return " ".join(word for word in words if word and word != "at" and word not in FILLER_WORDS)


# --- schedule arguments ------------------------------------------------------------------------


def _take_weekly(words: list[str]) -> tuple[list[str], bool]:
    """Remove `weekly`, `every week` and the `every` of `every fri`; report if any was there."""
    kept: list[str] = []
    weekly = False
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word == "weekly" or (word == "every" and (following in WEEKDAYS or following == "week")):
            weekly = True
        elif word == "week" and index > 0 and words[index - 1] == "every":
            continue
        else:
            kept.append(word)
    return kept, weekly


def _take_duration(words: list[str], default: timedelta) -> tuple[list[str], timedelta]:
    """Remove `for <duration>`, taking the longest run of words after `for` that parses."""
    if words.count("for") > 1:
        raise WhenError("Please give one length, e.g. 'tomorrow 9am for 30m'.")
    if "for" not in words:
        return words, default
    start = words.index("for") + 1
    for end in range(len(words), start, -1):
        try:
            duration = parse_duration(" ".join(words[start:end]))
        except WhenError:
            continue
        return words[: start - 1] + words[end:], duration
    raise WhenError(
        "I couldn't read how long after 'for'. Try 'for 30m', 'for 1h30' or 'for 2 hours'."
    )


# --- durations and small helpers ---------------------------------------------------------------


def _duration_minutes(text: str) -> int | None:
    """Whole minutes in a cleaned duration text, or None if it is not one."""
    if match := _MINUTES_RE.fullmatch(text):
        return int(match[1])
    if match := _HOURS_MINUTES_RE.fullmatch(text):
        return int(match[1]) * 60 + int(match[2])
    if match := _HOURS_RE.fullmatch(text):
        return int((Decimal(match[1]) * 60).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return None


def _format_duration(duration: timedelta) -> str:
    """`45 min`, `4 h`, `1 h 30 min`: short, and readable back by `parse_duration`."""
    hours, minutes = divmod(duration // timedelta(minutes=1), 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


