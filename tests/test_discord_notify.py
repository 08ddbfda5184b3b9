"""The Discord notifier (REST only, for the scheduler) and the `momentum run` service, against
the fake Discord, configured the way a deployment is: through Settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.__main__ import configured_services, discord_sync, notifier_factories
from bots.discord.connect import DiscordSetupError
from bots.discord.notify import DiscordNotifier, discord_notifier
from bots.discord.run import run_discord
from core.models import Identity, Platform, User
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord
from tests.support import T0, coach_on, make_settings

MESSAGE_CONTENT = 1 << 15


@pytest.fixture(autouse=True)
def discord_urls_restored() -> Iterator[None]:
    """The code under test points discord.py's class-level URLs at the fake: undo that."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


def discord_user(user_id: int) -> User:
    identity = Identity(platform=Platform.DISCORD, external_id=str(user_id))
    return User(identity=identity, created_at=T0)


def notifier_for(fake: FakeDiscord, *, channels: bool = True) -> DiscordNotifier:
    settings = make_settings(
        discord_bot_token=fake.token,
        discord_api_url=fake.api_url,
        discord_gateway_url=fake.gateway_url,
        discord_channel_ids=fake.channel_ids[:1] if channels else [],
    )
    notifier = discord_notifier(settings)
    assert notifier is not None
    return notifier


async def test_notifier_sends_a_dm_without_a_gateway(fake: FakeDiscord) -> None:
    notifier = notifier_for(fake)
    try:
        await notifier.notify(discord_user(fake.user_ids[0]), "Your window is open. @everyone")
    finally:
        await notifier.aclose()
    (sent,) = fake.messages_in(fake.dm_channels[fake.user_ids[0]])
    assert sent.content == "Your window is open. @everyone"
    assert sent.allowed_mentions == {"parse": []}
    assert fake.identifies == 0  # REST only


