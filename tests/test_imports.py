"""A process imports what its settings use: real `python -m bots` processes under
`-X importtime`, against the loopback fakes. A Discord bot carries no Slack SDK, a Slack bot
no discord.py, an admin command neither, and none of them pymongo on SQLite."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import FakeSlack
from tests.momentum_process import IMPORT_TIMES, imported_packages, momentum

SLACK = {"slack_bolt", "slack_sdk"}
DRIVERS = {"pymongo", "bson", "motor"}


def sqlite(tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}"}


async def test_an_admin_command_imports_no_platform_sdk_no_model_sdk_no_scheduler(
    tmp_path: Path,
) -> None:
    env = sqlite(tmp_path) | {"ANTHROPIC_API_KEY": "test-key"}  # only chat would use it
    async with momentum("users", tmp_path, env, launcher=[*IMPORT_TIMES, "admin"]) as process:
        assert await process.exited() == 0, process.log
    imported = imported_packages(process.log)
    assert "aiosqlite" in imported  # the parser reads the log it should
    assert imported.isdisjoint(SLACK | DRIVERS | {"discord", "anthropic", "apscheduler"})


async def test_a_discord_bot_imports_discord_and_neither_slack_nor_mongo(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeAnthropic() as llm:
        env = sqlite(tmp_path) | {
            "DISCORD_BOT_TOKEN": discord.token,
            "DISCORD_API_URL": discord.api_url,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": llm.base_url,
        }
        async with momentum("run", tmp_path, env, launcher=IMPORT_TIMES) as process:
            await process.wait_for_log(r"scheduler started")
            await process.wait_for_log(r"Discord: logged in as")
            assert await process.terminate() == 0, process.log
    imported = imported_packages(process.log)
    assert {"discord", "anthropic", "apscheduler"} <= imported
    assert imported.isdisjoint(SLACK | DRIVERS)


async def test_a_slack_bot_imports_slack_and_neither_discord_nor_mongo(tmp_path: Path) -> None:
    async with FakeSlack() as slack:
        env = sqlite(tmp_path) | {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_SIGNING_SECRET": "test-signing-secret",
            "SLACK_API_URL": slack.base_url,
            "SLACK_PORT": "0",
        }
        async with momentum("run", tmp_path, env, launcher=IMPORT_TIMES) as process:
            await process.wait_for_log(r"scheduler started")
            await process.wait_for_log(r"Slack HTTP mode on")
            assert await process.terminate() == 0, process.log
    imported = imported_packages(process.log)
    assert SLACK | {"apscheduler"} <= imported
    assert imported.isdisjoint(DRIVERS | {"discord", "anthropic"})  # no key: no model SDK
