"""A small world for the scheduler tests: a real store, the real LLM SDK against FakeAnthropic,
a Coach on a hand-moved clock, a WindowKeeper and a recording Notifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.anthropic_llm import AnthropicLLM
from core.coach import Coach
from core.llm import LLM
from core.models import Identity, Meeting, Platform, User
from core.persona import Persona
from core.store import Store
from scheduler.notify import Delivery, Notifiers
from scheduler.windows import WindowKeeper
from tests.fakes.notifier import RecordingNotifier
from tests.support import FakeClock as Clock
from tests.support import make_llm, make_settings

PARIS = "Europe/Paris"
ALICE = Identity(platform=Platform.SLACK, external_id="U_ALICE", workspace_id="T1")
BOB = Identity(platform=Platform.DISCORD, external_id="1001")
LATE_GRACE = timedelta(hours=1)


def anthropic_llm(base_url: str) -> AnthropicLLM:
    return make_llm(make_settings(), base_url)


@dataclass
class World:
    store: Store
    clock: Clock
    llm: LLM | None = None
    notifier: RecordingNotifier = field(default_factory=RecordingNotifier)
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = make_settings()
        self.coach = Coach(self.store, self.llm, Persona.load(), self.settings, clock=self.clock)
        self.delivery = Delivery(
            Notifiers({Platform.SLACK: self.notifier, Platform.DISCORD: self.notifier}),
            sleep=self._sleep,
        )
        self.keeper = WindowKeeper(self.coach, self.delivery, late_grace=LATE_GRACE)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def tracking_user(self, identity: Identity = ALICE, when: str = "tomorrow 9am") -> User:
        """A user in Paris with a goal, a meeting at `when`, in the tracking phase."""
        await self.coach.set_timezone(identity, PARIS)
        await self.coach.add_goal(identity, "Run 5 km three times a week")
        await self.coach.schedule(identity, when)
        return await self.coach.start_tracking(identity)

    async def meetings(self, identity: Identity = ALICE) -> list[Meeting]:
        user = await self.coach.user(identity)
        return await self.store.list_meetings(user.id)

    async def at(self, when: datetime, *meetings: Meeting) -> None:
        """Set the clock and run every given meeting's due steps, as the jobs would."""
        self.clock.now = when
        for meeting in meetings:
            await self.keeper.advance(meeting.id, when)

    async def catch_up(self, when: datetime) -> None:
        """Set the clock and try every recap still owed, as a refresh's recap jobs would."""
        self.clock.now = when
        for meeting in await self.keeper.pending_recaps(when):
            await self.keeper.catch_up_recap(meeting.id, when)

    async def retry_notices(self, when: datetime) -> None:
        """Set the clock and try every notice waiting for a retry, as a refresh's jobs would."""
        self.clock.now = when
        for notice in await self.keeper.outbox.pending(when):
            await self.keeper.outbox.retry(notice.id, when)

    async def chat(self, text: str, identity: Identity = ALICE) -> str:
        """One conversation turn through the Coach, at the clock's time."""
        from core.events import Done, Failed

        async for event in self.coach.reply(identity, text):
            assert not isinstance(event, Failed), event
            if isinstance(event, Done):
                return event.text
        raise AssertionError("the coach did not answer")


async def talked_in_window(world: World) -> Meeting:
    """Alice tracks, her window opens and she talks in it; the meeting as it is then."""
    await world.tracking_user()
    [meeting] = await world.meetings()
    await world.at(world.coach.policy.opens_at(meeting), meeting)
    world.clock.now = meeting.start
    await world.chat("I'll stretch every morning.")
    return meeting


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
