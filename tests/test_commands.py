"""The shared command grammar, driven as a user types it, on a real Coach and store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.commands import (
    COMMANDS,
    Confirm,
    Export,
    GoalsView,
    HistoryView,
    Reply,
    Result,
    as_text,
    run_command,
)
from core.coach import Coach
from core.store.sqlite import SQLiteStore
from tests.support import FakeClock, coach_on, collect, person


@pytest.fixture
async def coach(tmp_path: Path) -> AsyncIterator[Coach]:
    store = await SQLiteStore.open(str(tmp_path / "c.db"))
    async with coach_on(store, None, FakeClock()) as coach:
        yield coach
    await store.close()


async def run(coach: Coach, line: str) -> Result:
    return await run_command(coach, person(), line)


def error_text(result: Result) -> str:
    assert isinstance(result, Reply) and result.error, result
    return result.text


async def test_help_lists_every_command(coach: Coach) -> None:
    text = as_text(await run(coach, "/help"))
    assert all(command.usage in text for command in COMMANDS.values())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/dance", "I don't know /dance. Try /help."),
        ("/histroy", "Did you mean /history?"),
        ("/", "Which command?"),
        ("/timezone Mars/Olympus", "Europe/Paris"),
        ("/schedule whenever", "tomorrow 9am"),
        ("/schedule yesterday 9am", "already passed"),
        ("/schedule tomorrow 9am please, or so", "I didn't understand 'or so'"),
        ("/schedule 2020-01-01 10:00", "already passed: Wed 1 Jan 2020, 10:00 (UTC)"),
        ("/schedule tomorrow 9am for 5m", "10"),
        ("/schedule tomorrow 9am for 9h", "4"),
        ("/history abc", "should be a number"),
        ("/history 0", "Pages start at 1"),
        ("/history 5", "only 1 page"),
        ("/goal done 3", "no goals"),
        ("/goal add", "What's the goal?"),
        ("/goal", "/goal add"),
        ("/cancel", "Which one?"),
        ("/cancel 1", "no meetings"),
        ("/track", "at least one active goal"),
    ],
)
async def test_bad_input_gets_a_clear_message(coach: Coach, line: str, expected: str) -> None:
    assert expected in error_text(await run(coach, line))


async def test_bad_input_stores_nothing(coach: Coach) -> None:
    for line in ["/schedule yesterday 9am", "/goal add " + "x" * 400, "/timezone Nowhere"]:
        error_text(await run(coach, line))
    assert await coach.goals(person()) == [] and await coach.meetings(person()) == []
    assert (await coach.user(person())).timezone is None


async def test_goals_are_numbered_and_closed_by_number(coach: Coach) -> None:
    await run(coach, "/goal add Run 5k")
    await run(coach, "/goal add Sleep by 11")
    done = await run(coach, "/goal done 1")
    assert isinstance(done, GoalsView) and [g.text for g in done.goals] == ["Sleep by 11"]
    assert "Run 5k" in done.note
    assert "Use the goal's number" in error_text(await run(coach, "/goal drop 7"))


async def test_clear_asks_first_then_deletes_history(coach: Coach) -> None:
    await collect(coach, person(), "I feel suicidal")
    asked = await run(coach, "/clear")
    assert isinstance(asked, Confirm) and asked.command == "clear confirm"
    history = await run(coach, "/history")
    assert isinstance(history, HistoryView) and history.page.total == 2
    assert "2 messages deleted" in as_text(await run(coach, "/" + asked.command))


async def test_forget_asks_first_then_deletes_everything(coach: Coach) -> None:
    await run(coach, "/goal add Run 5k")
    asked = await run(coach, "/forget")
    assert isinstance(asked, Confirm)
    assert await coach.goals(person())  # nothing deleted yet
    await run(coach, "/" + asked.command)
    assert await coach.goals(person()) == []


async def test_export_is_json_with_all_the_users_data(coach: Coach) -> None:
    await run(coach, "/goal add Run 5k")
    await run(coach, "/schedule tomorrow 9am")
    result = await run(coach, "/export")
    assert isinstance(result, Export)
    data = json.loads(result.json)
    assert data["goals"][0]["text"] == "Run 5k" and len(data["meetings"]) == 1
    assert data["user"]["identity"]["external_id"] == "U1"
