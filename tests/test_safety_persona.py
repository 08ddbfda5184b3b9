"""The crisis check and the persona/prompt builder: pure functions, tested directly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.models import Message, MessageMeta, Phase, Platform, Role
from core.persona import Persona, PersonaError, conversation
from core.safety import is_crisis


@pytest.mark.parametrize(
    "text",
    [
        "I want to kill myself",
        "sometimes I think about ending it all",
        "I've been feeling suicidal lately",
        "honestly I don't want to be alive anymore",
        "I keep hurting myself when it gets bad",
        "I WANT TO DIE",
        "i want to\u200b die",  # zero-width space between words
        "I’d be better off dead",
    ],
)
def test_crisis_language_is_recognised(text: str) -> None:
    assert is_crisis(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'm killing it at work this week",
        "dying to start my new running plan",
        "the deadline is killing me, lol",
        "I want to diet before summer",
        "let's end the meeting early",
    ],
)
def test_everyday_phrases_do_not_trigger_the_safety_reply(text: str) -> None:
    assert not is_crisis(text)


def test_persona_file_sections_are_required(tmp_path: Path) -> None:
    path = tmp_path / "p.md"
    path.write_text("# Persona\nBe kind.\n")
    with pytest.raises(PersonaError, match="Welcome"):
        Persona.load(path)
    with pytest.raises(PersonaError, match="cannot read"):
        Persona.load(tmp_path / "missing.md")


def test_default_persona_is_original_and_says_it_is_an_ai() -> None:
    persona = Persona.load()
    assert "Rally" in persona.prompt and "AI" in persona.welcome
    assert "not a therapist" in persona.welcome


def _message(role: Role, text: str) -> Message:
    return Message(
        user_id="u",
        role=role,
        text=text,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        meta=MessageMeta(platform=Platform.CONSOLE),
    )


def test_conversation_alternates_roles_and_starts_with_the_user() -> None:
    history = [
        _message(Role.ASSISTANT, "orphan reply"),  # its user turn fell out of the window
        _message(Role.USER, "first"),
        _message(Role.USER, "retry after a failure"),
        _message(Role.ASSISTANT, "answer"),
    ]
    assert conversation(history, "new") == [
        {"role": "user", "content": "first\n\nretry after a failure"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "new"},
    ]


def test_system_prompt_dynamic_block_has_no_goals_line_when_none() -> None:
    from core.persona import CoachContext, system_blocks

    context = CoachContext(
        phase=Phase.GOAL_SETTING,
        goals=[],
        meeting=None,
        now=datetime(2026, 7, 1, 12, tzinfo=UTC),
        timezone=ZoneInfo("America/New_York"),
        history=[],
    )
    dynamic = system_blocks(Persona.load(), context)[1]["text"]
    assert "Active goals: none yet." in dynamic
    assert "08:00 (America/New_York)" in dynamic  # EDT in July
