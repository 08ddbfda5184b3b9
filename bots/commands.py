"""The command grammar, once for every platform: `/goal add Run 5k` -> a Coach call -> a result.

Results are platform-neutral data; each adapter renders them its own way (Block Kit, Discord
embeds, plain text). `as_text` is the plain rendering, used by the console and as a fallback.
Destructive commands answer with a `Confirm` the first time; running `command` from it (what a
confirmation button does) carries the action out.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.coach import Coach, CoachError, HistoryPage
from core.models import Access, Goal, GoalStatus, Identity, Meeting, Phase, Role, User
from core.store import StoreUnavailable
from core.text import plain_argument, without_controls
from core.timeparse import format_local

log = logging.getLogger(__name__)

HISTORY_PAGE_SIZE = 10
CONFIRM_WORD = "confirm"
# How alike a mistyped command must be to suggest one: catches "histroy", not "dance".
SUGGESTION_CUTOFF = 0.75


@dataclass(frozen=True)
class Reply:
    """A plain answer; `error` marks a request that could not be carried out."""

    text: str
    error: bool = False


@dataclass(frozen=True)
class Help:
    commands: list[tuple[str, str]]  # (usage, summary)


@dataclass(frozen=True)
class AccessView:
    access: Access
    text: str


@dataclass(frozen=True)
class HistoryView:
    page: HistoryPage
    user: User


@dataclass(frozen=True)
class GoalsView:
    goals: list[Goal]
    note: str = ""


@dataclass(frozen=True)
class MeetingsView:
    meetings: list[Meeting]
    user: User
    note: str = ""


@dataclass(frozen=True)
class Confirm:
    prompt: str
    command: str  # run this to go ahead, e.g. "clear confirm"


@dataclass(frozen=True)
class Export:
    data: dict[str, Any]

    @property
    def json(self) -> str:
        return json.dumps(self.data, indent=2, ensure_ascii=False)


Result = Reply | Help | AccessView | HistoryView | GoalsView | MeetingsView | Confirm | Export
Handler = Callable[[Coach, Identity, str], Awaitable[Result]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    handler: Handler


async def _help(coach: Coach, identity: Identity, args: str) -> Result:
    return Help([(command.usage, command.summary) for command in COMMANDS.values()])


async def _access(coach: Coach, identity: Identity, args: str) -> Result:
    access, text = await coach.access(identity)
    return AccessView(access, text)


async def _history(coach: Coach, identity: Identity, args: str) -> Result:
    page = _number(plain_argument(args) or "1", "page")
    return HistoryView(
        await coach.history(identity, page, HISTORY_PAGE_SIZE), await coach.user(identity)
    )


async def _clear(coach: Coach, identity: Identity, args: str) -> Result:
    if args.strip().lower() != CONFIRM_WORD:
        return Confirm(
            "This deletes your whole conversation history with me. Goals and meetings stay.",
            f"clear {CONFIRM_WORD}",
        )
    count = await coach.clear_history(identity)
    return Reply(f"Done: {count} message(s) deleted. Fresh page!")


async def _goals(coach: Coach, identity: Identity, args: str) -> Result:
    return GoalsView(await coach.goals(identity))


async def _goal(coach: Coach, identity: Identity, args: str) -> Result:
    action, rest = _first_word(args)
    match plain_argument(action).lower():
        case "add":
            goal = await coach.add_goal(identity, rest)
            return GoalsView(await coach.goals(identity), note=f"Saved: {goal.text}")
        case "done":
            goal = await coach.close_goal(identity, plain_argument(rest), GoalStatus.DONE)
            return GoalsView(
                await coach.goals(identity), note=f"🎉 Done: {goal.text}. Well earned!"
            )
        case "drop":
            goal = await coach.close_goal(identity, plain_argument(rest), GoalStatus.DROPPED)
            return GoalsView(await coach.goals(identity), note=f"Dropped: {goal.text}.")
    return Reply("Use `/goal add <goal>`, `/goal done <number>` or `/goal drop <number>`.", True)


async def _schedule(coach: Coach, identity: Identity, args: str) -> Result:
    args = plain_argument(args)  # `９am` reads as `9am`; a pasted ZWSP is not a word
    if not args:
        return Reply(
            "When? For example `/schedule tomorrow 9am`, `/schedule fri 18:30 for 30m`, "
            "`/schedule next monday 7:00 weekly`.",
            error=True,
        )
    new = await coach.schedule(identity, args)
    user = await coach.user(identity)
    first = format_local(new[0].start, coach.zone(user))
    note = (
        f"Scheduled {len(new)} weekly meetings, starting {first}."
        if len(new) > 1
        else f"Scheduled: {first}, {new[0].duration_minutes} min."
    )
    return MeetingsView(await coach.meetings(identity), user, note=note)


async def _meetings(coach: Coach, identity: Identity, args: str) -> Result:
    return MeetingsView(await coach.meetings(identity), await coach.user(identity))


async def _cancel(coach: Coach, identity: Identity, args: str) -> Result:
    ref, scope = _first_word(plain_argument(args))
    if not ref:
        return Reply(
            "Which one? `/cancel <number>` or `/cancel <number> series` (see /meetings).", True
        )
    if scope.lower() not in {"", "series", "all", "weekly"}:
        # Cancelling is not undone: a word we do not understand cancels nothing.
        return Reply(f"Use `/cancel {ref}` or `/cancel {ref} series` (see /meetings).", True)
    series = bool(scope)
    cancelled = await coach.cancel(identity, ref, series=series)
    user = await coach.user(identity)
    what = (
        f"{len(cancelled)} meetings of the series"
        if series
        else format_local(cancelled[0].start, coach.zone(user))
    )
    note = f"Cancelled: {what}."
    now = coach.clock()
    if user.phase is Phase.TRACKING and any(coach.policy.is_open(m, now) for m in cancelled):
        # Said here, where the user is, rather than by the scheduler: no window message follows.
        access, text = await coach.access(identity)
        if not access.allowed:
            note += f" That was your open window, so your coaching window is closed now. {text}"
    return MeetingsView(await coach.meetings(identity), user, note=note)


async def _track(coach: Coach, identity: Identity, args: str) -> Result:
    await coach.start_tracking(identity)
    _, text = await coach.access(identity)
    return Reply(f"You're in tracking now: I'll be here around your meetings. {text}")


async def _goalsetting(coach: Coach, identity: Identity, args: str) -> Result:
    await coach.back_to_goal_setting(identity)
    return Reply("Back to goal setting: talk to me any time.")


async def _timezone(coach: Coach, identity: Identity, args: str) -> Result:
    args = plain_argument(args)  # an invisible character must not make a zone unknown
    if not args:
        user = await coach.user(identity)
        current = user.timezone or f"{coach.settings.default_timezone} (default)"
        return Reply(f"Your timezone: {current}. Change it with `/timezone Europe/Paris`.")
    user = await coach.set_timezone(identity, args)
    return Reply(f"Timezone set to {user.timezone}. It's {coach.local(user, coach.clock())} there.")


async def _export(coach: Coach, identity: Identity, args: str) -> Result:
    return Export(await coach.export(identity))


async def _forget(coach: Coach, identity: Identity, args: str) -> Result:
    if args.strip().lower() != CONFIRM_WORD:
        return Confirm(
            "This deletes everything I know about you: messages, goals, meetings. "
            "It can't be undone.",
            f"forget {CONFIRM_WORD}",
        )
    await coach.forget(identity)
    return Reply("Everything is deleted. If you come back, we start fresh. Take care!")


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command("help", "/help", "what I can do", _help),
        Command("access", "/access", "can you reach me now, and when next", _access),
        Command("history", "/history [page]", "our conversation, newest first", _history),
        Command("clear", "/clear", "delete our conversation history", _clear),
        Command("goals", "/goals", "your active goals", _goals),
        Command("goal", "/goal add|done|drop …", "add a goal, or finish or drop one", _goal),
        Command("schedule", "/schedule <when> [for 30m] [weekly]", "book a meeting", _schedule),
        Command("meetings", "/meetings", "your upcoming meetings", _meetings),
        Command("cancel", "/cancel <number> [series]", "cancel a meeting or series", _cancel),
        Command("track", "/track", "start tracking (needs a goal and a meeting)", _track),
        Command("goalsetting", "/goalsetting", "back to goal setting", _goalsetting),
        Command("timezone", "/timezone [Area/City]", "show or set your timezone", _timezone),
        Command("export", "/export", "all your data as JSON", _export),
        Command("forget", "/forget", "delete all your data", _forget),
    ]
}


def is_command(text: str) -> bool:
    return text.lstrip().startswith("/")


async def run_command(coach: Coach, identity: Identity, text: str) -> Result:
    """Run one command line such as `/goal add Run 5k` (the slash is optional).

    Words may be separated by any run of whitespace (`/  goal\tadd  x`); control characters
    are dropped first, so they never reach a reply, the store or a terminal.
    """
    name, args = _first_word(without_controls(text).strip().removeprefix("/"))
    command = COMMANDS.get(plain_argument(name).lower())
    if command is None:
        return Reply(_unknown(plain_argument(name)), error=True)
    try:
        return await command.handler(coach, identity, args)
    except CoachError as error:
        return Reply(error.user_text, error=True)
    except StoreUnavailable as error:
        log.error("store unavailable during /%s: %s", command.name, error)
        return Reply("I can't reach my memory right now. Please try again in a minute.", True)


def _unknown(name: str) -> str:
    if not name:
        return "Which command? Try /help."
    close = difflib.get_close_matches(name.lower(), COMMANDS, n=1, cutoff=SUGGESTION_CUTOFF)
    hint = f" Did you mean /{close[0]}?" if close else ""
    return f"I don't know /{name[:40]}.{hint} Try /help."


def _first_word(text: str) -> tuple[str, str]:
    """`goal  add Run` -> (`goal`, `add Run`): split at the first run of whitespace."""
    first, *rest = text.split(maxsplit=1) or [""]
    return first, rest[0].strip() if rest else ""


def _number(text: str, what: str) -> int:
    # isdecimal, not isdigit: `²` is a digit that int() refuses. Any script's decimal digits
    # (`٢`, `２`) are numbers; a sign is read, so `-1` gets "Pages start at 1", not "a number".
    if not text.removeprefix("-").removeprefix("+").isdecimal():
        raise CoachError(f"The {what} should be a number, like `/history 2`.")
    return int(text)


# Plain-text rendering: the console's, and every platform's fallback.


def when_local(coach: Coach, user: User) -> Callable[[datetime], str]:
    return lambda moment: format_local(moment, coach.zone(user))


def when_for_result(coach: Coach, result: Result) -> Callable[[datetime], str]:
    """Local times for the views that carry their user, UTC otherwise. Looking the user up
    again would re-create one that `forget` has just deleted, and fail if the store is down."""
    if isinstance(result, HistoryView | MeetingsView):
        return when_local(coach, result.user)
    return in_utc


def in_utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def as_text(result: Result, when: Callable[[datetime], str] | None = None) -> str:
    """Render a result as plain text; `when` formats times (defaults to ISO UTC)."""
    when = when or in_utc
    match result:
        case Reply(text=text):
            return text
        case Help(commands=commands):
            width = max(len(usage) for usage, _ in commands)
            lines = [f"  {usage.ljust(width)}  {summary}" for usage, summary in commands]
            return "Commands:\n" + "\n".join(lines) + "\nAnything else you type goes to your coach."
        case AccessView(text=text):
            return text
        case HistoryView(page=page):
            if not page.total:
                return "No conversation yet. Say hi!"
            lines = [f"History, page {page.page} of {page.pages} (newest first):"]
            for message in page.messages:
                who = "You" if message.role is Role.USER else "Coach"
                cut = "" if message.complete else " [incomplete]"
                lines.append(f"[{when(message.created_at)}] {who}: {message.text}{cut}")
            if page.page < page.pages:
                lines.append(f"More: /history {page.page + 1}")
            return "\n".join(lines)
        case GoalsView(goals=goals, note=note):
            body = (
                "\n".join(f"{i}. {goal.text}" for i, goal in enumerate(goals, 1))
                if goals
                else "No active goals yet. Add one: /goal add <goal>"
            )
            return f"{note}\n{body}".strip() if note else f"Your goals:\n{body}"
        case MeetingsView(meetings=meetings, note=note):
            body = (
                "\n".join(
                    f"{i}. {when(m.start)}, {m.duration_minutes} min"
                    + (" (weekly)" if m.series_id else "")
                    for i, m in enumerate(meetings, 1)
                )
                if meetings
                else "No upcoming meetings. Book one: /schedule tomorrow 9am"
            )
            return f"{note}\n{body}".strip() if note else f"Your meetings:\n{body}"
        case Confirm(prompt=prompt, command=command):
            return f"{prompt} To go ahead: /{command}"
        case Export():
            return result.json
    raise TypeError(f"unknown result {result!r}")


def phase_label(phase: Phase) -> str:
    return "goal setting" if phase is Phase.GOAL_SETTING else "tracking"
