"""Scheduling meetings and changing phase, as users type it: `bots.commands.run_command` with a
real Coach on the SQLite store, on Monday 1 June 2026, 10:00 in Paris."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.commands import (
    AccessView,
    Booked,
    MeetingsView,
    Reply,
    Result,
    as_text,
    run_command,
    when_for_result,
)
from core.coach import Coach
from core.models import MeetingStatus, Phase
from core.persona import Persona
from core.store import Store, open_store
from tests.scheduler_world import ALICE, PARIS, Clock, make_settings, utc

MONDAY = utc(2026, 6, 1, 8, 0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'momentum.db'}")
    yield opened
    await opened.close()


@pytest.fixture
async def coach(store: Store) -> Coach:
    coach = Coach(store, None, Persona.load(), make_settings(), clock=Clock(MONDAY))
    await coach.set_timezone(ALICE, PARIS)
    return coach


async def say(coach: Coach, line: str) -> Result:
    return await run_command(coach, ALICE, line)


async def text(coach: Coach, line: str) -> str:
    """The plain rendering, with times in the user's zone as every adapter shows them."""
    result = await say(coach, line)
    return as_text(result, when_for_result(result))


async def error(coach: Coach, line: str) -> str:
    result = await say(coach, line)
    assert isinstance(result, Reply) and result.error, result
    return result.text


@pytest.mark.parametrize(
    ("when", "shown"),
    [
        ("tomorrow 9am", "Tue 2 Jun 2026, 09:00 (Europe/Paris), 45 min"),
        ("fri 18:30 for 30m", "Fri 5 Jun 2026, 18:30 (Europe/Paris), 30 min"),
        ("next monday 7:00", "Mon 8 Jun 2026, 07:00 (Europe/Paris), 45 min"),  # said on a Monday
        ("next fri 7:00", "Fri 5 Jun 2026, 07:00 (Europe/Paris), 45 min"),
        ("2026-06-10 14:15 for 1h30", "Wed 10 Jun 2026, 14:15 (Europe/Paris), 90 min"),
        ("in 2 hours", "Mon 1 Jun 2026, 12:00 (Europe/Paris), 45 min"),
    ],
)
async def test_schedule_reads_the_users_words_in_their_timezone(
    coach: Coach, when: str, shown: str
) -> None:
    assert await text(coach, f"/schedule {when}") == (
        f"Booked: {shown}. See all your meetings with /meetings."
    )


async def test_schedule_answers_with_the_new_meeting_not_the_whole_list(coach: Coach) -> None:
    await say(coach, "/schedule tomorrow 9am")
    assert await text(coach, "/schedule wed 9am for 30m") == (
        "Booked: Wed 3 Jun 2026, 09:00 (Europe/Paris), 30 min. "
        "See all your meetings with /meetings."
    )
    assert "2. Wed 3 Jun 2026, 09:00" in await text(coach, "/meetings")


async def test_next_monday_said_on_a_tuesday_is_six_days_away(store: Store) -> None:
    tuesday = Coach(store, None, Persona.load(), make_settings(), clock=Clock(utc(2026, 6, 2, 8)))
    await tuesday.set_timezone(ALICE, PARIS)
    result = await run_command(tuesday, ALICE, "/schedule next monday 9am please")
    assert as_text(result, when_for_result(result)).startswith(
        "Booked: Mon 8 Jun 2026, 09:00 (Europe/Paris), 45 min."
    )


async def test_a_weekly_series_books_the_next_occurrences(coach: Coach) -> None:
    result = await say(coach, "/schedule weekly tue 9am")
    assert isinstance(result, Booked)
    assert as_text(result, when_for_result(result)) == (
        "Booked weekly: Tue 2 Jun 2026, 09:00 (Europe/Paris), 45 min, and at the same time "
        "every week until Tue 21 Jul 2026, 09:00 (Europe/Paris): 8 meetings in all. "
        "See all your meetings with /meetings."
    )
    assert [m.start.astimezone(result.time.zone).hour for m in result.meetings] == [9] * 8
    assert len({m.series_id for m in result.meetings}) == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/schedule 2026-05-01 09:00", "That time has already passed: Fri 1 May 2026, 09:00 "),
        ("/schedule today 8:00", "already passed: Mon 1 Jun 2026, 08:00 (Europe/Paris)"),
        ("/schedule yesterday 9am", "already passed: Sun 31 May 2026, 09:00 (Europe/Paris)"),
        ("/schedule last friday 9am", "already passed: Fri 29 May 2026, 09:00 (Europe/Paris)"),
        ("/schedule yesterday", "'Yesterday' has already passed."),
        (
            "/schedule tomorrow 3pm for 30m weekly soonish",
            "I didn't understand 'soonish'. Leave it out, or try 'tomorrow 9am for 30m'",
        ),
        ("/schedule tomorrow 9am for 5m", "A meeting can last from 10 min to 4 h"),
        ("/schedule tomorrow 9am for 5h", "so 5 h won't fit"),
        ("/schedule whenever", "I couldn't understand 'whenever' as a time"),
        ("/schedule", "When? For example `/schedule tomorrow 9am`"),
        ("/schedule 2026-02-30 09:00", "2026-02-30 isn't a real date"),
    ],
)
async def test_bad_times_get_clear_errors_and_book_nothing(
    coach: Coach, store: Store, line: str, expected: str
) -> None:
    assert expected in await error(coach, line)
    user = await coach.user(ALICE)
    assert await store.list_meetings(user.id) == []


