"""Discord text and embeds for the coach's answers. Pure: data in, discord.py objects out.

- Times: Discord tells a bot nothing about a user's timezone, so until the user sets one we
  show `<t:UNIX:F>`, which every Discord client renders in its reader's local time. Once the
  user has a timezone, we show that zone's wall time, as every other platform does.
- The shared grammar speaks of `/goal add …`; in Discord every command lives under `/coach`,
  so our own texts are rewritten to `/coach goal add …`. The model's words are not rewritten.
- Nothing here can ping anyone: the adapter sends everything with `AllowedMentions.none()`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import discord

from bots.commands import (
    AccessView,
    Booked,
    Confirm,
    Export,
    GoalsView,
    Help,
    HistoryView,
    MeetingsView,
    Reply,
    Result,
    booked_text,
    phase_label,
    when_for_result,
)
from bots.split import closed_fences
from bots.voice import meeting_line, under_command
from core.models import Meeting, Role
from core.text import clip
from core.zones import UserTime

When = Callable[[datetime], str]

SLASH_COMMAND = "/coach"
MESSAGE_LIMIT = 2000  # characters of content in one message
EMBED_DESCRIPTION_LIMIT = 4096
HISTORY_ENTRY_CHARS = 300  # a long reply is cut in the history view; /coach export has it all
EXPORT_FILENAME = "momentum-export.json"
WARNING = "⚠️"
COLOUR_COACH = discord.Colour.orange()
COLOUR_OPEN = discord.Colour.green()
COLOUR_CLOSED = discord.Colour.light_grey()
COLOUR_ERROR = discord.Colour.red()

def discord_commands(text: str) -> str:
    """`/goal add x` -> `/coach goal add x`, for the grammar's texts shown in Discord."""
    return under_command(text, SLASH_COMMAND)


def discord_time(moment: datetime) -> str:
    """`<t:UNIX:F>`: each reader's client shows it in their own local time."""
    return discord.utils.format_dt(moment, "F")


def discord_when(time: UserTime) -> When:
    """The user's own zone once they set one; until then Discord's local-time timestamp."""
    return time if time.chosen else discord_time


def access_text(view: AccessView) -> str:
    """The access sentence with Discord times."""
    return discord_commands(view.describe(discord_when(view.standing.time)))


def when_for_answer(result: Result) -> When:
    """How the times of `result` show on Discord."""
    when = when_for_result(result)
    return discord_when(when) if isinstance(when, UserTime) else when


def failure_note(user_text: str) -> str:
    """The line that ends a reply the coach could not finish: never a frozen half-sentence."""
    return f"{WARNING} *{discord_commands(user_text)}*"


@dataclass(frozen=True)
class Answer:
    """What one ephemeral response carries; `file` only for exports."""

    content: str | None = None
    embed: discord.Embed | None = None
    export_json: str | None = None

    def file(self) -> discord.File | None:
        """A fresh File each time: discord.py consumes the buffer when it sends it."""
        if self.export_json is None:
            return None
        return discord.File(io.BytesIO(self.export_json.encode()), filename=EXPORT_FILENAME)


def answer_for(result: Result) -> Answer:
    """Render a command result. A `Confirm` renders its question; the caller adds the buttons."""
    when = when_for_answer(result)
    match result:
        case Reply(text=text, error=error):
            body = discord_commands(text)
            return Answer(content=f"{WARNING} {body}" if error else body)
        case Help(commands=commands):
            return Answer(embed=help_embed(commands))
        case AccessView(standing=standing):
            icon = "🟢" if standing.access.allowed else "⏸️"
            return Answer(content=f"{icon} {access_text(result)}")
        case HistoryView():
            return history_answer(result, when)
        case GoalsView():
            return goals_answer(result)
        case MeetingsView(meetings=meetings, note=note):
            return meetings_answer(meetings, note, when)
        case Booked():
            return Answer(content=discord_commands(booked_text(result, when)))
        case Confirm(prompt=prompt):
            return Answer(content=f"{WARNING} {discord_commands(prompt)}")
        case Export():
            return Answer(content="Here is everything I keep about you.", export_json=result.json)
    raise TypeError(f"unknown result {result!r}")


