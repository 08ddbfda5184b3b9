"""One person across platforms (core/linking.py), through the Coach: `/coach link` on one
platform, the code typed on another, `/coach unlink`. A real store (both backends) and the
loopback fake of Anthropic, on Monday 23 November 2026, 09:00 UTC (tests/support.T0)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.coach import Coach
from core.errors import CoachError
from core.events import Welcome
from core.keys import LINK_CODE_ALPHABET, LINK_CODE_LENGTH
from core.linking import (
    BAD_CODE_TEXT,
    NOT_A_CODE_TEXT,
    ONLY_IDENTITY_TEXT,
    SAME_USER_TEXT,
)
from core.models import GoalStatus, Identity, Phase, Platform, Role
from core.session import MeetingsChanged
from core.store import Store
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support import FakeClock, coach_on, collect

SLACK = Identity(platform=Platform.SLACK, external_id="U1", workspace_id="T1")
DISCORD = Identity(platform=Platform.DISCORD, external_id="D1", display_name="ada")
WEB = Identity(platform=Platform.WEB, external_id="ada")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def coach(store: Store, fake: FakeAnthropic, clock: FakeClock) -> AsyncIterator[Coach]:
    async with coach_on(store, fake.base_url, clock) as coach:
        yield coach


async def link(coach: Coach, maker: Identity, joiner: Identity) -> None:
    await coach.link(joiner, await coach.link_code(maker))


async def history(coach: Coach, identity: Identity) -> list[tuple[Role, str]]:
    page = await coach.history(identity, page_size=50)
    return [(m.role, m.text) for m in reversed(page.messages)]


async def refused(coach: Coach, identity: Identity, code: str) -> str:
    with pytest.raises(CoachError) as error:
        await coach.link(identity, code)
    return error.value.user_text


# Linking: one user, everything together


async def test_a_code_from_slack_typed_on_discord_makes_one_user(
    coach: Coach, clock: FakeClock
) -> None:
    maker = await coach.user(SLACK)
    await coach.add_goal(SLACK, "Run 5 km")
    await collect(coach, SLACK, "hello from slack")
    clock.advance(minutes=1)
    await coach.add_goal(DISCORD, "Read a book a month")
    await collect(coach, DISCORD, "hello from discord")
    clock.advance(minutes=1)
    await collect(coach, SLACK, "slack again")

    code = await coach.link_code(SLACK)
    linked = await coach.link(DISCORD, code)

    assert len(code) == LINK_CODE_LENGTH and set(code) <= set(LINK_CODE_ALPHABET)
    assert linked.user.id == maker.id  # the code-maker's user stays
    assert (await coach.user(DISCORD)).id == (await coach.user(SLACK)).id == maker.id
    assert linked.identities == [SLACK, DISCORD] == await coach.identities(DISCORD)
    assert (linked.goals, linked.meetings, linked.messages) == (1, 0, 2)
    assert [g.text for g in await coach.goals(DISCORD)] == ["Run 5 km", "Read a book a month"]
    # One history, by time, the same from either platform.
    assert await history(coach, DISCORD) == await history(coach, SLACK) == [
        (Role.USER, "hello from slack"),
        (Role.ASSISTANT, "Coach: hello from slack"),
        (Role.USER, "hello from discord"),
        (Role.ASSISTANT, "Coach: hello from discord"),
        (Role.USER, "slack again"),
        (Role.ASSISTANT, "Coach: slack again"),
    ]
    assert [u.id for u in await coach.users()] == [maker.id]


async def test_the_merged_user_talks_with_the_whole_history_in_context(
    coach: Coach, fake: FakeAnthropic, clock: FakeClock
) -> None:
    await collect(coach, DISCORD, "my dog is called Rex")
    clock.advance(minutes=1)
    await link(coach, SLACK, DISCORD)
    await collect(coach, SLACK, "what is my dog called?")
    prompt = str(fake.requests[-1].body["messages"])
    assert "my dog is called Rex" in prompt


async def test_a_code_works_once(coach: Coach) -> None:
    code = await coach.link_code(SLACK)
    await coach.link(DISCORD, code)
    assert await refused(coach, WEB, code) == BAD_CODE_TEXT
    assert await coach.identities(SLACK) == [SLACK, DISCORD]
    assert await coach.identities(WEB) == [WEB]


async def test_a_code_lasts_ten_minutes(coach: Coach, clock: FakeClock) -> None:
    stale = await coach.link_code(SLACK)
    clock.advance(minutes=10)
    assert await refused(coach, DISCORD, stale) == BAD_CODE_TEXT
    assert await coach.identities(DISCORD) == [DISCORD]

    fresh = await coach.link_code(SLACK)
    clock.advance(minutes=9, seconds=59)
    linked = await coach.link(DISCORD, fresh)
    assert linked.identities == [SLACK, DISCORD]


async def test_a_code_is_read_as_people_type_it(coach: Coach) -> None:
    code = await coach.link_code(SLACK)
    typed = f" {code[:4].lower()}-{code[4:]} "
    assert (await coach.link(DISCORD, typed)).identities == [SLACK, DISCORD]


@pytest.mark.parametrize("typed", ["", "abc", "ABCD-EFG0", "ABCDEFGHJ", "IIIIIIII"])
async def test_what_cannot_be_a_code_is_refused_without_using_any(
    coach: Coach, typed: str
) -> None:
    code = await coach.link_code(SLACK)
    assert await refused(coach, DISCORD, typed) == NOT_A_CODE_TEXT
    assert (await coach.link(DISCORD, code)).identities == [SLACK, DISCORD]


async def test_a_wrong_code_is_refused(coach: Coach) -> None:
    await coach.link_code(SLACK)
    assert await refused(coach, DISCORD, "ABCDEFGH") == BAD_CODE_TEXT


async def test_a_code_from_the_same_user_links_nothing(coach: Coach) -> None:
    assert await refused(coach, SLACK, await coach.link_code(SLACK)) == SAME_USER_TEXT
    await link(coach, SLACK, DISCORD)
    assert await refused(coach, DISCORD, await coach.link_code(SLACK)) == SAME_USER_TEXT
    assert await refused(coach, SLACK, await coach.link_code(DISCORD)) == SAME_USER_TEXT
    assert await coach.identities(SLACK) == [SLACK, DISCORD]


async def test_an_identity_already_linked_brings_its_others_along(coach: Coach) -> None:
    await coach.add_goal(DISCORD, "Sleep by 11")
    await link(coach, SLACK, DISCORD)
    web_user = await coach.user(WEB)

    linked = await coach.link(DISCORD, await coach.link_code(WEB))

    assert linked.user.id == web_user.id
    assert {(i.platform, i.external_id) for i in linked.identities} == {
        (Platform.WEB, "ada"),
        (Platform.SLACK, "U1"),
        (Platform.DISCORD, "D1"),
    }
    for each in (SLACK, DISCORD, WEB):
        assert (await coach.user(each)).id == web_user.id
    assert [g.text for g in await coach.goals(WEB)] == ["Sleep by 11"]


async def test_a_web_token_of_the_merged_user_opens_the_one_user(coach: Coach) -> None:
    token = await coach.keys.new_token(await coach.user(WEB))
    linked = await coach.link(WEB, await coach.link_code(SLACK))
    assert await coach.keys.user_id(token) == linked.user.id


async def test_export_lists_every_identity(coach: Coach) -> None:
    await link(coach, SLACK, DISCORD)
    data = await coach.export(DISCORD)
    assert data["identities"] == [
        SLACK.model_dump(mode="json"),
        DISCORD.model_dump(mode="json"),
    ]
    assert data["user"]["identity"] == SLACK.model_dump(mode="json")


async def test_forget_after_a_link_forgets_every_identity(coach: Coach) -> None:
    await coach.add_goal(DISCORD, "Run")
    await link(coach, SLACK, DISCORD)
    await coach.forget(SLACK)
    assert await coach.goals(DISCORD) == []
    assert await coach.identities(DISCORD) == [DISCORD]
    assert await coach.identities(SLACK) == [SLACK]


# Clashes, settled by the rules in core/linking.py


@pytest.mark.parametrize(
    ("maker_zone", "joiner_zone", "kept"),
    [
        ("Europe/Berlin", "America/New_York", "Europe/Berlin"),
        (None, "America/New_York", "America/New_York"),
        ("Europe/Berlin", None, "Europe/Berlin"),
        (None, None, None),
    ],
)
async def test_the_code_makers_timezone_wins_if_it_has_one(
    coach: Coach, maker_zone: str | None, joiner_zone: str | None, kept: str | None
) -> None:
    for identity, zone in ((SLACK, maker_zone), (DISCORD, joiner_zone)):
        await coach.user(identity)
        if zone:
            await coach.set_timezone(identity, zone)
    linked = await coach.link(DISCORD, await coach.link_code(SLACK))
    assert linked.user.timezone == kept == (await coach.user(DISCORD)).timezone


async def ready_to_track(coach: Coach, identity: Identity, when: str = "tomorrow 9am") -> None:
    await coach.add_goal(identity, "Run")
    await coach.schedule(identity, when)
    await coach.start_tracking(identity)


@pytest.mark.parametrize("tracking", [SLACK, DISCORD])
async def test_tracking_on_either_side_stays_tracking(coach: Coach, tracking: Identity) -> None:
    await ready_to_track(coach, tracking)
    await coach.user(SLACK if tracking is DISCORD else DISCORD)
    linked = await coach.link(DISCORD, await coach.link_code(SLACK))
    assert linked.user.phase is Phase.TRACKING
    assert not (await coach.access(SLACK)).access.allowed  # outside the window now


async def test_tracking_without_an_upcoming_meeting_becomes_goal_setting(
    coach: Coach, clock: FakeClock
) -> None:
    await ready_to_track(coach, DISCORD, "today 10am")
    clock.advance(hours=1, minutes=1)  # the meeting has started: none is upcoming
    await coach.add_goal(SLACK, "Read")
    linked = await coach.link(DISCORD, await coach.link_code(SLACK))
    assert linked.user.phase is Phase.GOAL_SETTING


async def test_tracking_without_an_active_goal_becomes_goal_setting(coach: Coach) -> None:
    await ready_to_track(coach, DISCORD)
    await coach.close_goal(DISCORD, "1", GoalStatus.DONE)
    linked = await coach.link(DISCORD, await coach.link_code(SLACK))
    assert linked.user.phase is Phase.GOAL_SETTING


async def test_neither_tracking_stays_goal_setting(coach: Coach) -> None:
    await coach.add_goal(SLACK, "Run")
    await coach.schedule(DISCORD, "tomorrow 9am")
    linked = await coach.link(DISCORD, await coach.link_code(SLACK))
    assert linked.user.phase is Phase.GOAL_SETTING


async def test_welcomed_on_either_side_is_not_welcomed_again(coach: Coach) -> None:
    first = await collect(coach, DISCORD, "hi")
    assert isinstance(first[0], Welcome)
    await coach.user(SLACK)  # known, never welcomed
    await link(coach, SLACK, DISCORD)
    assert not any(isinstance(event, Welcome) for event in await collect(coach, SLACK, "hey"))


async def test_all_meetings_are_kept_and_overlaps_named(coach: Coach) -> None:
    ours = (await coach.schedule(SLACK, "tomorrow 9am for 60m"))[0]
    theirs = (await coach.schedule(DISCORD, "tomorrow 9:30am for 30m"))[0]
    apart = (await coach.schedule(DISCORD, "wednesday 3pm"))[0]
    planned: list[MeetingsChanged] = []
    coach.meeting_observers.append(planned.append)

    linked = await coach.link(DISCORD, await coach.link_code(SLACK))

    assert [m.id for m in await coach.meetings(DISCORD)] == [ours.id, theirs.id, apart.id]
    assert [(a.id, b.id) for a, b in linked.overlaps] == [(ours.id, theirs.id)]
    assert linked.meetings == 2
    # The scheduler re-plans the moved meetings as the code-maker's.
    assert [(c.user_id, [m.id for m in c.added]) for c in planned] == [
        (linked.user.id, [theirs.id, apart.id])
    ]
    assert all(m.user_id == linked.user.id for m in planned[0].added)


async def test_the_notified_identity_stays_one_the_scheduler_can_reach(coach: Coach) -> None:
    web_user = await coach.user(WEB)
    linked = await coach.link(SLACK, await coach.link_code(WEB))
    assert linked.user.id == web_user.id  # the code-maker's user, with Slack as its own
    assert linked.user.identity == SLACK
    assert linked.identities == [SLACK, WEB]


# Unlinking


async def test_unlink_leaves_the_data_with_the_user_and_starts_fresh(
    coach: Coach, fake: FakeAnthropic
) -> None:
    await coach.set_timezone(SLACK, "Europe/Berlin")
    await coach.add_goal(DISCORD, "Run")
    await collect(coach, DISCORD, "hi")
    maker = await coach.user(SLACK)
    await link(coach, SLACK, DISCORD)

    unlinked = await coach.unlink(DISCORD)

    assert unlinked.left.id == maker.id and unlinked.remaining == [SLACK]
    assert unlinked.user.id != maker.id and unlinked.user.identity == DISCORD
    assert (await coach.user(DISCORD)).id == unlinked.user.id
    assert await coach.goals(DISCORD) == [] and await history(coach, DISCORD) == []
    assert [g.text for g in await coach.goals(SLACK)] == ["Run"]
    assert len(await history(coach, SLACK)) == 2
    # The same person: their timezone and the welcome come along, nothing else.
    assert unlinked.user.timezone == "Europe/Berlin" and unlinked.user.phase is Phase.GOAL_SETTING
    assert not any(isinstance(event, Welcome) for event in await collect(coach, DISCORD, "hi"))


async def test_unlinking_the_own_identity_hands_the_user_to_another(coach: Coach) -> None:
    await coach.add_goal(SLACK, "Run")
    maker = await coach.user(SLACK)
    await link(coach, SLACK, DISCORD)

    unlinked = await coach.unlink(SLACK)

    assert unlinked.left.id == maker.id and unlinked.left.identity == DISCORD
    assert unlinked.remaining == [DISCORD]
    assert (await coach.user(DISCORD)).id == maker.id
    assert [g.text for g in await coach.goals(DISCORD)] == ["Run"]
    assert (await coach.user(SLACK)).id == unlinked.user.id != maker.id
    assert await coach.goals(SLACK) == []


async def test_the_own_identity_passes_to_one_the_scheduler_can_reach(coach: Coach) -> None:
    await link(coach, DISCORD, WEB)
    await link(coach, DISCORD, SLACK)  # linked after the web
    unlinked = await coach.unlink(DISCORD)
    assert unlinked.left.identity == SLACK
    assert unlinked.remaining == [SLACK, WEB]


async def test_the_last_identity_cannot_be_unlinked(coach: Coach) -> None:
    await coach.add_goal(SLACK, "Run")
    with pytest.raises(CoachError) as error:
        await coach.unlink(SLACK)
    assert error.value.user_text == ONLY_IDENTITY_TEXT
    await link(coach, SLACK, DISCORD)
    await coach.unlink(DISCORD)
    with pytest.raises(CoachError):
        await coach.unlink(SLACK)
    assert [g.text for g in await coach.goals(SLACK)] == ["Run"]


async def test_an_unlinked_identity_can_link_again(coach: Coach) -> None:
    await link(coach, SLACK, DISCORD)
    await coach.unlink(DISCORD)
    await coach.add_goal(DISCORD, "Swim")
    linked = await coach.link(DISCORD, await coach.link_code(SLACK))
    assert linked.identities == [SLACK, DISCORD]
    assert [g.text for g in await coach.goals(SLACK)] == ["Swim"]
