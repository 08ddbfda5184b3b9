"""`momentum run` and `momentum scheduler` as a Procfile platform runs them: real processes
(`python -m bots`) against the loopback fakes served from this test's event loop, stopped
with SIGTERM. These catch what in-process tests cannot: the composition root's wiring, the
settings read from the environment, and a clean exit on the platform's stop signal."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from bots.slack.serve import EVENTS_PATH, HEALTH_PATH
from bots.stream import STREAMING_INDICATOR
from core.models import Identity, Meeting, Phase, Platform
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import (
    TEAM_ID,
    USER_ID,
    FakeSlack,
    dm_channel_id,
    json_body,
    message_event,
    sign_request,
)
from tests.momentum_process import STARTUP_SECONDS, Momentum, eventually, momentum
from tests.test_web_run import free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SIGNING_SECRET = "test-signing-secret"
WINDOW_OPEN = "coaching window is open"
CLOCK_SLACK = 0.1  # seconds: the process plans on the wall clock, the fakes stamp monotonic


def assert_clean_exit(code: int, process: Momentum, *, faults: bool = False) -> None:
    """Exit 0 after SIGTERM, no error; and no warning unless the test made `faults`."""
    assert code == 0, process.log
    assert "Traceback" not in process.log and " ERROR " not in process.log, process.log
    warnings = [line for line in process.lines if " WARNING " in line or "Warning" in line]
    assert faults or not warnings, f"a normal start and stop warned: {warnings}"
    assert "stopping (SIGTERM)" in process.log and process.lines[-1].rstrip().endswith("stopped")


def slack_env(slack: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
    }


def discord_env(discord: FakeDiscord) -> dict[str, str]:
    return {"DISCORD_BOT_TOKEN": discord.token, "DISCORD_API_URL": discord.api_url}


async def test_run_serves_slack_and_discord_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with (
        FakeSlack() as slack,
        FakeDiscord() as discord,
        FakeAnthropic(token_delay=0.01) as llm,
        aiohttp.ClientSession() as http,
    ):
        coaching_channel = discord.channel_ids[0]
        env = {
            **slack_env(slack),
            **discord_env(discord),
            "SLACK_PORT": "0",  # the process binds a free port and logs it: no race for one
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "DISCORD_CHANNEL_IDS": str(coaching_channel),
            "DISCORD_MESSAGE_CONTENT_INTENT": "true",
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": llm.base_url,
            "ANTHROPIC_MAX_RETRIES": "0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}",
        }
        slack.add_user(USER_ID)  # known to users.info, as every real sender is
        async with momentum("run", tmp_path, env) as process:
            port = (await process.wait_for_log(r"Slack HTTP mode on \S+:(\d+)")).group(1)
            base = f"http://127.0.0.1:{port}"
            async with http.get(base + HEALTH_PATH) as health:
                assert health.status == 200 and (await health.json())["ok"] is True
            await process.wait_for_log(r"starting scheduler")

            # Slack: a signed DM event, as the Events API delivers it.
            raw = json_body(message_event("hello from slack", team_id=TEAM_ID))
            headers = sign_request(SIGNING_SECRET, raw)
            async with http.post(base + EVENTS_PATH, data=raw, headers=headers) as response:
                assert response.status == 200

            # Discord: a MESSAGE_CREATE in a coaching channel, once the bot has its guild.
            await discord.wait_for(lambda: discord.identifies, within=STARTUP_SECONDS)
            await process.wait_for_log(r"Discord: logged in as")
            await discord.dispatch("MESSAGE_CREATE", discord.message_create("hello from discord"))

            def slack_reply() -> bool:
                return any(
                    m.text == "Coach: hello from slack" and not m.streaming
                    for m in slack.messages(dm_channel_id(USER_ID))
                )

            def discord_reply() -> bool:
                text = "".join(
                    m.content for m in discord.messages_in(coaching_channel, by_bot=True)
                )
                return text.endswith("Coach: hello from discord")

            await eventually(slack_reply, 5.0, "the Slack reply, complete", process)
            await eventually(discord_reply, 5.0, "the Discord reply, final", process)
            assert not discord.messages_in(coaching_channel, by_bot=True)[-1].content.endswith(
                STREAMING_INDICATOR
            )
            assert [r.stream for r in llm.requests] == [True, True]

            assert_clean_exit(await process.terminate(), process)


async def test_the_newcomers_set_up_starts_and_stops_without_a_warning(tmp_path: Path) -> None:
    """The set-up the README walks a newcomer through: Slack in Socket Mode, Discord with its
    defaults (no message-content intent, no coaching channel). Each start used to warn: Bolt
    of a token it ignores, discord.py of voice libraries that nothing here uses."""
    async with FakeSlack() as slack, FakeDiscord() as discord:
        env = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_APP_TOKEN": "xapp-1-test",
            "SLACK_API_URL": slack.base_url,
            **discord_env(discord),
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}",
        }
        async with momentum("run", tmp_path, env) as process:
            await process.wait_for_log(r"Slack Socket Mode connected")
            await process.wait_for_log(r"Discord: logged in as")
            await process.wait_for_log(r"scheduler started")
            assert_clean_exit(await process.terminate(), process)


async def test_run_with_only_the_web_says_once_that_no_window_messages_go_out(
    tmp_path: Path,
) -> None:
    """No platform to send window messages through is how a web-only `run` is meant to be:
    one line at INFO says so, not a warning (nor the same news twice)."""
    env = {
        "WEB_ENABLED": "true",
        "WEB_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}",
    }
    async with momentum("run", tmp_path, env) as process:
        await process.wait_for_log(r"scheduler started")
        assert_clean_exit(await process.terminate(), process)
    told = [line for line in process.lines if "window messages" in line or "nobody" in line]
    assert len(told) == 1 and " INFO " in told[0], process.log
    assert "no platform to send window messages through" in told[0]


async def meeting_opening_in(store: SQLiteStore, identity: Identity, seconds: float) -> float:
    """A tracking user whose meeting's window (30 minutes before its start) opens in `seconds`;
    returns that moment on the monotonic clock, which the fakes stamp their calls with."""
    now = datetime.now(UTC)
    opens = time.monotonic() + seconds
    user, _ = await store.get_or_create_user(identity, now)
    await store.update_user(user.id, phase=Phase.TRACKING, timezone="UTC")
    start = now + timedelta(minutes=30, seconds=seconds)
    meeting = Meeting(
        user_id=user.id,
        start=start,
        duration_minutes=30,
        closes_at=start + timedelta(minutes=30 + 60),
    )
    await store.add_meetings([meeting])
    return opens


async def test_scheduler_alone_announces_windows_on_time_through_the_web_apis(
    tmp_path: Path,
) -> None:
    """The clock process has no gateway connection: Slack's Web API and Discord's REST API
    carry the "window is open" DMs. The Slack window opens about when the process starts (a
    catch-up when startup is slow); the Discord one later, so its job must wait for it."""
    db = tmp_path / "momentum.db"
    async with FakeSlack() as slack, FakeDiscord() as discord:
        discord_user = discord.user_ids[0]
        slack_identity = Identity(
            platform=Platform.SLACK, external_id=USER_ID, workspace_id=TEAM_ID
        )
        discord_identity = Identity(
            platform=Platform.DISCORD,
            external_id=str(discord_user),
            workspace_id=str(discord.guild_id),
        )
        store = await SQLiteStore.open(str(db))
        try:
            await meeting_opening_in(store, slack_identity, 1.0)
            discord_opens = await meeting_opening_in(store, discord_identity, 4.0)
        finally:
            await store.close()
        env = {**slack_env(slack), **discord_env(discord), "DATABASE_URL": f"sqlite:///{db}"}
        async with momentum("scheduler", tmp_path, env) as process:
            await process.wait_for_log(r"scheduler started")

            def slack_dm() -> bool:
                return any(WINDOW_OPEN in m.text for m in slack.messages(dm_channel_id(USER_ID)))

            def discord_dm() -> bool:
                channel = discord.dm_channels.get(discord_user)
                bot_messages = discord.messages_in(channel, by_bot=True) if channel else []
                return any(WINDOW_OPEN in m.content for m in bot_messages)

            await eventually(slack_dm, 5.0, "the Slack window DM", process)
            await eventually(discord_dm, 6.0, "the Discord window DM", process)
            assert [c.args["users"] for c in slack.calls_to("conversations.open")] == [USER_ID]
            sent = await discord.wait_for_call("POST", "/channels/*/messages")
            assert sent.time >= discord_opens - CLOCK_SLACK  # not before its window opened
            assert discord.identifies == 0  # REST only: no gateway session

            assert_clean_exit(await process.terminate(), process)


async def test_a_window_dm_slack_refused_is_delivered_by_the_next_scheduler_process(
    tmp_path: Path,
) -> None:
    """Slack refuses the "window is open" DM to the first clock process, which stops; the
    next one, started on the same database, delivers it once."""
    db = tmp_path / "momentum.db"
    async with FakeSlack() as slack:
        identity = Identity(platform=Platform.SLACK, external_id=USER_ID, workspace_id=TEAM_ID)
        store = await SQLiteStore.open(str(db))
        try:
            await meeting_opening_in(store, identity, 1.0)
        finally:
            await store.close()
        env = {
            **slack_env(slack),
            "DATABASE_URL": f"sqlite:///{db}",
            "NOTIFY_RETRY_SECONDS": "0.2",  # two quick tries, both refused
            "NOTICE_BACKOFF_SECONDS": "1",
            "SCHEDULER_REFRESH_SECONDS": "5",
        }
        slack.fail_next("chat.postMessage", "service_unavailable", status=503, times=2)

        def window_dms() -> list[str]:
            dms = slack.messages(dm_channel_id(USER_ID))
            return [m.text for m in dms if WINDOW_OPEN in m.text]

        async with momentum("scheduler", tmp_path, env) as first:
            await first.wait_for_log(r"not delivered \(try 1\): next try after")
            assert window_dms() == []
            assert_clean_exit(await first.terminate(), first, faults=True)
        async with momentum("scheduler", tmp_path, env) as second:
            await eventually(lambda: window_dms(), 10.0, "the window DM, later", second)
            await second.wait_for_log(r"trying notice \S+ again \(try 2\)")
            assert_clean_exit(await second.terminate(), second, faults=True)
        assert len(window_dms()) == 1
        assert [c.status for c in slack.calls_to("chat.postMessage")] == [503, 503, 200]