def _embed(title: str, lines: list[str], colour: discord.Colour = COLOUR_COACH) -> discord.Embed:
    return discord.Embed(
        title=title, description=clip("\n".join(lines), EMBED_DESCRIPTION_LIMIT), colour=colour
    )


def help_embed(commands: list[tuple[str, str]]) -> discord.Embed:
    lines = [f"`{discord_commands(usage)}`: {summary}" for usage, summary in commands]
    embed = _embed("Momentum commands", lines)
    embed.set_footer(text="In a coaching channel or our DM, anything you write goes to your coach.")
    return embed


def shown_as_typed(text: str) -> str:
    """A user's own words (a goal) in our lists: Markdown escaped, so a stray ``` or `>>>`
    cannot swallow the entries after it. Our own notes around them carry no Markdown."""
    return discord.utils.escape_markdown(text)


def history_entry(text: str, role: Role) -> str:
    """One message in the history embed, contained: the user's words escaped as typed; the
    coach's Markdown kept, with a code block the clip (or the model) left open closed."""
    text = clip(text, HISTORY_ENTRY_CHARS)
    return shown_as_typed(text) if role is Role.USER else closed_fences(text)


def history_answer(view: HistoryView, when: When) -> Answer:
    page = view.page
    if not page.total:
        return Answer(content="No conversation yet. Say hi!")
    lines = []
    for message in page.messages:
        who = "You" if message.role is Role.USER else "Coach"
        cut = " *(incomplete)*" if not message.complete else ""
        text = history_entry(message.text, message.role) or "*(empty)*"
        lines.append(f"**{who}** · {when(message.created_at)}{cut}\n{text}")
    embed = discord.Embed(
        title=f"History, page {page.page} of {page.pages} (newest first)",
        description=clip("\n\n".join(lines), EMBED_DESCRIPTION_LIMIT),
        colour=COLOUR_COACH,
    )
    if page.page < page.pages:
        embed.set_footer(text=f"Older: {SLASH_COMMAND} history page:{page.page + 1}")
    embed.add_field(name="Phase", value=phase_label(view.phase))
    return Answer(embed=embed)


def goals_answer(view: GoalsView) -> Answer:
    """Goals and their progress escaped as typed; the note (Saved/Done/Dropped/Logged) quotes
    the user's words as typed too."""
    note = discord_commands(shown_as_typed(view.note))
    if not view.goals:
        empty = discord_commands("No active goals yet. Add one: /goal add <goal>")
        return Answer(content=f"{note}\n{empty}".strip())
    lines = []
    for n, goal in enumerate(view.goals, 1):
        lines.append(f"{n}. {shown_as_typed(goal.text)}")
        if progress := view.progress_line(n, shown_as_typed):
            lines[-1] += f"\n  ↳ {progress}"
    embed = _embed("Your goals", lines)
    embed.set_footer(text=f"Did something? {SLASH_COMMAND} log. Finished one? {SLASH_COMMAND} "
                     f"goal done. New one? {SLASH_COMMAND} goal add.")
    return Answer(content=note or None, embed=embed)


def meetings_answer(meetings: list[Meeting], note: str, when: When) -> Answer:
    note = discord_commands(note)
    if not meetings:
        empty = discord_commands("No upcoming meetings. Book one: /schedule tomorrow 9am")
        return Answer(content=f"{note}\n{empty}".strip())
    lines = [f"{n}. {meeting_line(m, when)}" for n, m in enumerate(meetings, 1)]
    embed = _embed("Your meetings", lines)
    embed.set_footer(text=f"Cancel one: {SLASH_COMMAND} cancel (series: True for all of a series)")
    return Answer(content=note or None, embed=embed)
