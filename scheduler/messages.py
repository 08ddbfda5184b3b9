"""What the scheduler says to users. Pure: times in, text out, in the user's timezone.

A time on the same local day as `now` reads `10:45 (Europe/Paris)`; any other day gets the
date too (`Fri 4 Dec 2026, 09:00 (Europe/Paris)`). The zone is always named.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from core.zones import format_local

SCHEDULE_HINT = "Book one with `/schedule tomorrow 9am`."


def at(when: datetime, tz: ZoneInfo, now: datetime) -> str:
    local = when.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return f"{local:%H:%M} ({tz.key})"
    return format_local(when, tz)


def _next(next_opens: datetime | None, tz: ZoneInfo, now: datetime) -> str:
    if next_opens is None:
        return f"No meeting is scheduled yet. {SCHEDULE_HINT}"
    return f"Your next window opens {at(next_opens, tz, now)}."


def window_opened(until: datetime, tz: ZoneInfo, now: datetime) -> str:
    return (
        f"🟢 Your coaching window is open: I'm available until {at(until, tz, now)}. "
        "What's on your mind?"
    )


def window_continues(start: datetime, until: datetime, tz: ZoneInfo, now: datetime) -> str:
    """A meeting whose window opens while another one is still open: no new 'open'."""
    return (
        f"Your meeting at {at(start, tz, now)} is next, so I stay available until "
        f"{at(until, tz, now)}."
    )


def meeting_starting(start: datetime, tz: ZoneInfo, now: datetime) -> str:
    """Goal setting has no windows; the meeting is still worth a nudge."""
    return f"📅 Your coaching meeting is at {at(start, tz, now)}. I'm here whenever you're ready."


def closing_soon(until: datetime, tz: ZoneInfo, now: datetime) -> str:
    return (
        f"⏳ Heads-up: your coaching window closes at {at(until, tz, now)}. "
        "Anything to wrap up or commit to before then?"
    )


def window_closed(
    closed: datetime, next_opens: datetime | None, tz: ZoneInfo, now: datetime
) -> str:
    return f"🔴 Your coaching window closed at {at(closed, tz, now)}. {_next(next_opens, tz, now)}"


def window_missed(
    opened: datetime, closed: datetime, next_opens: datetime | None, tz: ZoneInfo, now: datetime
) -> str:
    """One message for a window that opened and closed while the scheduler was down."""
    return (
        f"Sorry, I couldn't ping you: your coaching window ran from {at(opened, tz, now)} "
        f"to {at(closed, tz, now)} while my scheduler was offline. {_next(next_opens, tz, now)}"
    )


def recap(start: datetime, text: str, tz: ZoneInfo) -> str:
    return f"📝 Recap of your coaching meeting on {format_local(start, tz)}:\n\n{text}"
