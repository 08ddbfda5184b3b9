"""Progress on goals: the pure streak (hypothesis, against a reference written here), and
`/log` and `/goals` as a user types them, on a real Coach and store; the model's context."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots.commands import Export, GoalsView, Reply, Result, as_text, run_command
from core.coach import Coach
from core.errors import CoachError
from core.models import Platform
from core.progress import MAX_PROGRESS_CHARS, streak_weeks, week_of
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support import T0, FakeClock, coach_on, collect, person

ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Berlin",
        "Asia/Tokyo",
        "America/Los_Angeles",
        "Pacific/Kiritimati",  # UTC+14
        "Pacific/Pago_Pago",  # UTC-11
    )
]

# The pure streak


def reference_streak(logged: list[datetime], now: datetime, zone: ZoneInfo) -> int:
    """Weeks numbered from 1 Jan of year 1 (a Monday), each entry's on its local calendar."""

    def week(moment: datetime) -> int:
        return (moment.astimezone(zone).date().toordinal() - 1) // 7

    weeks = {week(moment) for moment in logged}
    for end in (week(now), week(now) - 1):
        run = 0
        while end - run in weeks:
            run += 1
        if run:
            return run
    return 0


moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
hours_back = st.lists(st.integers(min_value=0, max_value=24 * 7 * 12), max_size=30)


@given(now=moments, back=hours_back, zone=st.sampled_from(ZONES))
def test_streak_matches_the_reference(now: datetime, back: list[int], zone: ZoneInfo) -> None:
    logged = [now - timedelta(hours=h) for h in back]
    assert streak_weeks(logged, now, zone) == reference_streak(logged, now, zone)


@given(now=moments, back=hours_back, zone=st.sampled_from(ZONES))
def test_logging_now_keeps_the_streak_alive_and_never_shortens_it(
    now: datetime, back: list[int], zone: ZoneInfo
) -> None:
    logged = [now - timedelta(hours=h) for h in back]
    before = streak_weeks(logged, now, zone)
    after = streak_weeks([*logged, now], now, zone)
    assert after >= max(before, 1)
    assert after <= len({week_of(m, zone) for m in [*logged, now]})


@given(now=moments, back=hours_back, zone=st.sampled_from(ZONES))
def test_a_streak_ends_once_a_whole_week_passes_without_progress(
    now: datetime, back: list[int], zone: ZoneInfo
) -> None:
    this_week = week_of(now, zone)
    older = [
        m
        for m in (now - timedelta(hours=h) for h in back)
        if week_of(m, zone) < this_week - timedelta(weeks=1)
    ]
    assert streak_weeks(older, now, zone) == 0


def test_weeks_are_the_users_own_monday_to_sunday() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    sunday_night = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)  # Sun 23:30 in Tokyo
    monday_morning = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)  # Mon 00:30 in Tokyo
    assert week_of(sunday_night, tokyo) == datetime(2026, 11, 16).date()
    assert week_of(monday_morning, tokyo) == datetime(2026, 11, 23).date()
    # Two entries an hour apart are two weeks in a row in Tokyo, one week in UTC.
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert streak_weeks([sunday_night, monday_morning], now, tokyo) == 2
    assert streak_weeks([sunday_night, monday_morning], now, ZoneInfo("UTC")) == 1


def test_last_weeks_entry_keeps_the_streak_alive_until_this_week_ends() -> None:
    zone = ZoneInfo("UTC")
    logged = [T0 - timedelta(weeks=2), T0 - timedelta(weeks=1)]  # T0 is a Monday
    assert streak_weeks(logged, T0 + timedelta(days=6, hours=14), zone) == 2  # Sunday 23:00
    assert streak_weeks(logged, T0 + timedelta(days=7), zone) == 0  # next Monday


# /log and /goals


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(str(tmp_path / "c.db"))
    yield store
    await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def coach(store: SQLiteStore, clock: FakeClock) -> AsyncIterator[Coach]:
    async with coach_on(store, None, clock) as coach:
        yield coach


async def run(coach: Coach, line: str) -> Result:
    return await run_command(coach, person(), line)


def error_text(result: Result) -> str:
    assert isinstance(result, Reply) and result.error, result
    return result.text


async def test_log_answers_with_the_goal_and_the_streak_week_after_week(
    coach: Coach, clock: FakeClock
) -> None:
    await run(coach, "/goal add Run 5k")
    await run(coach, "/goal add Read 12 books")

    first = await run(coach, "/log 1 ran 3 km")
    assert isinstance(first, GoalsView)
    assert first.note == (
        "Logged for goal 1 (Run 5k): ran 3 km. "
        "On the board this week — log again next week to start a streak!"
    )
    clock.advance(days=8)
    await run(coach, "/log 1 ran 4 km")
    clock.advance(days=6)
    third = await run(coach, "/log #1   ran  5 km ")
    assert isinstance(third, GoalsView)
    assert third.note == "Logged for goal 1 (Run 5k): ran 5 km. 3 weeks in a row — keep it going!"

    assert as_text(await run(coach, "/goals")) == (
        "Your goals:\n"
        "1. Run 5k\n"
        "   last Mon 7 Dec 2026: ran 5 km · 🔥 3 weeks in a row\n"
        "2. Read 12 books"
    )
    clock.advance(days=14)  # a whole week went by without progress
    assert "last Mon 7 Dec 2026: ran 5 km · no streak: nothing this week or last" in as_text(
        await run(coach, "/goals")
    )


