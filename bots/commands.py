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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bots.web_links import calendar_feed_url, sign_in_url
from core.access import Standing
from core.coach import Coach
from core.errors import CoachError, StoreUnavailable
from core.keys import LINK_MINUTES, SIGN_IN_MINUTES
from core.models import Goal, GoalStatus, Identity, Meeting, Phase, Role
from core.progress import GoalProgress, logged_text
from core.session import HistoryPage, Session
from core.text import plain_argument, without_controls
from core.texts import STORE_DOWN_COMMAND_TEXT, counted
from core.zones import UserTime, format_day

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
    standing: Standing
    tracking_started: bool = False  # the answer to /track: it says "tracking" once

    def describe(self, when: Callable[[datetime], str] | None = None) -> str:
        return self.standing.describe(when, tracking_started=self.tracking_started)


@dataclass(frozen=True)
class HistoryView:
    page: HistoryPage
    phase: Phase
    time: UserTime  # how the user reads times


@dataclass(frozen=True)
class GoalsView:
    goals: list[Goal]
    note: str = ""
    # Each goal's latest entry and streak, in the order of `goals`, and the zone of its dates.
    progress: list[GoalProgress] = field(default_factory=list)
    zone: ZoneInfo | None = None

    def progress_line(self, number: int, shown: Callable[[str], str] = str) -> str | None:
        """Goal `number`'s `last Mon 23 Nov 2026: ran 3 km · 🔥 3 weeks in a row`, the
        user's words passed through `shown` (a platform's escaping); None while none."""
        found = self.progress[number - 1] if number <= len(self.progress) else None
        if found is None or found.latest is None or self.zone is None:
            return None
        streak = (
            f"🔥 {counted(found.streak, 'week')} in a row"
            if found.streak
            else "no streak: nothing this week or last"
        )
        day = format_day(found.latest.created_at, self.zone)
        return f"last {day}: {shown(found.latest.text)} · {streak}"


@dataclass(frozen=True)
class MeetingsView:
    meetings: list[Meeting]
    time: UserTime
    note: str = ""


@dataclass(frozen=True)
class Booked:
    """What /schedule just booked, soonest first: one meeting, or a weekly series."""

    meetings: list[Meeting]
    time: UserTime


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


Result = (
    Reply | Help | AccessView | HistoryView | GoalsView | MeetingsView | Booked | Confirm | Export
)


class Ask:
    """One command's asker: their session with the coach, looked up once, when first needed
    (`/help` needs none, so it works with the database down)."""

    def __init__(self, coach: Coach, identity: Identity) -> None:
        self.coach, self.identity = coach, identity
        self._session: Session | None = None

    async def session(self) -> Session:
        if self._session is None:
            self._session = await self.coach.session(self.identity)
        return self._session


