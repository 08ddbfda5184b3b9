"""The coach's persona (loaded from a Markdown file) and the prompt built from it.

The persona file has two top-level sections, `# Persona` (the system prompt's static part) and
`# Welcome` (shown to a user before the first reply). `PERSONA_PATH` swaps the whole file.
The prompt is pure: a function of the persona and a snapshot of the user's context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.models import Commitment, Goal, Meeting, Message, Phase, Role
from core.progress import GoalProgress
from core.texts import counted
from core.zones import format_day, format_local

PHASE_GUIDANCE = {
    Phase.GOAL_SETTING: (
        "Phase: goal setting. The user can talk to you at any time. Help them shape goals."
    ),
    Phase.TRACKING: (
        "Phase: tracking. The user can talk to you only inside a meeting window, which is "
        "open now. Review progress on their goals and agree on next steps."
    ),
}


class PersonaError(ValueError):
    """The persona file is missing or lacks a section."""


@dataclass(frozen=True)
class Persona:
    prompt: str
    welcome: str

    @classmethod
    def parse(cls, text: str) -> Persona:
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in text.splitlines():
            if line.startswith("# "):
                current = sections.setdefault(line[2:].strip().lower(), [])
            elif current is not None:
                current.append(line)
        missing = [
            name for name in ("persona", "welcome") if not "\n".join(sections.get(name, [])).strip()
        ]
        if missing:
            raise PersonaError(f"persona file needs a non-empty '# {missing[0].title()}' section")
        return cls(
            prompt="\n".join(sections["persona"]).strip(),
            welcome="\n".join(sections["welcome"]).strip(),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> Persona:
        """Load `path`, or the default persona that ships with the package."""
        if path is None:
            return cls.parse(
                resources.files("core").joinpath("persona/default.md").read_text("utf-8")
            )
        try:
            return cls.parse(path.read_text("utf-8"))
        except OSError as error:
            raise PersonaError(f"cannot read persona file {path}: {error.strerror}") from error


@dataclass(frozen=True)
class CoachContext:
    """A snapshot of what the coach should know about the user for this turn."""

    phase: Phase
    goals: Sequence[Goal]
    meeting: Meeting | None
    now: datetime
    timezone: ZoneInfo
    history: Sequence[Message]
    commitments: Sequence[Commitment] = ()  # open ones, oldest first
    memory: Sequence[str] = ()  # the coach's notes on the user (core/notes.py)
    progress: Mapping[str, GoalProgress] = field(default_factory=dict)  # by goal id
    # Each open commitment's number as /commitments shows it (the proposal tools name them
    # by number; the budget may leave the oldest out of the list).
    commitment_numbers: Mapping[str, int] = field(default_factory=dict)


def goal_line(number: int, goal: Goal, context: CoachContext) -> str:
    """A goal numbered as /goals numbers it (the tools name goals so), its latest progress
    (the user's own words, dated in their zone), its streak; just the goal while nothing is
    logged for it."""
    progress = context.progress.get(goal.id)
    if progress is None or progress.latest is None:
        return f"{number}. {goal.text}"
    latest = progress.latest
    streak = (
        f"streak: {counted(progress.streak, 'week')} in a row"
        if progress.streak
        else "no progress this week or last"
    )
    return (
        f"{number}. {goal.text} (last progress {format_day(latest.created_at, context.timezone)}: "
        f"{latest.text}; {streak})"
    )


def system_blocks(persona: Persona, context: CoachContext) -> list[dict[str, Any]]:
    """A static persona block marked for prompt caching, then the per-user block after it."""
    lines = [PHASE_GUIDANCE[context.phase]]
    if context.goals:
        lines.append("Active goals:")
        lines.extend(goal_line(n, goal, context) for n, goal in enumerate(context.goals, 1))
    else:
        lines.append("Active goals: none yet.")
    if context.meeting is not None:
        lines.append(
            f"Current meeting: {format_local(context.meeting.start, context.timezone)}, "
            f"{context.meeting.duration_minutes} minutes."
        )
    if context.commitments:
        lines.append("Open commitments (what the user said they would do; ask how it went):")
        lines.extend(
            f"{context.commitment_numbers.get(c.id, n)}. {c.text}"
            + (f" (due {c.due})" if c.due else "")
            for n, c in enumerate(context.commitments, 1)
        )
    if context.memory:
        lines.append("What you remember about the user from earlier sessions:")
        lines.extend(f"- {note}" for note in context.memory)
    lines.append(f"User's local time: {format_local(context.now, context.timezone)}.")
    return [
        {"type": "text", "text": persona.prompt, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "\n".join(lines)},
    ]


def conversation(history: Sequence[Message], new_text: str) -> list[dict[str, str]]:
    """History oldest first, then the new message, as alternating turns.

    Failed turns can leave two user messages in a row; they are merged so the API sees
    alternating roles starting with the user. A reply the platform never showed
    (`delivered` False) is left out: the model must not build on words the user never read.
    """
    turns: list[dict[str, str]] = []
    said = [(m.role, m.text) for m in history if m.delivered]
    for role, text in [*said, (Role.USER, new_text)]:
        if not text.strip():
            continue
        if turns and turns[-1]["role"] == role.value:
            turns[-1]["content"] += "\n\n" + text
        elif turns or role is Role.USER:
            turns.append({"role": role.value, "content": text})
    return turns
