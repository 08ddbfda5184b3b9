"""The coach's events as what a platform shows: the one place that phrases a reply.

`spoken(events, voice)` turns `Coach.reply`'s events into the text deltas and the failure
note that the streaming renderer (bots/stream.py) or the console writes; each platform
supplies a small `Voice` for what differs (escaping, its command names, how it shows a time,
where the welcome goes).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from datetime import datetime
from typing import Protocol

from bots.commands import COMMANDS
from bots.stream import Failure
from core.events import Chunk, Denied, Done, Failed, Proposed, ReplyEvent, SafetyReply, Welcome
from core.models import Meeting, Proposal
from core.zones import UserTime

When = Callable[[datetime], str]

_COMMAND_REFERENCE = re.compile(
    r"(?<![\w/.:-])/(" + "|".join(sorted(map(re.escape, COMMANDS), key=len, reverse=True)) + r")\b"
)


def under_command(text: str, command: str) -> str:
    """`/goal add x` -> `/coach goal add x`: the grammar's texts, where every command lives
    under one slash command (Slack and Discord). The model's words are not rewritten."""
    return _COMMAND_REFERENCE.sub(rf"{command} \1", text)


def meeting_line(meeting: Meeting, when: When) -> str:
    """`Fri 4 Dec 2026, 09:00 (Europe/Paris), 45 min (weekly)`."""
    weekly = " (weekly)" if meeting.series_id else ""
    return f"{when(meeting.start)}, {meeting.duration_minutes} min{weekly}"


PROPOSAL_TITLE = "Shall I?"
CONFIRM_LABEL, DECLINE_LABEL = "Confirm", "Decline"


def proposal_text(proposal: Proposal) -> str:
    """A proposal as every platform asks it: what would happen, and that nothing does
    until the user says so."""
    return f"{proposal.summary}. Nothing changes unless you confirm."


class Voice(Protocol):
    def coach(self, text: str) -> str:
        """The model's words, made safe to show (nothing in them may ping or inject)."""
        ...

    def ours(self, text: str) -> str:
        """One of our own sentences (a refusal, the safety reply), in the platform's words."""
        ...

    def note(self, text: str) -> str:
        """A failure, as the line that ends a reply."""
        ...

    def when(self, time: UserTime) -> When:
        """How this platform shows a time to this user."""
        ...

    async def welcome(self, text: str) -> str:
        """Show the welcome; what opens the reply with it ("" when it was shown apart)."""
        ...

    async def duplicate(self) -> None:
        """The message was answered already: undo what the platform showed meanwhile."""
        ...

    async def propose(self, proposal: Proposal) -> None:
        """Show a proposal with confirm and decline (proposal_text says it), apart from the
        reply's text, which streams on."""
        ...


async def spoken(
    events: AsyncIterable[ReplyEvent], voice: Voice
) -> AsyncGenerator[str | Failure, None]:
    """The reply as text deltas, then a `Failure` if it failed; stops at the end."""
    async for event in events:
        match event:
            case Welcome(text=text):
                if opening := await voice.welcome(text):
                    yield opening
            case Chunk(text=text):
                yield voice.coach(text)
            case Proposed(proposal=proposal):
                await voice.propose(proposal)
            case SafetyReply(text=text):
                yield voice.ours(text)
            case Denied(standing=standing):
                yield voice.ours(standing.describe(voice.when(standing.time)))
            case Failed(kind="duplicate"):
                await voice.duplicate()
                return
            case Failed(user_text=text):
                yield Failure(voice.note(text))
                return
            case Done():
                return