async def test_closed_dms_fall_back_to_a_mention_in_the_coaching_channel(
    fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = fake.user_ids[1]
    notifier = notifier_for(fake)
    fake.fail_next("POST", "/channels/*/messages")  # 403, code 50007
    try:
        with caplog.at_level(logging.WARNING, logger="bots.discord.notify"):
            await notifier.notify(discord_user(user_id), "Your window closes in 10 minutes.")
    finally:
        await notifier.aclose()
    (posted,) = fake.messages_in(fake.channel_ids[0], by_bot=True)
    assert posted.content == f"<@{user_id}> Your window closes in 10 minutes."
    assert posted.allowed_mentions is not None
    assert posted.allowed_mentions["users"] == [user_id]  # that user, nobody else
    assert posted.allowed_mentions["parse"] == []
    assert "DMs closed" in caplog.text and str(user_id) in caplog.text


async def test_closed_dms_without_a_coaching_channel_raise(fake: FakeDiscord) -> None:
    notifier = notifier_for(fake, channels=False)
    fake.fail_next("POST", "/channels/*/messages")
    try:
        with pytest.raises(discord.Forbidden):
            await notifier.notify(discord_user(fake.user_ids[0]), "hello")
    finally:
        await notifier.aclose()


async def test_other_refusals_propagate_for_the_scheduler_to_retry(fake: FakeDiscord) -> None:
    notifier = notifier_for(fake)
    fake.fail_next("POST", "/channels/*/messages", code=50001, message="Missing Access")
    try:
        with pytest.raises(discord.Forbidden):
            await notifier.notify(discord_user(fake.user_ids[0]), "hello")
        with pytest.raises(ValueError, match="not a Discord user"):
            slack = Identity(platform=Platform.SLACK, external_id="U1")
            await notifier.notify(User(identity=slack, created_at=T0), "hello")
    finally:
        await notifier.aclose()
    assert fake.messages_in(fake.channel_ids[0]) == []


def test_no_notifier_without_a_token() -> None:
    assert discord_notifier(make_settings()) is None


async def test_run_service_connects_with_the_configured_urls_and_intents(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    store = await SQLiteStore.open(str(tmp_path / "coach.db"))
    async with FakeAnthropic() as llm:
        async with coach_on(
            store,
            llm.base_url,
            discord_bot_token=fake.token,
            discord_api_url=fake.api_url,
            discord_gateway_url=fake.gateway_url,
            discord_channel_ids=str(fake.channel_ids[0]),
            discord_message_content_intent=True,
        ) as coach:
            service = asyncio.create_task(run_discord(coach, coach.settings))
            try:
                await fake.wait_for(lambda: fake.identifies == 1)
                await fake.dispatch("MESSAGE_CREATE", fake.message_create("hi there"))
                await fake.wait_for(
                    lambda: any(
                        m.content.endswith("Coach: hi there")
                        for m in fake.messages_in(fake.channel_ids[0], by_bot=True)
                    )
                )
            finally:
                service.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await service
    await store.close()
    assert fake.intents is not None and fake.intents & MESSAGE_CONTENT


# --- The composition root ---------------------------------------------------------------------


def test_momentum_run_starts_discord_when_a_token_is_set() -> None:
    with_token = make_settings(discord_bot_token="token")
    assert "discord" in [name for name, _ in configured_services(with_token)]
    assert "discord" not in [name for name, _ in configured_services(make_settings())]
    assert notifier_factories(with_token)[Platform.DISCORD] is discord_notifier
    assert Platform.DISCORD not in notifier_factories(make_settings())


async def test_discord_sync_command(
    fake: FakeDiscord, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = {"discord_api_url": fake.api_url, "discord_gateway_url": fake.gateway_url,
            "database_url": f"sqlite:///{tmp_path / 'momentum.db'}"}
    await discord_sync(make_settings(discord_bot_token=fake.token, **urls), fake.guild_id)
    assert capsys.readouterr().out.strip() == f"Registered /coach in guild {fake.guild_id}."
    assert [c["name"] for c in fake.commands[fake.guild_id]] == ["coach"]
    assert fake.identifies == 0  # REST only
    with pytest.raises(DiscordSetupError, match="rejected DISCORD_BOT_TOKEN"):
        await discord_sync(make_settings(discord_bot_token="wrong", **urls), None)


async def test_run_service_explains_a_rejected_token(fake: FakeDiscord, tmp_path: Path) -> None:
    store = await SQLiteStore.open(str(tmp_path / "coach.db"))
    try:
        async with coach_on(
            store, None, discord_bot_token="wrong", discord_api_url=fake.api_url
        ) as coach:
            with pytest.raises(DiscordSetupError, match="rejected DISCORD_BOT_TOKEN"):
                await run_discord(coach, coach.settings)
    finally:
        await store.close()


async def test_a_quick_retry_after_discord_took_the_dm_but_answered_503_posts_it_once(
    fake: FakeDiscord,
) -> None:
    """Each try of one notice carries the same nonce, which Discord enforces: the retry gets
    the message Discord already made instead of a second copy."""
    from scheduler.notify import Delivery, Notifiers, Sent

    async def no_wait(seconds: float) -> None:
        return None

    notifier = notifier_for(fake)
    delivery = Delivery(Notifiers({Platform.DISCORD: notifier}), sleep=no_wait)
    fake.fail_next(
        "POST", "/channels/*/messages", status=503, code=0, message="upstream", after_applying=True
    )
    user = discord_user(fake.user_ids[0])
    try:
        outcome = await delivery.send(user, "Your window is open.", key="m1:open")
        other = await delivery.send(user, "Heads-up: it closes soon.", key="m1:remind")
    finally:
        await notifier.aclose()
    assert (outcome.sent, other.sent) == (Sent.DELIVERED, Sent.DELIVERED)
    dm = fake.messages_in(fake.dm_channels[fake.user_ids[0]])
    assert [m.content for m in dm] == ["Your window is open.", "Heads-up: it closes soon."]
    posts = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/messages")]
    assert [c.status for c in posts] == [503, 200, 200]
