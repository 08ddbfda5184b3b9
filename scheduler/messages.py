"""What the scheduler says to users. Pure: times in, text out, in the user's timezone.

A time on the same local day as `now` reads `10:45 (Europe/Paris)`; any other day gets the
date too (`Fri 4 Dec 2026, 09:00 (Europe/Paris)`). The zone is always named.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from core.text import clip
from core.zones import format_local

SCHEDULE_HINT = "Book one with `/schedule tomorrow 9am`."
# The opening recalls at most this many open commitments, each at most this long.
RECALLED_COMMITMENTS = 3
RECALLED_CHARS = 120


def at(when: datetime, tz: ZoneInfo, now: datetime) -> str:
    local = when.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return f"{local:%H:%M} ({tz.key})"
    return format_local(when, tz)


def _next(next_opens: datetime | None, tz: ZoneInfo, now: datetime) -> str:
    if next_opens is None:
        return f"No meeting is scheduled yet. {SCHEDULE_HINT}"
    return f"Your next window opens {at(next_opens, tz, now)}."


def last_time(commitments: Sequence[str]) -> str:
    """"Last time you said you would ...": the open commitments, oldest first, bounded."""
    if not commitments:
        return ""
    shown = [clip(text, RECALLED_CHARS) for text in commitments[:RECALLED_COMMITMENTS]]
    more = len(commitments) - len(shown)
    if len(shown) == 1 and not more:
        return f"Last time you said you would {shown[0]}. How did it go?"
    lines = "\n".join(f"• {text}" for text in shown)
    rest = f"\n…and {more} more: see `/commitments`." if more else ""
    return f"Last time you said you would:\n{lines}{rest}\nHow did it go?"


def window_opened(
    until: datetime, tz: ZoneInfo, now: datetime, commitments: Sequence[str] = ()
) -> str:
    recalled = last_time(commitments)
    ask = recalled or "What's on your mind?"
    return f"🟢 Your coaching window is open: I'm available until {at(until, tz, now)}. {ask}"


def window_continues(start: datetime, until: datetime, tz: ZoneInfo, now: datetime) -> str:
    """A meeting whose window opens while another one is still open: no new 'open'."""
    return (
        f"Your meeting at {at(start, tz, now)} is next, so I stay available until "
        f"{at(until, tz, now)}."
    )


def meeting_starting(
    start: datetime, tz: ZoneInfo, now: datetime, commitments: Sequence[str] = ()
) -> str:
    """Goal setting has no windows; the meeting is still worth a nudge."""
    recalled = last_time(commitments)
    return (
        f"📅 Your coaching meeting is at {at(start, tz, now)}. I'm here whenever you're ready."
        + (f" {recalled}" if recalled else "")
    )


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
