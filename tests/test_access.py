"""The access policy (core/access.py): who may talk to the coach, and until when.

Mostly hypothesis properties, checked against a brute-force reference written here from the
rules in DESIGN.md, plus worked examples around the 2026 daylight-saving changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.access import WindowPolicy, decide_access, describe_access, merged_close
from core.models import Access, AccessReason, Meeting, MeetingStatus, Phase
from core.zones import format_local

MS = timedelta(milliseconds=1)
DEFAULT = WindowPolicy()
BASE = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LIVE_STATUSES = [s for s in MeetingStatus if s is not MeetingStatus.CANCELLED]


def meeting(
    start: datetime,
    minutes: int = 45,
    *,
    status: MeetingStatus = MeetingStatus.SCHEDULED,
    policy: WindowPolicy = DEFAULT,
) -> Meeting:
    return Meeting(
        user_id="u1",
        start=start,
        duration_minutes=minutes,
        status=status,
        closes_at=start + timedelta(minutes=minutes) + policy.after,
    )


def tracking(meetings: Sequence[Meeting], now: datetime, policy: WindowPolicy = DEFAULT) -> Access:
    return decide_access(Phase.TRACKING, meetings, now, policy)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


# --- an independent reference: brute force over the instants where anything can change ---


def reference_window(m: Meeting, policy: WindowPolicy) -> tuple[datetime, datetime]:
    """[start - before, start + duration + after), computed without core/access.py."""
    end = m.start + timedelta(minutes=m.duration_minutes)
    return m.start - policy.before, end + policy.after


def reference_decision(
    phase: Phase, meetings: Sequence[Meeting], now: datetime, policy: WindowPolicy
) -> tuple[bool, AccessReason, datetime | None, datetime | None]:
    """(allowed, reason, window_closes_at, next_opens_at), by brute force.

    Coverage of the union of windows only changes at window edges, so the merged close is the
    first window close after `now` that no window covers.
    """
    windows = [
        reference_window(m, policy) for m in meetings if m.status is not MeetingStatus.CANCELLED
    ]

    def covered(t: datetime) -> bool:
        return any(opens <= t < closes for opens, closes in windows)

    next_opens = min((opens for opens, _ in windows if opens > now), default=None)
    if phase is Phase.GOAL_SETTING:
        return True, AccessReason.GOAL_SETTING, None, next_opens
    if covered(now):
        closes_after_now = sorted(closes for _, closes in windows if closes > now)
        merged = next(c for c in closes_after_now if not covered(c))
        return True, AccessReason.IN_WINDOW, merged, next_opens
    reason = AccessReason.NO_MEETING if next_opens is None else AccessReason.OUTSIDE_WINDOW
    return False, reason, None, next_opens


# --- strategies ---

policies = st.builds(
    WindowPolicy,
    before=st.integers(0, 180).map(lambda m: timedelta(minutes=m)),
    after=st.integers(0, 180).map(lambda m: timedelta(minutes=m)),
)
durations = st.integers(10, 240)
statuses = st.sampled_from(list(MeetingStatus))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2099, 12, 31),
    timezones=st.just(UTC),
).map(lambda dt: dt.replace(microsecond=dt.microsecond // 1000 * 1000))


@st.composite
def meeting_lists(draw: st.DrawFn, policy: WindowPolicy = DEFAULT) -> list[Meeting]:
    """Up to 6 meetings within half a day, so that windows often overlap, touch or leave gaps.

    Some are placed back to back on purpose so that touching windows are common.
    """
    meetings: list[Meeting] = []
    for _ in range(draw(st.integers(0, 6))):
        minutes = draw(durations)
        if meetings and draw(st.booleans()):
            previous = draw(st.sampled_from(meetings))
            _, previous_close = reference_window(previous, policy)
            gap = draw(st.sampled_from([-MS, timedelta(0), MS, timedelta(minutes=1)]))
            start = previous_close + policy.before + gap
        else:
            start = BASE + timedelta(minutes=draw(st.integers(0, 12 * 60)))
        meetings.append(meeting(start, minutes, status=draw(statuses), policy=policy))
    return meetings


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[WindowPolicy, list[Meeting], datetime]:
    """A policy, meetings, and a `now` that is often exactly on (or 1 ms off) a window edge."""
    policy = draw(st.one_of(st.just(DEFAULT), policies))
    meetings = draw(meeting_lists(policy))
    edges = [edge for m in meetings for edge in reference_window(m, policy)]
    if edges and draw(st.booleans()):
        now = draw(st.sampled_from(edges)) + draw(st.sampled_from([-MS, timedelta(0), MS]))
    else:
        now = BASE + timedelta(milliseconds=draw(st.integers(-4 * 3600_000, 24 * 3600_000)))
    return policy, meetings, now


# --- boundaries ---


@given(start=instants, minutes=durations, policy=st.one_of(st.just(DEFAULT), policies))
def test_window_opens_exactly_before_minutes_ahead_and_not_one_ms_earlier(
    start: datetime, minutes: int, policy: WindowPolicy
) -> None:
    m = meeting(start, minutes, policy=policy)
    opens = start - policy.before
    assert tracking([m], opens, policy).allowed
    assert tracking([m], opens, policy).meeting == m
    before_opening = tracking([m], opens - MS, policy)
    assert not before_opening.allowed
    assert before_opening.reason is AccessReason.OUTSIDE_WINDOW
    assert before_opening.next_opens_at == opens


@given(start=instants, minutes=durations, policy=st.one_of(st.just(DEFAULT), policies))
def test_window_closes_exactly_after_minutes_past_the_end_and_is_open_one_ms_earlier(
    start: datetime, minutes: int, policy: WindowPolicy
) -> None:
    m = meeting(start, minutes, policy=policy)
    closes = start + timedelta(minutes=minutes) + policy.after
    last_moment = tracking([m], closes - MS, policy)
    assert last_moment.allowed
    assert last_moment.window_closes_at == closes
    after_closing = tracking([m], closes, policy)
    assert not after_closing.allowed
    assert after_closing.reason is AccessReason.NO_MEETING


def test_default_window_is_30_minutes_before_until_60_minutes_after() -> None:
    m = meeting(BASE, 45)
    assert not tracking([m], BASE - timedelta(minutes=30) - MS).allowed
    assert tracking([m], BASE - timedelta(minutes=30)).allowed
    assert tracking([m], BASE + timedelta(minutes=45 + 60) - MS).allowed
    assert not tracking([m], BASE + timedelta(minutes=45 + 60)).allowed


@given(start=instants, minutes=durations, offset_ms=st.integers(-(10**8), 10**8))
def test_a_now_in_another_zone_means_the_same_instant(
    start: datetime, minutes: int, offset_ms: int
) -> None:
    m = meeting(start, minutes)
    now = start + timedelta(milliseconds=offset_ms)
    assert tracking([m], now.astimezone(NEW_YORK)) == tracking([m], now)
    assert tracking([m], now.astimezone(PARIS)) == tracking([m], now)


# --- goal setting ---


@given(scenario=scenarios())
def test_goal_setting_is_always_allowed_whatever_the_meetings(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    access = decide_access(Phase.GOAL_SETTING, meetings, now, policy)
    assert access.allowed
    assert access.reason is AccessReason.GOAL_SETTING
    assert access.phase is Phase.GOAL_SETTING


def test_goal_setting_is_allowed_with_no_meetings_at_all() -> None:
    access = decide_access(Phase.GOAL_SETTING, [], BASE, DEFAULT)
    assert access.allowed and access.reason is AccessReason.GOAL_SETTING
    assert access.next_opens_at is None and access.next_meeting is None


# --- cancelled meetings ---


@given(scenario=scenarios(), phase=st.sampled_from(list(Phase)))
def test_cancelled_meetings_change_nothing(
    scenario: tuple[WindowPolicy, list[Meeting], datetime], phase: Phase
) -> None:
    policy, meetings, now = scenario
    live = [m for m in meetings if m.status is not MeetingStatus.CANCELLED]
    assert decide_access(phase, meetings, now, policy) == decide_access(phase, live, now, policy)


@given(scenario=scenarios())
def test_a_cancelled_meeting_is_never_the_open_or_next_meeting(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    for phase in Phase:
        access = decide_access(phase, meetings, now, policy)
        assert access.meeting is None or access.meeting.status is not MeetingStatus.CANCELLED
        assert (
            access.next_meeting is None or access.next_meeting.status is not MeetingStatus.CANCELLED
        )


@given(minutes=durations, offset_ms=st.integers(-3 * 3600_000, 6 * 3600_000))
def test_only_cancelled_meetings_means_no_meeting(minutes: int, offset_ms: int) -> None:
    cancelled = meeting(BASE, minutes, status=MeetingStatus.CANCELLED)
    access = tracking([cancelled], BASE + timedelta(milliseconds=offset_ms))
    assert not access.allowed
    assert access.reason is AccessReason.NO_MEETING
    assert access.next_meeting is None and access.next_opens_at is None


@pytest.mark.parametrize("status", LIVE_STATUSES)
def test_every_status_but_cancelled_opens_a_window(status: MeetingStatus) -> None:
    assert tracking([meeting(BASE, status=status)], BASE).allowed


# --- overlapping, touching and separate windows ---


@given(scenario=scenarios())
def test_allowed_exactly_when_now_is_in_the_union_of_windows(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    live = [m for m in meetings if m.status is not MeetingStatus.CANCELLED]
    in_union = any(
        opens <= now < closes for opens, closes in (reference_window(m, policy) for m in live)
    )
    access = tracking(meetings, now, policy)
    assert access.allowed is in_union
    assert (access.reason is AccessReason.IN_WINDOW) is in_union


@given(scenario=scenarios())
def test_the_open_meeting_is_open_now_and_the_earliest_starting_one(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    access = tracking(meetings, now, policy)
    open_now = [
        m
        for m in meetings
        if m.status is not MeetingStatus.CANCELLED
        and reference_window(m, policy)[0] <= now < reference_window(m, policy)[1]
    ]
    if not open_now:
        assert access.meeting is None
        return
    assert access.meeting in open_now
    assert access.meeting.start == min(m.start for m in open_now)


@given(scenario=scenarios())
def test_window_closes_at_the_end_of_the_merged_run_and_never_before_the_meetings_own_close(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    access = tracking(meetings, now, policy)
    if not access.allowed:
        assert access.window_closes_at is None
        return
    assert access.meeting is not None and access.window_closes_at is not None
    assert access.window_closes_at > now
    assert access.window_closes_at >= reference_window(access.meeting, policy)[1]
    # the whole way to the close is reachable, and the close itself is not
    assert tracking(meetings, access.window_closes_at - MS, policy).allowed
    assert not tracking(meetings, access.window_closes_at, policy).allowed


@given(scenario=scenarios())
def test_window_closes_at_agrees_with_merged_close(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    access = tracking(meetings, now, policy)
    expected = merged_close(meetings, now, policy)
    assert access.window_closes_at == (expected if access.allowed else None)
    assert (expected is not None) is access.allowed


def test_touching_windows_merge_into_one() -> None:
    first = meeting(BASE, 60)  # window [11:30, 14:00)
    second = meeting(BASE + timedelta(minutes=150), 30)  # window [14:00, 16:00)
    access = tracking([first, second], BASE)
    assert access.window_closes_at == BASE + timedelta(minutes=240)
    assert tracking([first, second], BASE + timedelta(minutes=120)).meeting == second


def test_windows_one_ms_apart_do_not_merge() -> None:
    first = meeting(BASE, 60)  # window [11:30, 14:00)
    second = meeting(BASE + timedelta(minutes=150) + MS, 30)
    access = tracking([first, second], BASE)
    assert access.window_closes_at == BASE + timedelta(minutes=120)
    in_the_gap = tracking([first, second], BASE + timedelta(minutes=120))
    assert not in_the_gap.allowed
    assert in_the_gap.reason is AccessReason.OUTSIDE_WINDOW
    assert in_the_gap.next_opens_at == BASE + timedelta(minutes=120) + MS
    assert in_the_gap.next_meeting == second


def test_a_short_meeting_inside_a_long_one_does_not_shorten_the_window() -> None:
    long = meeting(BASE, 240)  # window [11:30, 17:00)
    short = meeting(BASE + timedelta(minutes=30), 10)  # window [12:00, 13:40)
    access = tracking([short, long], BASE + timedelta(minutes=35))
    assert access.meeting == long
    assert access.window_closes_at == BASE + timedelta(hours=5)


def test_a_chain_of_overlaps_is_followed_to_its_end() -> None:
    chain = [meeting(BASE + timedelta(hours=2 * i), 60) for i in range(4)]  # each overlaps next
    lone = meeting(BASE + timedelta(hours=12), 60)
    access = tracking([lone, *reversed(chain)], BASE)
    assert access.window_closes_at == chain[-1].start + timedelta(minutes=120)
    assert access.next_opens_at == chain[1].start - timedelta(minutes=30)


def test_a_cancelled_meeting_does_not_bridge_two_windows() -> None:
    first = meeting(BASE, 60)  # window [11:30, 14:00)
    bridge = meeting(BASE + timedelta(minutes=120), 60, status=MeetingStatus.CANCELLED)
    last = meeting(BASE + timedelta(minutes=240), 60)  # window [15:30, 18:00)
    access = tracking([first, bridge, last], BASE)
    assert access.window_closes_at == BASE + timedelta(minutes=120)
    gap = tracking([first, bridge, last], BASE + timedelta(minutes=150))
    assert not gap.allowed
    assert gap.next_opens_at == BASE + timedelta(minutes=210)
    assert gap.next_meeting == last


# --- the next opening ---


@given(scenario=scenarios(), phase=st.sampled_from(list(Phase)))
def test_next_opens_at_is_the_earliest_opening_after_now(
    scenario: tuple[WindowPolicy, list[Meeting], datetime], phase: Phase
) -> None:
    policy, meetings, now = scenario
    access = decide_access(phase, meetings, now, policy)
    future = [
        reference_window(m, policy)[0]
        for m in meetings
        if m.status is not MeetingStatus.CANCELLED and reference_window(m, policy)[0] > now
    ]
    if not future:
        assert access.next_opens_at is None and access.next_meeting is None
        return
    assert access.next_opens_at is not None and access.next_meeting is not None
    assert access.next_opens_at > now
    assert access.next_opens_at == min(future)
    assert reference_window(access.next_meeting, policy)[0] == access.next_opens_at


@given(scenario=scenarios())
def test_no_meeting_exactly_when_closed_and_nothing_opens_later(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    access = tracking(meetings, now, policy)
    if access.allowed:
        return
    assert (access.reason is AccessReason.NO_MEETING) is (access.next_opens_at is None)
    assert (access.reason is AccessReason.OUTSIDE_WINDOW) is (access.next_opens_at is not None)
    assert access.meeting is None


@given(scenario=scenarios())
def test_between_windows_nothing_is_reachable_until_the_next_opening(
    scenario: tuple[WindowPolicy, list[Meeting], datetime],
) -> None:
    policy, meetings, now = scenario
    access = tracking(meetings, now, policy)
    if access.allowed or access.next_opens_at is None:
        return
    assert not tracking(meetings, access.next_opens_at - MS, policy).allowed
    reopened = tracking(meetings, access.next_opens_at, policy)
    assert reopened.allowed
    assert reopened.meeting is not None


# --- the reference implementation ---


@settings(max_examples=300)
@given(scenario=scenarios(), phase=st.sampled_from(list(Phase)))
def test_decide_access_matches_the_brute_force_reference(
    scenario: tuple[WindowPolicy, list[Meeting], datetime], phase: Phase
) -> None:
    policy, meetings, now = scenario
    access = decide_access(phase, meetings, now, policy)
    assert (
        access.allowed,
        access.reason,
        access.window_closes_at,
        access.next_opens_at,
    ) == reference_decision(phase, meetings, now, policy)
    assert access.phase is phase


@given(scenario=scenarios(), phase=st.sampled_from(list(Phase)), seed=st.randoms())
def test_the_order_of_meetings_does_not_matter(
    scenario: tuple[WindowPolicy, list[Meeting], datetime], phase: Phase, seed: object
) -> None:
    policy, meetings, now = scenario
    shuffled = list(meetings)
    seed.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = decide_access(phase, meetings, now, policy), decide_access(phase, shuffled, now, policy)
    assert (a.allowed, a.reason, a.window_closes_at, a.next_opens_at) == (
        b.allowed,
        b.reason,
        b.window_closes_at,
        b.next_opens_at,
    )


def test_decide_access_accepts_a_one_shot_iterable() -> None:
    meetings = [meeting(BASE, 45), meeting(BASE + timedelta(hours=5), 45)]
    access = tracking(iter(meetings), BASE)  # type: ignore[arg-type]
    assert access.allowed and access.next_meeting == meetings[1]
    assert access.window_closes_at == BASE + timedelta(minutes=105)


# --- daylight-saving changes (2026): storage is UTC, the user's zone only renders ---

DST_CHANGES = [
    pytest.param(NEW_YORK, datetime(2026, 3, 8, 7, 0, tzinfo=UTC), id="us-spring-forward"),
    pytest.param(PARIS, datetime(2026, 3, 29, 1, 0, tzinfo=UTC), id="eu-spring-forward"),
    pytest.param(PARIS, datetime(2026, 10, 25, 1, 0, tzinfo=UTC), id="eu-fall-back"),
    pytest.param(NEW_YORK, datetime(2026, 11, 1, 6, 0, tzinfo=UTC), id="us-fall-back"),
]


@pytest.mark.parametrize(("zone", "change"), DST_CHANGES)
def test_the_dst_changes_are_where_the_tests_assume(zone: ZoneInfo, change: datetime) -> None:
    assert (change - MS).astimezone(zone).utcoffset() != change.astimezone(zone).utcoffset()


@pytest.mark.parametrize(("zone", "change"), DST_CHANGES)
@settings(max_examples=40)
@given(offset_minutes=st.integers(-6 * 60, 6 * 60), minutes=durations)
def test_a_window_lasts_duration_plus_90_minutes_of_real_time_across_a_dst_change(
    zone: ZoneInfo, change: datetime, offset_minutes: int, minutes: int
) -> None:
    start = change + timedelta(minutes=offset_minutes)
    m = meeting(start, minutes)
    opened = tracking([m], LONG_AGO).next_opens_at
    assert opened is not None
    access = tracking([m], opened)
    assert access.allowed and access.window_closes_at is not None
    closes = access.window_closes_at
    assert closes - opened == timedelta(minutes=minutes + 90)
    # the user's wall clock jumps by the offset change, the real window does not
    local_open, local_close = opened.astimezone(zone), closes.astimezone(zone)
    offset_change = local_close.utcoffset() - local_open.utcoffset()  # type: ignore[operator]
    wall_span = local_close.replace(tzinfo=None) - local_open.replace(tzinfo=None)
    assert wall_span == timedelta(minutes=minutes + 90) + offset_change
    in_window = describe_access(access, lambda t: format_local(t, zone), DEFAULT)
    assert format_local(closes, zone) in in_window


@pytest.mark.parametrize(
    ("fold", "utc_start"),
    [
        pytest.param(0, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), id="first-0130-EDT"),
        pytest.param(1, datetime(2026, 11, 1, 6, 30, tzinfo=UTC), id="second-0130-EST"),
    ],
)
def test_a_0130_meeting_on_the_new_york_fall_back_day_opens_around_its_utc_instant(
    fold: int, utc_start: datetime
) -> None:
    local = datetime(2026, 11, 1, 1, 30, fold=fold, tzinfo=NEW_YORK)
    assert local.astimezone(UTC) == utc_start
    m = meeting(local, 45)
    assert m.start == utc_start
    assert not tracking([m], utc_start - timedelta(minutes=30) - MS).allowed
    assert tracking([m], utc_start - timedelta(minutes=30)).allowed
    assert tracking([m], utc_start + timedelta(minutes=105) - MS).allowed
    assert not tracking([m], utc_start + timedelta(minutes=105)).allowed
    # a local `now` compares by instant, not by wall clock, even inside the repeated hour
    assert tracking([m], (utc_start - timedelta(minutes=30)).astimezone(NEW_YORK)).allowed
    assert not tracking([m], (utc_start - timedelta(minutes=31)).astimezone(NEW_YORK)).allowed


def test_new_york_fall_back_renders_the_wall_clock_the_user_sees() -> None:
    m = meeting(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), 45)  # 01:30 EDT, first of the two
    in_ny = lambda t: format_local(t, NEW_YORK)  # noqa: E731
    before = tracking([m], datetime(2026, 11, 1, 4, 0, tzinfo=UTC))
    assert "Sun 1 Nov 2026, 01:00 (America/New_York)" in describe_access(before, in_ny, DEFAULT)
    during = tracking([m], datetime(2026, 11, 1, 5, 0, tzinfo=UTC))
    # closes 07:15 UTC = 02:15 EST: 2h15 of real time after 01:00 EDT, 1h15 on the wall clock
    assert "Sun 1 Nov 2026, 02:15 (America/New_York)" in describe_access(during, in_ny, DEFAULT)


def test_paris_spring_forward_renders_the_close_after_the_skipped_hour() -> None:
    m = meeting(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 60)  # 01:30 CET
    in_paris = lambda t: format_local(t, PARIS)  # noqa: E731
    before = tracking([m], datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert "Sun 29 Mar 2026, 01:00 (Europe/Paris)" in describe_access(before, in_paris, DEFAULT)
    during = tracking([m], datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    assert during.window_closes_at == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    assert "Sun 29 Mar 2026, 04:30 (Europe/Paris)" in describe_access(during, in_paris, DEFAULT)


def test_paris_fall_back_renders_the_close_in_winter_time() -> None:
    m = meeting(datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 60)  # Sun 01:30 CEST
    in_paris = lambda t: format_local(t, PARIS)  # noqa: E731
    before = tracking([m], datetime(2026, 10, 24, 20, 0, tzinfo=UTC))
    assert "Sun 25 Oct 2026, 01:00 (Europe/Paris)" in describe_access(before, in_paris, DEFAULT)
    during = tracking([m], datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
    assert "Sun 25 Oct 2026, 02:30 (Europe/Paris)" in describe_access(during, in_paris, DEFAULT)


def test_new_york_spring_forward_renders_the_close_in_summer_time() -> None:
    m = meeting(datetime(2026, 3, 8, 6, 30, tzinfo=UTC), 30)  # 01:30 EST
    in_ny = lambda t: format_local(t, NEW_YORK)  # noqa: E731
    during = tracking([m], datetime(2026, 3, 8, 6, 0, tzinfo=UTC))
    assert during.allowed
    assert "Sun 8 Mar 2026, 04:00 (America/New_York)" in describe_access(during, in_ny, DEFAULT)


# --- describe_access ---


def render(dt: datetime) -> str:
    return f"<{iso(dt)}>"


@given(scenario=scenarios(), phase=st.sampled_from(list(Phase)))
def test_every_decision_is_described_in_a_non_empty_sentence(
    scenario: tuple[WindowPolicy, list[Meeting], datetime], phase: Phase
) -> None:
    policy, meetings, now = scenario
    access = decide_access(phase, meetings, now, policy)
    text = describe_access(access, render, policy)
    assert text.strip()
    assert text.rstrip()[-1] in ".!"
    match access.reason:
        case AccessReason.IN_WINDOW:
            assert access.window_closes_at is not None
            assert render(access.window_closes_at) in text
        case AccessReason.OUTSIDE_WINDOW:
            assert access.next_opens_at is not None
            assert render(access.next_opens_at) in text
        case AccessReason.NO_MEETING:
            assert "/schedule" in text
        case AccessReason.GOAL_SETTING:
            assert "goal" in text.lower()


@pytest.mark.parametrize("reason", list(AccessReason))
def test_each_reason_has_its_own_sentence(reason: AccessReason) -> None:
    access = Access(
        allowed=reason in (AccessReason.GOAL_SETTING, AccessReason.IN_WINDOW),
        reason=reason,
        phase=Phase.GOAL_SETTING if reason is AccessReason.GOAL_SETTING else Phase.TRACKING,
        window_closes_at=BASE,
        next_opens_at=BASE + timedelta(hours=1),
    )
    assert describe_access(access, render, DEFAULT).strip()
    others = {
        describe_access(access.model_copy(update={"reason": r}), render, DEFAULT)
        for r in AccessReason
    }
    assert len(others) == len(AccessReason)


def test_outside_window_names_the_next_opening_and_the_policy() -> None:
    access = tracking([meeting(BASE, 45)], BASE - timedelta(hours=2))
    text = describe_access(access, render, DEFAULT)
    assert render(BASE - timedelta(minutes=30)) in text
    assert "30 minutes before" in text and "60 minutes after" in text


def test_no_meeting_says_how_to_schedule_or_go_back_to_goal_setting() -> None:
    text = describe_access(tracking([], BASE), render, DEFAULT)
    assert "no meeting" in text
    assert "/schedule" in text and "/goalsetting" in text


def test_a_non_default_policy_is_described_with_its_own_minutes() -> None:
    policy = WindowPolicy(before=timedelta(minutes=15), after=timedelta(minutes=90))
    text = describe_access(tracking([], BASE, policy), render, policy)
    assert "15 minutes before" in text and "90 minutes after" in text


@pytest.mark.parametrize(
    ("before", "after", "wording"),
    [
        (0, 60, "from a meeting's start until 60 minutes after it ends"),
        (30, 0, "from 30 minutes before a meeting until it ends"),
        (0, 0, "from a meeting's start until it ends"),
        (1, 1, "from 1 minute before a meeting until 1 minute after it ends"),
    ],
)
def test_zero_and_one_minute_policies_read_naturally(before: int, after: int, wording: str) -> None:
    policy = WindowPolicy(before=timedelta(minutes=before), after=timedelta(minutes=after))
    for access in (tracking([], BASE, policy), tracking([meeting(BASE)], LONG_AGO, policy)):
        text = describe_access(access, render, policy)
        assert wording in text
        assert not re.search(r"\b(0|1) minutes", text)


def test_in_window_names_the_merged_close_not_the_meetings_own() -> None:
    first, second = meeting(BASE, 60), meeting(BASE + timedelta(minutes=120), 60)
    access = tracking([first, second], BASE)
    assert access.meeting == first
    text = describe_access(access, render, DEFAULT)
    assert render(BASE + timedelta(minutes=240)) in text
    assert render(BASE + timedelta(minutes=120)) not in text