async def test_the_entry_is_dated_in_the_users_zone(coach: Coach, clock: FakeClock) -> None:
    await run(coach, "/timezone Asia/Tokyo")
    await run(coach, "/goal add Run 5k")
    clock.now = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)  # Sun in UTC, Mon 00:30 in Tokyo
    await run(coach, "/log 1 ran")
    assert "last Mon 23 Nov 2026: ran" in as_text(await run(coach, "/goals"))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/log", "`/log <number> <what you did>`"),
        ("/log 1 ran", "You have no goals right now."),
    ],
)
async def test_log_without_goals_says_what_to_do(coach: Coach, line: str, expected: str) -> None:
    assert expected in error_text(await run(coach, line))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/log 3 ran", "Use the goal's number from `/goals` (1 to 2)."),
        ("/log 0 ran", "(1 to 2)"),
        ("/log ran 3 km", "(1 to 2)"),
        ("/log 1", "What did you do? Try `/log 1 ran 3 km`."),
        ("/log 1 \u200b\u0007 ", "What did you do?"),
        ("/log 1 " + "x" * (MAX_PROGRESS_CHARS + 1), f"under {MAX_PROGRESS_CHARS} characters"),
    ],
)
async def test_bad_log_gets_a_clear_message_and_saves_nothing(
    coach: Coach, line: str, expected: str
) -> None:
    await run(coach, "/goal add Run 5k")
    await run(coach, "/goal add Read")
    assert expected in error_text(await run(coach, line))
    progress = await coach.goals_progress(person())
    assert [p.latest for p in progress] == [None, None]


async def test_a_closed_goal_is_not_logged_and_numbers_follow_goals(coach: Coach) -> None:
    await run(coach, "/goal add Run 5k")
    await run(coach, "/goal add Read")
    await run(coach, "/goal done 1")
    logged = await coach.log_progress(person(), "1", "read 20 pages")
    assert (logged.goal.text, logged.number, logged.streak) == ("Read", 1, 1)
    with pytest.raises(CoachError, match=r"\(1 to 1\)"):
        await coach.log_progress(person(), "2", "ran")


async def test_export_has_the_entries_and_forget_deletes_them(
    coach: Coach, store: SQLiteStore
) -> None:
    await run(coach, "/goal add Run 5k")
    await run(coach, "/log 1 ran 3 km")
    exported = await run(coach, "/export")
    assert isinstance(exported, Export)
    data = json.loads(exported.json)
    (entry,) = data["progress"]
    assert (entry["text"], entry["goal_id"], entry["created_at"]) == (
        "ran 3 km",
        data["goals"][0]["id"],
        "2026-11-23T09:00:00Z",
    )
    user_id = (await coach.user(person())).id
    await run(coach, "/forget confirm")
    assert await store.list_progress(user_id) == []


async def test_progress_comes_along_when_two_accounts_are_linked(coach: Coach) -> None:
    slack = person("U_SLACK", Platform.SLACK)
    await run_command(coach, slack, "/goal add Run 5k")
    await run_command(coach, slack, "/log 1 ran 3 km")
    code = await coach.link_code(person())
    await coach.link(slack, code)
    assert "last Mon 23 Nov 2026: ran 3 km · 🔥 1 week in a row" in as_text(
        await run(coach, "/goals")
    )


# The model's context


async def test_the_context_carries_each_goals_latest_progress_and_streak(
    store: SQLiteStore, clock: FakeClock
) -> None:
    async with FakeAnthropic() as fake, coach_on(store, fake.base_url, clock) as coach:
        me = person()
        await run(coach, "/goal add Run 5k")
        await run(coach, "/goal add Read 12 books")
        await run(coach, "/log 1 ran 3 km")
        clock.advance(weeks=1)
        await run(coach, "/log 1 ran 4 km")
        await collect(coach, me, "how am I doing?")

    dynamic = fake.last_request.body["system"][1]["text"]
    goals = [line for line in dynamic.splitlines() if line[:1].isdigit()]
    assert goals == [  # numbered as /goals numbers them: the proposal tools name goals so
        "1. Run 5k (last progress Mon 30 Nov 2026: ran 4 km; streak: 2 weeks in a row)",
        "2. Read 12 books",
    ]
