"""Slack-safe text and Block Kit for the coach's answers. Pure: data in, JSON-ready dicts out.

Two rules hold for every string that reaches Slack from here:
- `&`, `<` and `>` are escaped, so neither the model nor a user's goal text can produce
  `<!channel>`, `<!here>`, `<@U…>` or a disguised link. Slack asks for exactly these three
  escapes in every text field (mrkdwn, markdown blocks and streamed markdown alike).
- The shared grammar speaks of `/goal add …`; in Slack every command lives under `/coach`,
  so our own texts are rewritten to `/coach goal add …`. The model's words are not rewritten.

The coach's replies go out as standard Markdown (native streams and `markdown` blocks take
it as is), so no Markdown-to-mrkdwn conversion is needed; our own views use mrkdwn sections.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bots import voice
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
)
from bots.voice import (
    CONFIRM_LABEL,
    DECLINE_LABEL,
    PROPOSAL_TITLE,
    proposal_text,
    under_command,
)
from core.access import Standing
from core.models import Meeting, Phase, Proposal, Role
from core.proposals import Decision
from core.text import clip
from core.texts import counted

SLASH_COMMAND = "/coach"
SECTION_LIMIT = 3000  # characters in a section's text
HISTORY_ENTRY_CHARS = 600  # a long reply is cut in the history view; /coach export has it all
WARNING = "⚠️"

# action_ids of our buttons; the listeners in bots/slack/app.py match on these.
ACTION_HISTORY_PAGE = "coach_history_page"
ACTION_CONFIRM = "coach_confirm"
ACTION_CANCEL = "coach_cancel"
ACTION_PROPOSAL_CONFIRM = "coach_proposal_confirm"
ACTION_PROPOSAL_DECLINE = "coach_proposal_decline"

Blocks = list[dict[str, Any]]
When = Callable[[datetime], str]

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ENTITY = re.compile("&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}


@dataclass(frozen=True)
class SlackMessage:
    """What a chat.postMessage / respond() takes: `text` is the notification fallback."""

    text: str
    blocks: Blocks | None = None


def escape(text: str) -> str:
    """Neutralise Slack's control characters: no pings, no links, no channel references."""
    return text.translate(_ESCAPES)


def from_slack(text: str) -> str:
    """Text Slack sent us, with its three entities decoded (in one pass, so `&amp;lt;` is the
    `&lt;` the user typed). Slack's own markup (`<@U1>`, `<!here>`) stays as Slack wrote it."""
    return _ENTITY.sub(lambda match: _DECODED[match[1]], text)


def slack_commands(text: str) -> str:
    """`/goal add x` -> `/coach goal add x`, for the grammar's texts shown in Slack."""
    return under_command(text, SLASH_COMMAND)


def our_text(text: str) -> str:
    """One of Momentum's own sentences (persona, grammar, access), made Slack-safe."""
    return escape(slack_commands(text))


def section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(mrkdwn, SECTION_LIMIT)}}


def context(mrkdwn: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(mrkdwn, 2000)}]}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150)}}


def button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def coach_markdown(text: str) -> str:
    """The model's Markdown, escaped: safe for native streams and `markdown` blocks."""
    return escape(text)


def reply_blocks(markdown: str) -> Blocks:
    """A coach reply as one `markdown` block (standard Markdown, rendered by Slack)."""
    return [{"type": "markdown", "text": markdown}] if markdown else []


# --- Command results ---------------------------------------------------------------------


def result_message(result: Result, when: When) -> SlackMessage:
    """Render a command result for an ephemeral response. Export is handled by the caller."""
    match result:
        case Reply(text=text, error=error):
            body = our_text(text)
            return _simple(f"{WARNING} {body}" if error else body)
        case Help(commands=commands):
            return _help(commands)
        case AccessView(standing=standing):
            icon = "🟢" if standing.access.allowed else "⏸️"
            return _simple(f"{icon} {our_text(result.describe())}")
        case HistoryView():
            return _history(result, when)
        case GoalsView():
            return _goals(result)
        case MeetingsView(meetings=meetings, note=note):
            return _meetings(meetings, note, when)
        case Booked():
            return _simple(our_text(booked_text(result, when)))
        case Confirm():
            return confirm_message(result)
        case Export():
            return _simple("Your data export is ready.")
    raise TypeError(f"unknown result {result!r}")


def _simple(mrkdwn: str) -> SlackMessage:
    return SlackMessage(mrkdwn, [section(mrkdwn)])


def _help(commands: list[tuple[str, str]]) -> SlackMessage:
    lines = [f"`{our_text(usage)}`  {escape(summary)}" for usage, summary in commands]
    intro = "*Momentum commands*"
    outro = "Anything you write to me in our DM goes to your coach."
    return SlackMessage(
        intro + "\n" + "\n".join(lines),
        [section(intro), section("\n".join(lines)), context(outro)],
    )


def _history(view: HistoryView, when: When) -> SlackMessage:
    page = view.page
    if not page.total:
        return _simple("No conversation yet. Say hi in our DM!")
    title = f"History, page {page.page} of {page.pages} (newest first)"
    blocks: Blocks = [section(f"*{title}*")]
    for message in page.messages:
        who = "You" if message.role is Role.USER else "Coach"
        cut = "  _(incomplete)_" if not message.complete else ""
        text = escape(clip(message.text, HISTORY_ENTRY_CHARS))
        blocks.append(context(f"*{who}* · {escape(when(message.created_at))}{cut}"))
        blocks.append(section(text or "_(empty)_"))
    buttons = []
    if page.page > 1:
        buttons.append(button("◀ Newer", ACTION_HISTORY_PAGE, str(page.page - 1)))
    if page.page < page.pages:
        buttons.append(button("Older ▶", ACTION_HISTORY_PAGE, str(page.page + 1)))
    if buttons:
        blocks.append({"type": "actions", "block_id": "history_pages", "elements": buttons})
    return SlackMessage(title, blocks)


