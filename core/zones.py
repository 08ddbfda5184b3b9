"""Times as each user reads them, and the zone names they type.

Pure like core/timeparse.py (which reads times and durations): nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from difflib import get_close_matches
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

TIMEZONE_EXAMPLES = "'Europe/Paris' or 'America/New_York' (or 'UTC')"
MAX_ECHO_CHARS = 40  # how much of the user's own text we quote back in an error
DAY_ABBREVIATIONS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_ABBREVIATIONS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip
NOT_USER_ZONES = frozenset({"localtime", "posixrules", "Factory"})


class WhenError(ValueError):
    """Input the user can fix; the message is meant to be shown to them as is."""


def format_local(dt: datetime, tz: ZoneInfo) -> str:
    """Render an instant the way users read it back, e.g. `Fri 4 Dec 2026, 09:00 (Europe/Paris)`.

    Locale-independent, and always names the zone so nobody wonders "whose 9am?".
    """
    require_aware(dt, "dt")
    return f"{format_wall(dt.astimezone(tz))} ({tz.key})"


@dataclass(frozen=True)
class UserTime:
    """How to show times to one user: in their zone, or in the default one when they chose
    none (`chosen` False: Discord then shows each reader their own local time instead)."""

    zone: ZoneInfo
    chosen: bool

    def __call__(self, moment: datetime) -> str:
        return format_local(moment, self.zone)


def resolve_timezone(name: str) -> ZoneInfo:
    """Accept an IANA zone name in any letter case (spaces may stand for underscores)."""
    key = "_".join(name.split()).lower()
    if not key:
        raise WhenError(f"Which timezone are you in? Use a name like {TIMEZONE_EXAMPLES}.")
    canonical = _zone_names().get(key)
    if canonical is not None:
        return ZoneInfo(canonical)
    guess = _guess_zone(key)
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise WhenError(
        f"I don't know the timezone '{echo(name)}'.{hint} Use a name like {TIMEZONE_EXAMPLES}."
    )


def weekly_starts(first: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    """`count` weekly instants (UTC) from `first`, at the same local wall time in `zone`, so a
    series keeps its hour across DST changes. A wall time that a DST change skips or repeats
    resolves as RFC 5545 recurrences do (the offset in force before the change), so the
    calendar feed's RRULE yields these very instants."""
    local = first.astimezone(zone)
    return [
        (local.replace(tzinfo=None) + timedelta(weeks=week)).replace(tzinfo=zone).astimezone(UTC)
        for week in range(count)
    ]


def format_day(dt: datetime, tz: ZoneInfo) -> str:
    """The calendar day of an instant in `tz`, e.g. `Fri 4 Dec 2026` (a progress entry's date)."""
    require_aware(dt, "dt")
    return format_wall(dt.astimezone(tz)).split(",")[0]


def format_wall(wall: datetime) -> str:
    """`Fri 4 Dec 2026, 09:00`: the clock-and-calendar part of `format_local`."""
    day = f"{DAY_ABBREVIATIONS[wall.weekday()]} {wall.day} {MONTH_ABBREVIATIONS[wall.month - 1]}"
    return f"{day} {wall.year}, {wall:%H:%M}"


def echo(text: str) -> str:
    """The user's own words, trimmed, for quoting back in a message."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_ECHO_CHARS else text[: MAX_ECHO_CHARS - 1] + "…"


def require_aware(dt: datetime, name: str) -> None:
    """Naive datetimes would silently pick up the server's zone; refuse them loudly."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    """Lower-cased IANA names to their canonical spelling."""
    return {name.lower(): name for name in available_timezones() - NOT_USER_ZONES}


def _guess_zone(key: str) -> str | None:
    """A likely zone for a typo or a bare city (`paris` -> `Europe/Paris`), for the hint."""
    names = _zone_names()
    by_city = sorted(name for lower, name in names.items() if lower.rsplit("/", 1)[-1] == key)
    if by_city:
        return by_city[0]
    close = get_close_matches(key, list(names), n=1, cutoff=0.8)
    return names[close[0]] if close else None
