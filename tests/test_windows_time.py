"""Windows across daylight-saving changes, and the gate and the scheduler agreeing.

DST: Europe/Paris springs forward on Sun 29 Mar 2026 (02:00 -> 03:00) and falls back on
Sun 25 Oct 2026 (03:00 -> 02:00). A weekly series keeps its local wall time; the window
messages render the close time on the local clock.

Agreement: for any set of meetings, after the scheduler has run every step due so far, what
it last told the user (open until X / closed) is what `decide_access` says at that moment.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.access import decide_access
from core.models import Meeting, MeetingStatus, Phase
from core.store import open_store
from core.windows import reminder_at, step_times
from scheduler import messages
from tests.scheduler_world import ALICE, PARIS, Clock, World, utc

SPRING_MONDAY = utc(2026, 3, 16, 12, 0)
AUTUMN_MONDAY = utc(2026, 10, 12, 12, 0)


async def run_all_steps(world: World, meetings: list[Meeting]) -> None:
    policy = world.coach.policy
    for meeting in meetings:
        for when in sorted(
            w
            for w in (policy.opens_at(meeting), reminder_at(meeting, policy), meeting.closes_at)
            if w is not None
        ):
            await world.at(when, meeting)


async def test_weekly_series_keeps_its_wall_time_across_spring_forward() -> None:
    store = await open_store("sqlite://")
    try:
        world = World(store, Clock(SPRING_MONDAY))
        await world.tracking_user(when="mon 9am weekly")
        first, second = (await world.meetings())[:2]
        assert first.start == utc(2026, 3, 23, 8, 0)  # 09:00 CET (UTC+1)
        assert second.start == utc(2026, 3, 30, 7, 0)  # 09:00 CEST (UTC+2)
        await run_all_steps(world, [first, second])
    finally:
        await store.close()
    opened = [t for t in world.notifier.texts() if t.startswith("🟢")]
    assert len(opened) == 2
    assert all("until 10:45 (Europe/Paris)" in text for text in opened)
    closed = [t for t in world.notifier.texts() if t.startswith("🔴")]
    assert "Your next window opens Mon 30 Mar 2026, 08:30 (Europe/Paris)." in closed[0]


async def test_weekly_series_keeps_its_wall_time_across_fall_back() -> None:
    store = await open_store("sqlite://")
    try:
        world = World(store, Clock(AUTUMN_MONDAY))
        await world.tracking_user(when="mon 9am weekly")
        first, second = (await world.meetings())[:2]
        assert first.start == utc(2026, 10, 19, 7, 0)  # 09:00 CEST
        assert second.start == utc(2026, 10, 26, 8, 0)  # 09:00 CET
        await run_all_steps(world, [first, second])
    finally:
        await store.close()
    opened = [t for t in world.notifier.texts() if t.startswith("🟢")]
    assert len(opened) == 2 and all("until 10:45 (Europe/Paris)" in t for t in opened)


async def test_a_window_that_spans_the_spring_forward_gap() -> None:
    store = await open_store("sqlite://")
    try:
        world = World(store, Clock(SPRING_MONDAY))
        await world.tracking_user(when="2026-03-29 01:45 for 30m")
        [meeting] = await world.meetings()
        policy = world.coach.policy
        # 01:15 CET to 04:15 CEST: two hours of real time, three on the wall clock.
        assert policy.opens_at(meeting) == utc(2026, 3, 29, 0, 15)
        assert policy.closes_at(meeting) == utc(2026, 3, 29, 2, 15)
        await run_all_steps(world, [meeting])
    finally:
        await store.close()
    texts = world.notifier.texts()
    assert "I'm available until 04:15 (Europe/Paris)" in texts[0]
    assert texts[1].startswith("⏳ Heads-up: your coaching window closes at 04:15 (Europe/Paris)")
    assert texts[2].startswith("🔴 Your coaching window closed at 04:15 (Europe/Paris).")


async def test_a_window_that_spans_the_fall_back_hour() -> None:
    store = await open_store("sqlite://")
    try:
        world = World(store, Clock(AUTUMN_MONDAY))
        await world.tracking_user(when="2026-10-25 01:30 for 30m")
        [meeting] = await world.meetings()
        assert meeting.start == utc(2026, 10, 24, 23, 30)  # 01:30 CEST
        await run_all_steps(world, [meeting])
    finally:
        await store.close()
    # Closes 01:00 UTC = 02:00 CET, after the 02:00-03:00 CEST hour was lived once already.
    assert "I'm available until 02:00 (Europe/Paris)" in world.notifier.texts()[0]


async def test_a_skipped_local_time_cannot_be_scheduled() -> None:
    from bots.commands import Reply, run_command

    store = await open_store("sqlite://")
    try:
        world = World(store, Clock(SPRING_MONDAY))
        await world.coach.set_timezone(ALICE, PARIS)
        result = await run_command(world.coach, ALICE, "/schedule 2026-03-29 02:30")
    finally:
        await store.close()
    assert isinstance(result, Reply) and result.error
    assert "02:30" in result.text


# --- The gate and the scheduler agree --------------------------------------------------------

BASE = utc(2026, 6, 1, 6, 0)

meeting_specs = st.lists(
    st.tuples(
        st.integers(0, 8 * 12).map(lambda n: timedelta(minutes=5 * n)),  # start offset
        st.sampled_from([10, 30, 45, 90]),  # minutes
        st.booleans(),  # cancelled before anything runs
    ),
    min_size=1,
    max_size=4,
)


def last_announcement(texts: list[str]) -> str | None:
    """The last message that said the window is open or closed (reminders and recaps aside)."""
    for text in reversed(texts):
        if text.startswith(("🟢", "🔴", "Sorry, I couldn't")) or text.startswith("Your meeting at"):
            return text
    return None


async def check_agreement(specs: list[tuple[timedelta, int, bool]]) -> None:
    store = await open_store("sqlite://")
    try:
        world = World(store, Clock(BASE - timedelta(days=1)))
        await world.coach.set_timezone(ALICE, PARIS)
        user = await world.coach.user(ALICE)
        await store.update_user(user.id, phase=Phase.TRACKING)
        user = await world.coach.user(ALICE)
        policy = world.coach.policy
        meetings = [
            Meeting(
                user_id=user.id,
                start=BASE + offset,
                duration_minutes=minutes,
                status=MeetingStatus.CANCELLED if cancelled else MeetingStatus.SCHEDULED,
                closes_at=BASE + offset + timedelta(minutes=minutes) + policy.after,
            )
            for offset, minutes, cancelled in specs
        ]
        await store.add_meetings(meetings)
        steps: dict[datetime, list[Meeting]] = {}
        for meeting in meetings:
            for when in step_times(meeting, policy).values():
                steps.setdefault(when, []).append(meeting)
        tz = world.coach.zone(user)
        for when in sorted(steps):
            await world.at(when, *steps[when])
            current = await store.list_meetings(user.id)
            access = decide_access(Phase.TRACKING, current, when, policy)
            said = last_announcement(world.notifier.texts())
            told_open = said is not None and not said.startswith(("🔴", "Sorry"))
            assert told_open == access.allowed, (when, said, access)
            if access.allowed:
                assert access.window_closes_at is not None
                assert f"until {messages.at(access.window_closes_at, tz, when)}" in str(said)
            for m in current:
                if m.status is not MeetingStatus.CANCELLED:
                    assert (m.status is MeetingStatus.OPEN) == policy.is_open(m, when), (m, when)
    finally:
        await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meeting_specs)
def test_the_gate_and_the_scheduler_agree_about_open_windows(
    specs: list[tuple[timedelta, int, bool]],
) -> None:
    asyncio.run(check_agreement(specs))
