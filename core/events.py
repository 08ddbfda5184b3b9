"""What `Coach.reply` streams, in order: [Welcome] then one of SafetyReply | Denied | Failed |
((Chunk | Proposed)* then Done or Failed). Events carry data, not phrasing, where a platform
phrases it its own way: a refusal carries the decision (bots/voice.py says it)."""

from __future__ import annotations

from dataclasses import dataclass

from core.access import Standing
from core.models import Proposal, Usage


@dataclass(frozen=True)
class Welcome:
    text: str


@dataclass(frozen=True)
class Chunk:
    text: str


@dataclass(frozen=True)
class Proposed:
    """The model proposed an action (core/proposals.py), stored: show it with confirm and
    decline, for the asking user only. The reply's text goes on around it."""

    proposal: Proposal


@dataclass(frozen=True)
class Done:
    message_id: str
    text: str
    usage: Usage | None


@dataclass(frozen=True)
class SafetyReply:
    text: str


@dataclass(frozen=True)
class Denied:
    """Not now: the window is closed. `standing` says when it opens, in the user's zone."""

    standing: Standing


@dataclass(frozen=True)
class Failed:
    kind: str
    user_text: str


ReplyEvent = Welcome | Chunk | Proposed | Done | SafetyReply | Denied | Failed