def goal_lines(view: GoalsView) -> str:
    """Numbered goals, each with its latest progress and streak beneath it (when logged)."""
    lines = []
    for number, goal in enumerate(view.goals, 1):
        lines.append(f"{number}. {escape(goal.text)}")
        if progress := view.progress_line(number, escape):
            lines.append(f"    ↳ {progress}")  # no italics: the user's `_` would end them
    return "\n".join(lines)


def _goals(view: GoalsView) -> SlackMessage:
    goals, note = view.goals, view.note
    blocks: Blocks = []
    if note:
        blocks.append(section(our_text(note)))
    if goals:
        blocks.append(section("*Your goals*\n" + goal_lines(view)))
        blocks.append(context(our_text(
            "Did something? /log <number> <what you did>. Finished one? /goal done <number>. "
            "New one? /goal add …"
        )))  # fmt: skip
    else:
        blocks.append(section(our_text("No active goals yet. Add one: /goal add <goal>")))
    fallback = our_text(note) if note else f"You have {counted(len(goals), 'active goal')}."
    return SlackMessage(fallback, blocks)


def meeting_line(meeting: Meeting, when: When) -> str:
    return voice.meeting_line(meeting, lambda moment: escape(when(moment)))


def _meetings(meetings: list[Meeting], note: str, when: When) -> SlackMessage:
    blocks: Blocks = []
    if note:
        blocks.append(section(our_text(note)))
    if meetings:
        lines = "\n".join(f"{n}. {meeting_line(m, when)}" for n, m in enumerate(meetings, 1))
        blocks.append(section("*Your meetings*\n" + lines))
        blocks.append(context(our_text("Cancel one: /cancel <number> (or add `series`).")))
    else:
        blocks.append(section(our_text("No upcoming meetings. Book one: /schedule tomorrow 9am")))
    fallback = our_text(note) if note else f"You have {counted(len(meetings), 'upcoming meeting')}."
    return SlackMessage(fallback, blocks)


def confirm_message(confirm: Confirm) -> SlackMessage:
    """A destructive command's question, with a button that runs `confirm.command`."""
    prompt = f"{WARNING} {our_text(confirm.prompt)}"
    buttons = [
        button("Yes, delete", ACTION_CONFIRM, confirm.command, "danger"),
        button("Keep everything", ACTION_CANCEL, "cancel"),
    ]
    return SlackMessage(
        prompt, [section(prompt), {"type": "actions", "block_id": "confirm", "elements": buttons}]
    )


CANCELLED = SlackMessage("Nothing was deleted.", [section("Okay, nothing was deleted.")])


def proposal_message(proposal: Proposal) -> SlackMessage:
    """A proposal of the coach, with buttons that carry its id (core/proposals.py)."""
    text = our_text(f"{PROPOSAL_TITLE} {proposal_text(proposal)}")
    buttons = [
        button(CONFIRM_LABEL, ACTION_PROPOSAL_CONFIRM, proposal.id, "primary"),
        button(DECLINE_LABEL, ACTION_PROPOSAL_DECLINE, proposal.id),
    ]
    return SlackMessage(
        text, [section(text), {"type": "actions", "block_id": "proposal", "elements": buttons}]
    )


def decided_message(decision: Decision) -> SlackMessage:
    """The card once answered: what was proposed, and what came of it (no buttons)."""
    asked = decision.proposal.summary if decision.proposal else ""
    text = our_text(decision.text)
    blocks = [section(text)] + ([context(our_text(asked))] if asked else [])
    return SlackMessage(text, blocks)


# --- The coach's own events ----------------------------------------------------------------


def failure_note(user_text: str) -> str:
    """The line that ends a reply the coach could not finish: never a frozen '…'."""
    return f"{WARNING} _{our_text(user_text)}_"


# --- App Home --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeFacts:
    phase: Phase
    standing: Standing
    goals: GoalsView  # active goals with their progress
    next_meeting: Meeting | None


def home_view(facts: HomeFacts, when: When) -> dict[str, Any]:
    """The Home tab: where the user stands, at a glance."""
    reachable = facts.standing.access.allowed
    reach = "🟢 *Reachable now.*" if reachable else "⏸️ *Not reachable right now.*"
    goals = goal_lines(facts.goals) or our_text("None yet. Add one: /goal add <goal>")
    if facts.goals.goals:
        goals += "\n" + our_text("Log progress: /log <number> <what you did>")
    meeting = (
        meeting_line(facts.next_meeting, when)
        if facts.next_meeting
        else our_text("None booked. /schedule tomorrow 9am")
    )
    blocks: Blocks = [
        header("Your Momentum"),
        section(f"*Phase:* {phase_label(facts.phase)}"),
        section(f"{reach} {our_text(facts.standing.describe())}"),
        {"type": "divider"},
        section(f"*Active goals*\n{goals}"),
        section(f"*Next meeting*\n{meeting}"),
        {"type": "divider"},
        context(our_text("Write to me in the Messages tab. Commands: /help")),
    ]
    return {"type": "home", "blocks": blocks}