async def test_overlapping_meetings_are_refused(coach: Coach, store: Store) -> None:
    await say(coach, "/schedule tomorrow 9am")
    assert await error(coach, "/schedule tomorrow 9:30") == (
        "That overlaps your meeting on Tue 2 Jun 2026, 09:00 (Europe/Paris). "
        "Pick another time or cancel that one first."
    )
    # A weekly series that hits an existing meeting in its third week books none of its weeks.
    await say(coach, "/schedule 2026-06-17 18:00")
    assert "overlaps your meeting on Wed 17 Jun 2026, 18:00" in await error(
        coach, "/schedule wed 18:15 weekly"
    )
    user = await coach.user(ALICE)
    assert len(await store.list_meetings(user.id)) == 2
    # Back to back is fine.
    assert (await text(coach, "/schedule tomorrow 9:45")).startswith("Booked: Tue 2 Jun")


async def test_unknown_timezones_are_refused_and_names_are_forgiving(coach: Coach) -> None:
    assert "Mars/Olympus" in await error(coach, "/timezone Mars/Olympus")
    assert (await text(coach, "/timezone america/new york")).startswith(
        "Timezone set to America/New_York."
    )
    shown = await text(coach, "/schedule tomorrow 9am")
    assert shown.startswith("Booked: Tue 2 Jun 2026, 09:00 (America/New_York)")


async def test_cancel_one_meeting_of_a_series_or_the_whole_series(coach: Coach) -> None:
    await say(coach, "/schedule tomorrow 18:00 for 30m")
    await say(coach, "/schedule wed 9am weekly")
    listed = await say(coach, "/meetings")
    assert isinstance(listed, MeetingsView) and len(listed.meetings) == 9

    one = await say(coach, "/cancel 3")  # the second Wednesday
    assert isinstance(one, MeetingsView)
    assert one.note == "Cancelled: Wed 10 Jun 2026, 09:00 (Europe/Paris)."
    assert len(one.meetings) == 8

    series = await say(coach, "/cancel 2 series")
    assert isinstance(series, MeetingsView)
    assert series.note == "Cancelled: 7 meetings of the series."
    assert [m.duration_minutes for m in series.meetings] == [30]  # the one-off stays

    assert await error(coach, "/cancel 1 series") == "That meeting is not part of a weekly series."
    assert await error(coach, "/cancel 9") == "Use the meeting's number from `/meetings` (1 to 1)."
    assert "Which one?" in await error(coach, "/cancel")


async def test_track_needs_a_goal_and_an_upcoming_meeting_and_says_what_is_missing(
    coach: Coach,
) -> None:
    both = await error(coach, "/track")
    assert both == (
        "To start tracking you need at least one active goal (`/goal add ...`) and an "
        "upcoming meeting (`/schedule tomorrow 9am`)."
    )
    await say(coach, "/goal add Run 5 km")
    assert await error(coach, "/track") == (
        "To start tracking you need an upcoming meeting (`/schedule tomorrow 9am`)."
    )
    await say(coach, "/schedule tomorrow 9am")
    await say(coach, "/goal done 1")
    assert await error(coach, "/track") == (
        "To start tracking you need at least one active goal (`/goal add ...`)."
    )
    await say(coach, "/goal add Run 5 km")
    tracked = await text(coach, "/track")
    assert tracked == (
        "You're in tracking now: I'm available from 30 minutes before a meeting until "
        "60 minutes after it ends. Your next window opens Tue 2 Jun 2026, 08:30 (Europe/Paris)."
    )
    assert (await coach.user(ALICE)).phase is Phase.TRACKING


async def test_track_inside_an_open_window_says_so_once(coach: Coach) -> None:
    await say(coach, "/goal add Run 5 km")
    await say(coach, "/schedule in 20 min")
    result = await say(coach, "/track")
    assert isinstance(result, AccessView) and result.standing.access.allowed
    assert as_text(result, when_for_result(result)) == (
        "You're in tracking now, and your coaching window is open until "
        "Mon 1 Jun 2026, 12:05 (Europe/Paris). Let's go!"
    )


async def test_a_cancelled_meeting_does_not_count_for_tracking(coach: Coach) -> None:
    await say(coach, "/goal add Run 5 km")
    await say(coach, "/schedule tomorrow 9am")
    await say(coach, "/cancel 1")
    assert "an upcoming meeting" in await error(coach, "/track")


async def test_back_to_goal_setting_opens_the_coach_any_time(coach: Coach, store: Store) -> None:
    await say(coach, "/goal add Run 5 km")
    await say(coach, "/schedule tomorrow 9am")
    await say(coach, "/track")
    assert (await text(coach, "/access")).startswith("I'm in tracking mode")

    assert await text(coach, "/goalsetting") == "Back to goal setting: talk to me any time."
    assert (await coach.user(ALICE)).phase is Phase.GOAL_SETTING
    assert (await text(coach, "/access")).startswith("You're in goal setting")
    # The meetings stay booked.
    user = await coach.user(ALICE)
    [meeting] = await store.list_meetings(user.id)
    assert meeting.status is MeetingStatus.SCHEDULED