Handler = Callable[[Ask, str], Awaitable[Result]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    handler: Handler


async def _help(ask: Ask, args: str) -> Result:
    return Help([(command.usage, command.summary) for command in COMMANDS.values()])


async def _access(ask: Ask, args: str) -> Result:
    return AccessView(await (await ask.session()).access())


async def _history(ask: Ask, args: str) -> Result:
    page = _number(plain_argument(args) or "1", "page")
    you = await ask.session()
    return HistoryView(await you.history(page, HISTORY_PAGE_SIZE), you.user.phase, you.time)


async def _clear(ask: Ask, args: str) -> Result:
    if args.strip().lower() != CONFIRM_WORD:
        return Confirm(
            "This deletes your whole conversation history with me. Goals and meetings stay.",
            f"clear {CONFIRM_WORD}",
        )
    count = await (await ask.session()).clear_history()
    return Reply(f"Done: {counted(count, 'message')} deleted. Fresh page!")


async def goals_view(you: Session, note: str = "") -> GoalsView:
    """The user's active goals with their progress (also the Slack Home tab's)."""
    progress = await you.goals_progress()
    return GoalsView([p.goal for p in progress], note, progress, you.zone)


async def _goals(ask: Ask, args: str) -> Result:
    return await goals_view(await ask.session())


async def _goal(ask: Ask, args: str) -> Result:
    action, rest = _first_word(args)
    you = await ask.session()
    match plain_argument(action).lower():
        case "add":
            goal = await you.add_goal(rest)
            note = f"Saved: {goal.text}"
        case "done":
            goal = await you.close_goal(plain_argument(rest), GoalStatus.DONE)
            note = f"🎉 Done: {goal.text}. Well earned!"
        case "drop":
            goal = await you.close_goal(plain_argument(rest), GoalStatus.DROPPED)
            note = f"Dropped: {goal.text}."
        case _:
            return Reply(
                "Use `/goal add <goal>`, `/goal done <number>` or `/goal drop <number>`.", True
            )
    return await goals_view(you, note)


async def _log(ask: Ask, args: str) -> Result:
    ref, text = _first_word(args)
    if not ref:
        return Reply("Log progress on a goal: `/log <number> <what you did>` (see /goals).", True)
    you = await ask.session()
    return await goals_view(you, logged_text(await you.log_progress(plain_argument(ref), text)))


@dataclass(frozen=True)
class NumberedList:
    """`/commitments` and `/memory`: a numbered list, and one action on an item of it."""

    command: str  # "commitments"
    action: str  # "done": `/commitments done <n>`
    title: str
    empty: str
    hint: str


COMMITMENTS = NumberedList(
    "commitments", "done", "What you said you would do:",
    "No open commitments. When you tell me in a meeting what you will do, I'll keep it here "
    "and ask about it next time.",
    "Done one? `/commitments done <number>`",
)  # fmt: skip
MEMORY = NumberedList(
    "memory", "forget", "What I remember about you:",
    "I have no notes on you yet. After each meeting I note what matters to you (why your "
    "goals matter, what gets in the way, what works for you).",
    "Wrong or private? `/memory forget <number>`",
)  # fmt: skip


async def _numbered(
    shape: NumberedList,
    args: str,
    act: Callable[[str], Awaitable[str]],
    lines: Callable[[], Awaitable[list[str]]],
) -> Result:
    action, rest = _first_word(args)
    note = ""
    match plain_argument(action).lower():
        case "":
            pass
        case shape.action:
            if not plain_argument(rest):
                return Reply(
                    f"Which one? `/{shape.command} {shape.action} <number>` "
                    f"(see /{shape.command}).",
                    True,
                )
            note = await act(plain_argument(rest)) + "\n"
        case _:
            return Reply(
                f"Use `/{shape.command}` or `/{shape.command} {shape.action} <number>`.", True
            )
    numbered = [f"{i}. {line}" for i, line in enumerate(await lines(), 1)]
    if not numbered:
        return Reply(note + shape.empty)
    return Reply(note + shape.title + "\n" + "\n".join(numbered) + "\n" + shape.hint)


async def _commitments(ask: Ask, args: str) -> Result:
    you = await ask.session()

    async def done(ref: str) -> str:
        return f"✅ Done: {(await you.close_commitment(ref)).text}. That's a promise kept!"

    async def lines() -> list[str]:
        return [
            f"{c.text}{f' (due {c.due})' if c.due else ''}, said {you.local(c.created_at)}"
            for c in await you.commitments()
        ]

    return await _numbered(COMMITMENTS, args, done, lines)


async def _memory(ask: Ask, args: str) -> Result:
    you = await ask.session()

    async def forget(ref: str) -> str:
        return f"Forgotten: {await you.forget_memory(ref)}"

    return await _numbered(MEMORY, args, forget, you.memory)


async def _schedule(ask: Ask, args: str) -> Result:
    args = plain_argument(args)  # `９am` reads as `9am`; a pasted ZWSP is not a word
    if not args:
        return Reply(
            "When? For example `/schedule tomorrow 9am`, `/schedule fri 18:30 for 30m`, "
            "`/schedule next monday 7:00 weekly`.",
            error=True,
        )
    you = await ask.session()
    return Booked(await you.schedule(args), you.time)


async def _meetings(ask: Ask, args: str) -> Result:
    you = await ask.session()
    return MeetingsView(await you.meetings(), you.time)


async def _cancel(ask: Ask, args: str) -> Result:
    ref, scope = _first_word(plain_argument(args))
    if not ref:
        return Reply(
            "Which one? `/cancel <number>` or `/cancel <number> series` (see /meetings).", True
        )
    if scope.lower() not in {"", "series", "all", "weekly"}:
        # Cancelling is not undone: a word we do not understand cancels nothing.
        return Reply(f"Use `/cancel {ref}` or `/cancel {ref} series` (see /meetings).", True)
    series = bool(scope)
    you = await ask.session()
    cancelled = await you.cancel(ref, series=series)
    what = (
        f"{counted(len(cancelled.meetings), 'meeting')} of the series"
        if series
        else you.local(cancelled.meetings[0].start)
    )
    note = f"Cancelled: {what}."
    if cancelled.closed_window and not cancelled.standing.access.allowed:
        # Said here, where the user is, rather than by the scheduler: no window message follows.
        note += (
            " That was your open window, so your coaching window is closed now. "
            + cancelled.standing.describe()
        )
    return MeetingsView(await you.meetings(), you.time, note=note)


async def _track(ask: Ask, args: str) -> Result:
    you = await ask.session()
    await you.start_tracking()
    return AccessView(await you.access(), tracking_started=True)


async def _goalsetting(ask: Ask, args: str) -> Result:
    await (await ask.session()).back_to_goal_setting()
    return Reply("Back to goal setting: talk to me any time.")


async def _timezone(ask: Ask, args: str) -> Result:
    args = plain_argument(args)  # an invisible character must not make a zone unknown
    you = await ask.session()
    if not args:
        return Reply(
            f"Your timezone: {you.timezone_name}. Change it with `/timezone Europe/Paris`."
        )
    user = await you.set_timezone(args)
    return Reply(f"Timezone set to {user.timezone}. It's {you.local(you.now())} there.")


async def _export(ask: Ask, args: str) -> Result:
    return Export(await (await ask.session()).export())


async def _forget(ask: Ask, args: str) -> Result:
    if args.strip().lower() != CONFIRM_WORD:
        return Confirm(
            "This deletes everything I know about you: messages, goals, meetings, "
            "commitments and my notes on you. "
            "It can't be undone.",
            f"forget {CONFIRM_WORD}",
        )
    await (await ask.session()).forget()
    return Reply("Everything is deleted. If you come back, we start fresh. Take care!")


def _identity_name(identity: Identity) -> str:
    return f"{identity.platform.value.capitalize()} {identity.display_name or identity.external_id}"


async def _link(ask: Ask, args: str) -> Result:
    if not args.strip():
        code = await ask.coach.link_code(ask.identity)
        return Reply(
            f"Your link code: {code}. On your other account (Slack, Discord or the web page), "
            f"type /link {code} within {LINK_MINUTES} minutes: your goals, meetings and "
            "history become one."
        )
    linked = await ask.coach.link(ask.identity, args)
    names = " and ".join(_identity_name(i) for i in linked.identities)
    came = [counted(n, what) for n, what in ((linked.goals, "goal"),
            (linked.meetings, "meeting"), (linked.messages, "message")) if n]  # fmt: skip
    brought = f" ({', '.join(came)} came over from this account.)" if came else ""
    overlap = (
        f" {counted(len(linked.overlaps), 'pair')} of meetings overlap: see /meetings."
        if linked.overlaps
        else ""
    )
    return Reply(
        f"Linked: {names} are one Momentum user now, with one set of goals, meetings and "
        f"history.{brought}{overlap}"
    )


async def _unlink(ask: Ask, args: str) -> Result:
    unlinked = await ask.coach.unlink(ask.identity)
    left = ", ".join(_identity_name(i) for i in unlinked.remaining)
    return Reply(
        f"Unlinked. This account starts fresh; your goals, meetings and history stay with {left}."
    )


async def _web(ask: Ask, args: str) -> Result:
    settings = ask.coach.settings
    if not settings.web_enabled:
        return Reply("The web page isn't turned on here (the operator sets WEB_ENABLED).", True)
    code = await ask.coach.keys.sign_in_code(await ask.coach.user(ask.identity))
    return Reply(
        f"Your sign-in link for the web page, good once within {SIGN_IN_MINUTES} minutes: "
        f"{sign_in_url(settings, code)} (keep it to yourself)."
    )


async def _calendar(ask: Ask, args: str) -> Result:
    settings = ask.coach.settings
    if not settings.web_enabled:
        return Reply(
            "The calendar feed comes from the web server, which isn't turned on here "
            "(the operator sets WEB_ENABLED).",
            True,
        )
    key = await ask.coach.keys.calendar_key(await ask.coach.user(ask.identity))
    url = calendar_feed_url(settings, key)
    webcal = "webcal://" + url.partition("://")[2]  # Apple subscribes from webcal:// links
    return Reply(
        f"Your meetings as a calendar feed: {url}\n"
        "Subscribe to it in Google Calendar (Other calendars > From URL), Outlook (Add "
        f"calendar > Subscribe from web) or Apple Calendar ({webcal}). Keep it to yourself: "
        "anyone with it sees your meeting times. Asking again gives a new address, and the "
        "old one stops working."
    )


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command("help", "/help", "what I can do", _help),
        Command("access", "/access", "can you reach me now, and when next", _access),
        Command("history", "/history [page]", "our conversation, newest first", _history),
        Command("clear", "/clear", "delete our conversation history", _clear),
        Command("goals", "/goals", "your active goals", _goals),
        Command("goal", "/goal add|done|drop …", "add a goal, or finish or drop one", _goal),
        Command("log", "/log <number> <what you did>", "note progress on a goal", _log),
        Command(
            "commitments",
            "/commitments [done <number>]",
            "what you said you would do",
            _commitments,
        ),
        Command("schedule", "/schedule <when> [for 30m] [weekly]", "book a meeting", _schedule),
        Command("meetings", "/meetings", "your upcoming meetings", _meetings),
        Command("cancel", "/cancel <number> [series]", "cancel a meeting or series", _cancel),
        Command("track", "/track", "start tracking (needs a goal and a meeting)", _track),
        Command("goalsetting", "/goalsetting", "back to goal setting", _goalsetting),
        Command("timezone", "/timezone [Area/City]", "show or set your timezone", _timezone),
        Command("memory", "/memory [forget <number>]", "what I remember about you", _memory),
        Command("link", "/link [code]", "one user across Slack, Discord and the web", _link),
        Command("unlink", "/unlink", "take this account out of the link", _unlink),
        Command("web", "/web", "a sign-in link for the web page", _web),
        Command("calendar", "/calendar", "your meetings as a feed for your calendar", _calendar),
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
        return await command.handler(Ask(coach, identity), args)
    except CoachError as error:
        return Reply(error.user_text, error=True)
    except StoreUnavailable as error:
        log.error("store unavailable during /%s: %s", command.name, error)
        return Reply(STORE_DOWN_COMMAND_TEXT, True)


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


def when_for_result(result: Result) -> Callable[[datetime], str]:
    """Local times for the views that carry how their user reads times, UTC otherwise."""
    if isinstance(result, HistoryView | MeetingsView | Booked):
        return result.time
    if isinstance(result, AccessView):
        return result.standing.time
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
        case AccessView():
            return result.describe(when)
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
                "\n".join(_goal_entry(result, i, goal) for i, goal in enumerate(goals, 1))
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
        case Booked():
            return booked_text(result, when)
        case Confirm(prompt=prompt, command=command):
            return f"{prompt} To go ahead: /{command}"
        case Export():
            return result.json
    raise TypeError(f"unknown result {result!r}")


def _goal_entry(view: GoalsView, number: int, goal: Goal) -> str:
    progress = view.progress_line(number)
    return f"{number}. {goal.text}" + (f"\n   {progress}" if progress else "")


def booked_text(booked: Booked, when: Callable[[datetime], str]) -> str:
    """The meeting just booked, with its weekday and date in full view (so `next monday`
    shows which Monday), and for a series how it goes on; the whole list is /meetings'."""
    first, last = booked.meetings[0], booked.meetings[-1]
    at = f"{when(first.start)}, {first.duration_minutes} min"
    see = "See all your meetings with /meetings."
    if len(booked.meetings) == 1:
        return f"Booked: {at}. {see}"
    return (
        f"Booked weekly: {at}, and at the same time every week until {when(last.start)}: "
        f"{counted(len(booked.meetings), 'meeting')} in all. {see}"
    )


def phase_label(phase: Phase) -> str:
    return "goal setting" if phase is Phase.GOAL_SETTING else "tracking"
