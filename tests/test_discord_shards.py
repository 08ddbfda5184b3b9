"""Discord shards: two bot processes on one token, each running one of two shards against the
fake Discord, which routes each guild's events to its shard as Discord does."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import discord
import pytest
from pydantic import ValidationError

from bots.discord.bot import DiscordCoach, ShardedDiscordCoach, discord_coach, global_budget
from core.config import Settings, settings_problems
from core.store.sqlite import SQLiteStore
from tests.discord_world import FAST_EDITS
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord
from tests.support import FakeClock, coach_on, make_settings

# Two guilds, one on each of two shards: (guild_id >> 22) % 2 is 0 and 1.
GUILD_0 = 1100000000000000100 & ~(1 << 22)
GUILD_1 = GUILD_0 | (1 << 22)
CHANNELS_0 = [1100000000000000210 + n for n in range(3)]
CHANNELS_1 = [1100000000000000220 + n for n in range(3)]
USERS = [1100000000000000310 + n for n in range(6)]


def problems(**values: object) -> list[str]:
    try:
        Settings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]
    except ValidationError as error:
        return settings_problems(error)
    return []


def test_shard_settings_are_checked_with_clear_messages() -> None:
    assert problems(discord_shard_ids="0,1") == [
        "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (how many shards the bot has in all)"
    ]
    assert problems(discord_shard_count=2, discord_shard_ids="1,2,3") == [
        "DISCORD_SHARD_IDS 2,3: with DISCORD_SHARD_COUNT=2 shard ids run from 0 to 1"
    ]
    assert problems(discord_shard_count=2, discord_shard_ids="1,1") == [
        "DISCORD_SHARD_IDS names a shard twice"
    ]
    assert problems(discord_shard_count=2, discord_shard_ids="one") == [
        "DISCORD_SHARD_IDS=one: shard ids are numbers from 0, separated by commas: 0,1"
    ]
    assert problems(discord_shard_count=0)[0].startswith("DISCORD_SHARD_COUNT=0:")
    assert problems(discord_shard_count=4, discord_shard_ids=" 0, 3") == []


@pytest.mark.parametrize(
    ("values", "processes"),
    [
        ({}, 1),
        ({"discord_shard_count": 4}, 1),  # all four shards here: one process
        ({"discord_shard_count": 4, "discord_shard_ids": "2"}, 4),
        ({"discord_shard_count": 4, "discord_shard_ids": "0,1"}, 2),
        ({"discord_shard_count": 5, "discord_shard_ids": "0,1"}, 3),  # rounded up: under
        (
            {
                "discord_shard_count": 4,
                "discord_shard_ids": "2",
                "discord_processes_sharing_token": 3,  # set: as set
            },
            3,
        ),
    ],
)
def test_the_processes_sharing_the_token_split_its_limit(
    values: dict[str, Any], processes: int
) -> None:
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert settings.discord_processes == processes


def test_each_process_paces_at_its_share_of_the_limit() -> None:
    alone, halved = global_budget(50), global_budget(50, 2)
    assert (1 / alone.interval, alone.burst) == (40, 3)  # as before, for one process
    assert (1 / halved.interval, halved.burst) == (20, 3)
    # Both together, bursts included, fit in Discord's second.
    assert 2 * (1 / halved.interval + halved.burst - 1) <= 50


def test_the_bot_is_sharded_only_when_asked() -> None:
    plain = make_settings(discord_bot_token="t")
    assert discord_coach_kind(plain) is DiscordCoach
    sharded = make_settings(discord_bot_token="t", discord_shard_count=2, discord_shard_ids=[1])
    assert discord_coach_kind(sharded) is ShardedDiscordCoach


def discord_coach_kind(settings: Settings) -> type:
    return type(discord_coach(None, settings))  # type: ignore[arg-type]


async def test_two_shard_processes_each_answer_their_guilds_under_the_shared_limit(
    tmp_path: Path,
) -> None:
    """Shards 0 and 1 of 2 in two bots on one token; Discord allows the bot 6 requests/s in
    all (the fake refuses the 7th in any second), each bot paces itself at 3. Six users in
    six channels of two guilds write at once, and one of them in a DM: each message reaches
    only its guild's shard (a DM shard 0), is answered once and whole, and no request is
    refused."""
    guilds = {GUILD_0: CHANNELS_0, GUILD_1: CHANNELS_1}
    async with (
        FakeDiscord(guilds=guilds, user_ids=USERS, global_limit=(6, 1.0), shards=2) as fake,
        FakeAnthropic(reply="Short and sweet.") as llm,
        AsyncExitStack() as running,
    ):
        store = await SQLiteStore.open(str(tmp_path / "coach.db"))
        running.push_async_callback(store.close)
        bots: list[DiscordCoach] = []
        for shard in (0, 1):  # two processes: a Coach each, one database
            coach = await running.enter_async_context(coach_on(
                store, llm.base_url, FakeClock(), discord_bot_token=fake.token,
                discord_channel_ids=CHANNELS_0 + CHANNELS_1,
                discord_message_content_intent=True, discord_global_rate_limit=6,
                discord_shard_count=2, discord_shard_ids=[shard],
            ))
            bot = discord_coach(coach, coach.settings, edit_rate=FAST_EDITS,
                                guild_ready_timeout=0.05)
            await running.enter_async_context(fake.running(bot))
            bots.append(bot)
        assert fake.identified_shards == [(0, 2), (1, 2)]
        assert [[g.id for g in bot.guilds] for bot in bots] == [[GUILD_0], [GUILD_1]]

        heard: list[set[int]] = [set(), set()]  # user messages each bot received

        def hears(index: int) -> Any:
            def check(message: discord.Message) -> bool:
                if not message.author.bot:
                    heard[index].add(message.id)
                return False

            return check

        listening = [
            asyncio.create_task(bot.wait_for("message", check=hears(i)))
            for i, bot in enumerate(bots)
        ]
        await asyncio.sleep(1.0)  # the logins' own requests count too
        channels = CHANNELS_0 + CHANNELS_1
        payloads = [
            fake.message_create("hello", channel_id=channel, author_id=user)
            for channel, user in zip(channels, USERS, strict=True)
        ] + [fake.message_create("and privately", dm=True, author_id=USERS[4])]
        asked = [int(payload["id"]) for payload in payloads]
        await asyncio.gather(*(fake.dispatch("MESSAGE_CREATE", p) for p in payloads))

        def answered() -> bool:
            replies = [
                [m for m in fake.messages_in(c, by_bot=True)
                 if m.data.get("message_reference", {}).get("message_id") == str(asked_id)]
                for c, asked_id in zip(channels, asked[:6], strict=True)
            ]
            replies.append(fake.messages_in(int(payloads[-1]["channel_id"]), by_bot=True))
            # one message each (the welcome, then the answer), finished
            return all(len(r) == 1 and r[0].content.endswith("Short and sweet.") for r in replies)

        await fake.wait_for(answered, within=20.0)
        for task in listening:
            task.cancel()

    assert heard == [{*asked[:3], asked[6]}, set(asked[3:6])]  # never both
    assert len(llm.requests) == len(asked)
    assert fake.rate_limited == 0
