"""A small world for the Discord adapter tests: the real discord.py bot against the loopback
fake Discord, a real Coach (SQLite store, real anthropic SDK) against the fake Anthropic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bots.discord.bot import DiscordCoach
from bots.stream import STREAMING_INDICATOR
from core.coach import Coach
from core.models import Identity, Platform
from core.store.sqlite import BUSY_TIMEOUT_SECONDS, SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import LOADING, FakeDiscord, FakeMessage
from tests.support import FakeClock, coach_on

FAST_EDITS = (5, 0.25)  # 5 writes per 0.25 s per channel: Discord's shape, 20 times faster


@dataclass
class World:
    discord: FakeDiscord
    llm: FakeAnthropic
    coach: Coach
    bot: DiscordCoach
    clock: FakeClock
    edit_rate: tuple[int, float] = FAST_EDITS
    _running: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def start_bot(self) -> DiscordCoach:
        """A new DiscordCoach on this Discord and this Coach (so this store), once ready."""
        self.bot = new_bot(self.coach, self.edit_rate)
        await self._running.enter_async_context(self.discord.running(self.bot))
        return self.bot

    async def restart(self) -> DiscordCoach:
        """A deploy or a crash: the bot goes, and a new one, knowing only what Discord and
        the store tell it, takes over."""
        await self._running.aclose()
        return await self.start_bot()

    @property
    def coaching_channel(self) -> int:
        return self.discord.channel_ids[0]

    @property
    def other_channel(self) -> int:
        return self.discord.channel_ids[1]

    @property
    def alice(self) -> int:
        return self.discord.user_ids[0]

    @property
    def bob(self) -> int:
        return self.discord.user_ids[1]

    def identity(self, user_id: int) -> Identity:
        return Identity(
            platform=Platform.DISCORD,
            external_id=str(user_id),
            workspace_id=str(self.discord.guild_id),
        )

    async def say(self, content: str, **options: Any) -> int:
        """A user's message (default: Alice in the coaching channel); returns its id."""
        payload = self.discord.message_create(content, **options)
        await self.discord.dispatch("MESSAGE_CREATE", payload)
        return int(payload["id"])

    def bot_messages(self, channel_id: int | None = None) -> list[FakeMessage]:
        return self.discord.messages_in(channel_id or self.coaching_channel, by_bot=True)

    def answers_to(self, message_id: int, channel_id: int | None = None) -> list[FakeMessage]:
        """The bot's reply to `message_id` and any messages continuing it, in order."""
        messages = self.bot_messages(channel_id)
        start = next(
            (
                i
                for i, m in enumerate(messages)
                if m.data.get("message_reference", {}).get("message_id") == str(message_id)
            ),
            None,
        )
        if start is None:
            return []
        tail = [messages[start]]
        for message in messages[start + 1 :]:
            if "message_reference" in message.data:
                break
            tail.append(message)
        return tail

    async def final_answer(
        self,
        message_id: int,
        done: Callable[[str], bool],
        channel_id: int | None = None,
        *,
        within: float = 5.0,
    ) -> list[FakeMessage]:
        """Wait until the reply to `message_id` is finished and `done(its whole text)`."""

        def finished() -> list[FakeMessage] | None:
            answer = self.answers_to(message_id, channel_id)
            text = "".join(m.content for m in answer)
            if answer and not answer[-1].content.endswith(STREAMING_INDICATOR) and done(text):
                return answer
            return None

        result: list[FakeMessage] = await self.discord.wait_for(finished, within)
        return result

    async def command(
        self, options: dict[str, Any] | None = None, *, within: float = 5.0, **where: Any
    ) -> tuple[dict[str, Any], FakeMessage]:
        """Run `/coach …`; returns the interaction and its (final, not "thinking…") response."""
        interaction = self.discord.command_interaction("coach", options, **where)
        await self.discord.dispatch("INTERACTION_CREATE", interaction)

        def answered() -> FakeMessage | None:
            message = self.discord.original_response(interaction)
            return message if message is not None and not message.flags & LOADING else None

        message: FakeMessage = await self.discord.wait_for(answered, within)
        return interaction, message


def new_bot(coach: Coach, edit_rate: tuple[int, float]) -> DiscordCoach:
    return DiscordCoach(coach, coach.settings, edit_rate=edit_rate, guild_ready_timeout=0.05)


@asynccontextmanager
async def discord_world(
    tmp_path: Path,
    *,
    discord_options: dict[str, Any] | None = None,
    llm_options: dict[str, Any] | None = None,
    edit_rate: tuple[int, float] = FAST_EDITS,
    **settings: Any,
) -> AsyncIterator[World]:
    """Everything running; `settings` override the Coach's (and so the bot's) Settings."""
    async with (
        FakeDiscord(**(discord_options or {})) as discord_fake,
        FakeAnthropic(**(llm_options or {})) as llm,
    ):
        busy_timeout = settings.get("database_timeout_seconds") or BUSY_TIMEOUT_SECONDS
        store = await SQLiteStore.open(str(tmp_path / "coach.db"), busy_timeout=busy_timeout)
        clock = FakeClock()
        overrides: dict[str, Any] = {
            "discord_bot_token": discord_fake.token,
            "discord_channel_ids": [discord_fake.channel_ids[0]],
            "discord_message_content_intent": True,
        } | settings
        try:
            async with coach_on(store, llm.base_url, clock, **overrides) as coach:
                world = World(discord_fake, llm, coach, new_bot(coach, edit_rate), clock, edit_rate)
                async with world._running:
                    await world._running.enter_async_context(discord_fake.running(world.bot))
                    yield world
        finally:
            await store.close()
