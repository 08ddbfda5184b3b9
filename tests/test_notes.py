"""Commitments carried forward and what the coach remembers (core/notes.py), end to end.

The scheduler closes a window with the fake Anthropic answering the recap and then the JSON of
the window's notes; the user sees them through the commands (`/commitments`, `/memory`), the
next window's opening, and the model sees them in the next turn's prompt. Both store backends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bots.commands import Reply as CommandReply
from bots.commands import as_text, run_command
from core.coach import Coach
from core.context import TOOLS_CHARS, estimate_tokens
from core.events import Done
from core.models import CommitmentStatus, Message, MessageMeta, Platform, Role
from core.notes import MemoryBounds, NotesError, parse_notes
from core.persona import Persona
from core.recap import RECAP_INSTRUCTIONS
from core.store import Store
from tests.fakes.anthropic_api import Behaviour, FakeAnthropic, HttpError, Reply
from tests.scheduler_world import ALICE, Clock, World, anthropic_llm, talked_in_window, utc
from tests.support import make_llm, make_settings

MONDAY = utc(2026, 6, 1, 8, 0)  # 10:00 in Paris; "tomorrow 9am" is Tue 2 Jun, 07:00 UTC
RECAP = "Great session!\nCommitted to:\n- Stretch every morning\nNext steps:\n- Set an alarm"
NOTES = json.dumps(
    {
        "commitments": [
            {"text": "I'll stretch every morning", "due": "daily, 7am"},
            {"text": "call Sam about the 10k"},
        ],
        "memory": ["Runs to keep up with their kids", "Mornings work best for them"],
    }
)
NOTES_TASK = "Task: read the transcript of a coaching session"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def world(store: Store, fake: FakeAnthropic) -> AsyncIterator[World]:
    llm = anthropic_llm(fake.base_url)
    yield World(store, Clock(MONDAY), llm)
    await llm.aclose()


async def command(world: World, line: str) -> str:
    return as_text(await run_command(world.coach, ALICE, line))


async def closed_with(world: World, fake: FakeAnthropic, notes: Behaviour) -> None:
    """Alice talked in her window; it closes with the recap, then `notes` for the notes."""
    meeting = await talked_in_window(world)
    fake.enqueue(Reply(RECAP), notes)
    await world.at(world.coach.policy.closes_at(meeting), meeting)


async def test_commitments_from_a_window_are_listed_recalled_at_the_next_opening_and_in_context(
    world: World, fake: FakeAnthropic
) -> None:
    await closed_with(world, fake, Reply(NOTES))

    assert world.notifier.texts()[-1].endswith(RECAP)  # the recap went out first
    recap_at = next(i for i, r in enumerate(fake.requests) if RECAP_INSTRUCTIONS in r.system_text)
    asked = fake.requests[recap_at + 1]  # the notes are asked for after the recap
    assert asked.system_text.startswith(NOTES_TASK)
    assert "User: I'll stretch every morning." in asked.last_user_text
    assert "Current notes:\n(none yet)" in asked.last_user_text

    assert await command(world, "/commitments") == (
        "What you said you would do:\n"
        "1. stretch every morning (due daily, 7am), said Tue 2 Jun 2026, 10:45 (Europe/Paris)\n"
        "2. call Sam about the 10k, said Tue 2 Jun 2026, 10:45 (Europe/Paris)\n"
        "Done one? `/commitments done <number>`"
    )
    assert await command(world, "/memory") == (
        "What I remember about you:\n"
        "1. Runs to keep up with their kids\n"
        "2. Mornings work best for them\n"
        "Wrong or private? `/memory forget <number>`"
    )

    [thursday] = await world.coach.schedule(ALICE, "thu 9am")
    await world.at(world.coach.policy.opens_at(thursday), thursday)
    assert world.notifier.texts()[-1] == (
        "🟢 Your coaching window is open: I'm available until 10:45 (Europe/Paris). "
        "Last time you said you would:\n• stretch every morning\n• call Sam about the 10k\n"
        "How did it go?"
    )

    world.clock.now = thursday.start
    await world.chat("Stretched every single day!")
    system = fake.last_request.system_text
    assert (
        "Open commitments (what the user said they would do; ask how it went):\n"
        "1. stretch every morning (due daily, 7am)\n2. call Sam about the 10k\n"
    ) in system
    assert (
        "What you remember about the user from earlier sessions:\n"
        "- Runs to keep up with their kids\n- Mornings work best for them\n"
    ) in system

    assert await command(world, "/commitments done 1") == (
        "✅ Done: stretch every morning. That's a promise kept!\n"
        "What you said you would do:\n"
        "1. call Sam about the 10k, said Tue 2 Jun 2026, 10:45 (Europe/Paris)\n"
        "Done one? `/commitments done <number>`"
    )
    user = await world.coach.user(ALICE)
    [done] = await world.store.list_commitments(user.id, CommitmentStatus.DONE)
    assert (done.text, done.done_at, done.meeting_id) == (
        "stretch every morning",
        thursday.start,
        (await world.meetings())[0].id,
    )


async def test_one_commitment_reads_as_a_sentence_and_many_are_bounded(
    world: World, fake: FakeAnthropic
) -> None:
    many = {"commitments": [{"text": f"do thing {n}"} for n in range(1, 6)], "memory": []}
    await closed_with(world, fake, Reply(json.dumps(many)))
    [thursday] = await world.coach.schedule(ALICE, "thu 9am")
    await world.at(world.coach.policy.opens_at(thursday), thursday)
    assert world.notifier.texts()[-1].endswith(
        "Last time you said you would:\n• do thing 1\n• do thing 2\n• do thing 3\n"
        "…and 2 more: see `/commitments`.\nHow did it go?"
    )
    for _ in range(4):
        await command(world, "/commitments done 1")
    [friday] = await world.coach.schedule(ALICE, "fri 9am")
    await world.at(world.coach.policy.opens_at(friday), friday)
    assert world.notifier.texts()[-1].endswith(
        "Last time you said you would do thing 5. How did it go?"
    )


@pytest.mark.parametrize(
    "answer",
    [
        Reply("Sure! {commitments: [stretch"),  # not JSON
        Reply('{"commitments": "stretch every morning"}'),  # not the shape asked for
        Reply("Here is what I noted: you will stretch."),  # no JSON at all
        HttpError(529),  # the model down
    ],
    ids=["malformed", "wrong-shape", "prose", "model-down"],
)
async def test_notes_that_fail_lose_nothing_else(
    world: World, fake: FakeAnthropic, answer: Behaviour, caplog: pytest.LogCaptureFixture
) -> None:
    user = await world.coach.user(ALICE)
    await world.store.replace_memory_notes(user.id, ["Prefers short sessions"], MONDAY)
    with caplog.at_level(logging.WARNING, logger="core.window_hooks"):
        await closed_with(world, fake, answer)

    assert world.notifier.texts()[-1].endswith(RECAP)
    [meeting] = await world.meetings()
    assert meeting.recap_sent and meeting.recap == RECAP
    assert "not taken" in caplog.text and "no commitments or memory update" in caplog.text
    assert await world.store.list_commitments(user.id) == []
    assert await world.store.memory_notes(user.id) == ["Prefers short sessions"]
    assert (await command(world, "/commitments")).startswith("No open commitments.")
    [thursday] = await world.coach.schedule(ALICE, "thu 9am")
    await world.at(world.coach.policy.opens_at(thursday), thursday)
    assert world.notifier.texts()[-1].endswith("What's on your mind?")


async def test_the_memory_update_starts_from_the_current_notes(
    world: World, fake: FakeAnthropic
) -> None:
    user = await world.coach.user(ALICE)
    await world.store.replace_memory_notes(user.id, ["Runs for the kids", "Hates gyms"], MONDAY)
    updated = {"commitments": [], "memory": ["Runs for the kids and their own health"]}
    await closed_with(world, fake, Reply(json.dumps(updated)))

    asked = next(r for r in fake.requests if r.system_text.startswith(NOTES_TASK))
    assert "Current notes:\n- Runs for the kids\n- Hates gyms\n" in asked.last_user_text
    assert await world.store.memory_notes(user.id) == ["Runs for the kids and their own health"]


async def test_memory_forget_removes_one_note_and_wrong_numbers_are_explained(
    world: World, fake: FakeAnthropic
) -> None:
    assert await command(world, "/memory forget 1") == "You have no notes right now."
    await closed_with(world, fake, Reply(NOTES))

    assert await command(world, "/memory forget 1") == (
        "Forgotten: Runs to keep up with their kids\n"
        "What I remember about you:\n1. Mornings work best for them\n"
        "Wrong or private? `/memory forget <number>`"
    )
    for line, error in [
        ("/memory forget 9", "Use the note's number from `/memory` (1 to 1)."),
        ("/memory forget two", "Use the note's number from `/memory` (1 to 1)."),
        ("/memory forget", "Which one? `/memory forget <number>` (see /memory)."),
        ("/memory wipe", "Use `/memory` or `/memory forget <number>`."),
        ("/commitments done 0", "Use the commitment's number from `/commitments` (1 to 2)."),
        ("/commitments done", "Which one? `/commitments done <number>` (see /commitments)."),
        ("/commitments undo 1", "Use `/commitments` or `/commitments done <number>`."),
    ]:
        result = await run_command(world.coach, ALICE, line)
        assert isinstance(result, CommandReply) and result.error, line
        assert result.text == error, line
    assert await command(world, "/memory forget 1") == (
        "Forgotten: Mornings work best for them\n"
        "I have no notes on you yet. After each meeting I note what matters to you "
        "(why your goals matter, what gets in the way, what works for you)."
    )


async def test_export_has_them_and_forget_removes_them(world: World, fake: FakeAnthropic) -> None:
    await closed_with(world, fake, Reply(NOTES))
    user = await world.coach.user(ALICE)

    exported = await world.coach.export(ALICE)
    assert [c["text"] for c in exported["commitments"]] == [
        "stretch every morning",
        "call Sam about the 10k",
    ]
    assert exported["memory"] == ["Runs to keep up with their kids", "Mornings work best for them"]

    assert "commitments and my notes on you" in await command(world, "/forget")
    await command(world, "/forget confirm")
    assert await world.store.list_commitments(user.id) == []
    assert await world.store.memory_notes(user.id) == []
    assert await command(world, "/commitments") == (
        "No open commitments. When you tell me in a meeting what you will do, "
        "I'll keep it here and ask about it next time."
    )


async def test_a_long_history_and_many_notes_stay_within_the_token_budget(
    store: Store, fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    budget = (TOOLS_CHARS + len(Persona.load().prompt)) // 4 + 1500  # ~30 of the 50 notes fit
    settings = make_settings(
        context_token_budget=budget, history_context_messages=100, memory_max_notes=50
    )
    llm = make_llm(settings, fake.base_url)
    coach = Coach(store, llm, Persona.load(), settings, clock=Clock(MONDAY))
    user = await coach.user(ALICE)
    await store.add_messages(
        [
            Message(
                user_id=user.id,
                role=Role.USER if n % 2 == 0 else Role.ASSISTANT,
                text=f"message {n} " + "blah " * 100,
                created_at=MONDAY - timedelta(minutes=100 - n),
                meta=MessageMeta(platform=Platform.SLACK),
            )
            for n in range(100)
        ]
    )
    notes = [f"note {n}: " + "x" * 180 for n in range(50)]
    await store.replace_memory_notes(user.id, notes, MONDAY)
    try:
        with caplog.at_level(logging.INFO, logger="core.context"):
            async for event in coach.reply(ALICE, "What now?"):
                if isinstance(event, Done):
                    break
    finally:
        await llm.aclose()

    body = fake.last_request.body
    assert estimate_tokens(body["system"], body["messages"]) <= budget
    system = fake.last_request.system_text
    assert Persona.load().prompt in system  # never dropped
    assert body["messages"][-1] == {"role": "user", "content": "What now?"}
    assert "message" not in str(body["messages"])  # all history went first, oldest first...
    assert "note 49:" in system and "note 0:" not in system  # ...then the oldest notes
    assert f"of {budget} (left out: 100 messages" in caplog.text
    [reply] = [m for m in await store.recent_messages(user.id, 1)]
    assert 0 < (reply.meta.prompt_tokens_estimate or 0) <= budget  # measured per turn


async def test_the_budget_drops_the_oldest_history_first(
    store: Store, fake: FakeAnthropic
) -> None:
    persona = Persona.load()
    budget = (TOOLS_CHARS + len(persona.prompt)) // 4 + 1000  # the prefix and ~20 messages
    settings = make_settings(context_token_budget=budget, history_context_messages=100)
    coach = Coach(store, None, persona, settings, clock=Clock(MONDAY))
    user = await coach.user(ALICE)
    await store.add_messages(
        [
            Message(
                user_id=user.id,
                role=Role.USER if n % 2 == 0 else Role.ASSISTANT,
                text=f"message {n} " + "blah " * 40,
                created_at=MONDAY - timedelta(minutes=100 - n),
                meta=MessageMeta(platform=Platform.SLACK),
            )
            for n in range(100)
        ]
    )
    await store.replace_memory_notes(user.id, ["Runs for the kids"], MONDAY)
    prompt = await coach.build_context(user, "Hi", None)
    assert prompt.estimated_tokens <= budget
    assert estimate_tokens(prompt.system, prompt.messages) == prompt.estimated_tokens
    kept = " ".join(m["content"] for m in prompt.messages)
    assert "message 99 " in kept and "message 0 " not in kept  # the newest stay
    assert prompt.dropped[0] > 0 and prompt.dropped[1:] == (0, 0)
    assert "Runs for the kids" in prompt.system[1]["text"]


# The parsing, pure

BOUNDS = MemoryBounds(max_notes=3, note_chars=30)


def test_parse_notes_reads_a_fenced_answer_and_bounds_everything() -> None:
    answer = "```json\n" + json.dumps(
        {
            "commitments": [
                {"text": "  I will  run\n5 km. ", "due": "Wed"},
                {"text": "to sleep by 11"},
                {"text": "   "},
            ],
            "memory": ["a" * 50, "Likes mornings", "likes MORNINGS", "b", "c", "d"],
        }
    ) + "\n```"
    notes = parse_notes(answer, BOUNDS)
    assert [(p.text, p.due) for p in notes.commitments] == [
        ("run 5 km", "Wed"),
        ("sleep by 11", None),
    ]
    assert notes.memory == ["a" * 29 + "…", "Likes mornings", "b"]


def test_parse_notes_keeps_the_notes_when_the_answer_has_none() -> None:
    assert parse_notes('{"commitments": []}', BOUNDS, ["old"]).memory is None
    assert parse_notes('{"commitments": [], "memory": []}', BOUNDS, ["old"]).memory is None
    assert parse_notes('{"commitments": [], "memory": []}', BOUNDS, []).memory == []


@pytest.mark.parametrize(
    "answer", ["", "no json here", "{not json}", '{"commitments": [{"due": "Wed"}]}', "[1, 2]"]
)
def test_parse_notes_refuses_what_is_not_the_object_asked_for(answer: str) -> None:
    with pytest.raises(NotesError):
        parse_notes(answer, BOUNDS)
