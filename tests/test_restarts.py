"""Replies cut off by the process ending, tried with real processes (`python -m bots run`)
against the loopback fakes: a `kill -9` mid-reply is repaired by the next process that
starts, and a SIGTERM lets replies finish within the grace or ends them with a note.

What the user must never see: a reply frozen mid-sentence with "▌" (or a Slack stream left
open) and no word of what happened."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.discord import render as discord_render
from bots.slack import render as slack_render
from bots.slack.serve import EVENTS_PATH
from bots.stream import STREAMING_INDICATOR
from core.models import Identity, Message, Platform, Role
from core.store.sqlite import SQLiteStore
from core.texts import CUT_OFF_TEXT
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import FakeDiscord, FakeMessage
from tests.fakes.slack_api import (
    USER_ID,
    FakeSlack,
    dm_channel_id,
    json_body,
    message_event,
)
from tests.fakes.slack_api import Message as SlackMessage
from tests.fakes.slack_api import sign_request as sign
from tests.momentum_process import Momentum, eventually, momentum

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

SECRET = "test-signing-secret"
WORDS = " ".join(f"word{n}" for n in range(40))  # at 0.15 s a word: about 6 s of streaming
WITHIN = 15.0


def long_reply(body: dict[str, Any]) -> str:
    return f"Here we go: {WORDS}."


async def stored(db: Path, platform: Platform) -> list[Message]:
    store = await SQLiteStore.open(str(db))
    try:
        (user,) = [u for u in await store.list_users() if u.identity.platform is platform]
        return await store.messages_between(user.id)
    finally:
        await store.close()


async def nothing_in_flight(db: Path) -> bool:
    store = await SQLiteStore.open(str(db))
    try:
        return not any([await store.in_flight(p) for p in (Platform.SLACK, Platform.DISCORD)])
    finally:
        await store.close()


async def welcomed(db: Path, identity: Identity) -> None:
    """A user who has had the welcome: their first message gets the reply alone."""
    store = await SQLiteStore.open(str(db))
    try:
        user, _ = await store.get_or_create_user(identity, datetime.now(UTC))
        await store.claim_welcome(user.id)
    finally:
        await store.close()


# --- Slack -------------------------------------------------------------------------------


@dataclass
class SlackRun:
    slack: FakeSlack
    llm: FakeAnthropic
    http: aiohttp.ClientSession
    env: dict[str, str]
    db: Path

    @asynccontextmanager
    async def process(self, cwd: Path) -> AsyncIterator[tuple[Momentum, str]]:
        async with momentum("run", cwd, self.env) as process:
            port = (await process.wait_for_log(r"Slack HTTP mode on \S+:(\d+)")).group(1)
            yield process, f"http://127.0.0.1:{port}"

    async def dm(self, base: str, text: str) -> dict[str, Any]:
        envelope = message_event(text)
        raw = json_body(envelope)
        async with self.http.post(base + EVENTS_PATH, data=raw, headers=sign(SECRET, raw)) as r:
            assert r.status == 200
        return dict(envelope["event"])

    def reply_to(self, event: dict[str, Any]) -> SlackMessage | None:
        thread = self.slack.messages(dm_channel_id(USER_ID), thread_ts=event["ts"])
        return thread[0] if thread else None


@asynccontextmanager
async def slack_run(tmp_path: Path, **env: str) -> AsyncIterator[SlackRun]:
    async with (
        FakeSlack() as slack,
        FakeAnthropic(token_delay=0.15, reply=long_reply) as llm,
        aiohttp.ClientSession() as http,
    ):
        db = tmp_path / "momentum.db"
        values = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.base_url,
            "SLACK_PORT": "0",
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": llm.base_url,
            "ANTHROPIC_MAX_RETRIES": "0",
            "DATABASE_URL": f"sqlite:///{db}",
            "TURN_LEASE_SECONDS": "2",
            **env,
        }
        await welcomed(db, Identity(platform=Platform.SLACK, external_id=USER_ID))
        yield SlackRun(slack, llm, http, values, db)


def slack_note() -> str:
    return slack_render.failure_note(CUT_OFF_TEXT)


@pytest.mark.parametrize("native", [True, False], ids=["native-stream", "edits"])
async def test_a_slack_reply_cut_by_kill_9_is_finished_at_the_next_start(
    tmp_path: Path, native: bool
) -> None:
    async with slack_run(tmp_path, SLACK_NATIVE_STREAMING=str(native).lower()) as run:
        async with run.process(tmp_path) as (first, base):
            asked = await run.dm(base, "hello")

            def midway() -> SlackMessage | None:
                reply = run.reply_to(asked)
                return reply if reply is not None and "word3" in reply.text else None

            await eventually(midway, WITHIN, "the reply, streaming", first)
            first.process.kill()  # kill -9: no shutdown code runs
            await first.process.wait()
        frozen = run.reply_to(asked)
        assert frozen is not None
        if native:
            assert frozen.streaming  # Slack would keep it open for minutes
        else:
            assert frozen.text.endswith(STREAMING_INDICATOR)
        shown = frozen.text.removesuffix(STREAMING_INDICATOR).rstrip()

        async with run.process(tmp_path) as (second, base):

            def finished() -> SlackMessage | None:
                reply = run.reply_to(asked)
                return reply if reply is not None and slack_note() in reply.text else None

            repaired = await eventually(finished, WITHIN, "the cut reply, finished", second)
            assert repaired.text == f"{shown}\n\n{slack_note()}"
            assert not repaired.streaming
            assert len(run.slack.messages(dm_channel_id(USER_ID), thread_ts=asked["ts"])) == 1
            *_, user_message, kept = await stored(run.db, Platform.SLACK)
            assert (user_message.role, user_message.text) == (Role.USER, "hello")
            assert (kept.role, kept.text, kept.complete) == (Role.ASSISTANT, shown, False)
            assert kept.meta.error == "restart"
            # The user's turn is free again at once: the next message is answered whole.
            run.llm.token_delay = 0.0
            later = await run.dm(base, "again")

            def answered() -> SlackMessage | None:
                reply = run.reply_to(later)
                done = reply is not None and reply.text.endswith(".") and not reply.streaming
                return reply if done else None

            await eventually(answered, WITHIN, "the next reply", second)
            assert await nothing_in_flight(run.db)
            assert await second.terminate() == 0


# --- Discord -----------------------------------------------------------------------------


@asynccontextmanager
async def discord_run(
    tmp_path: Path, **env: str
) -> AsyncIterator[tuple[FakeDiscord, FakeAnthropic, dict[str, str]]]:
    async with FakeDiscord() as discord, FakeAnthropic(token_delay=0.15, reply=long_reply) as llm:
        values = {
            "DISCORD_BOT_TOKEN": discord.token,
            "DISCORD_API_URL": discord.api_url,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "DISCORD_CHANNEL_IDS": str(discord.channel_ids[0]),
            "DISCORD_MESSAGE_CONTENT_INTENT": "true",
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": llm.base_url,
            "ANTHROPIC_MAX_RETRIES": "0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'momentum.db'}",
            "TURN_LEASE_SECONDS": "2",
            **env,
        }
        alice = Identity(platform=Platform.DISCORD, external_id=str(discord.user_ids[0]))
        await welcomed(tmp_path / "momentum.db", alice)
        yield discord, llm, values


async def say_on_discord(discord: FakeDiscord, process: Momentum, text: str) -> int:
    await process.wait_for_log(r"Discord: logged in as")
    payload = discord.message_create(text)
    await discord.dispatch("MESSAGE_CREATE", payload)
    return int(payload["id"])


def bot_reply(discord: FakeDiscord, when: Callable[[str], bool]) -> Callable[[], Any]:
    def found() -> FakeMessage | None:
        shown = discord.messages_in(discord.channel_ids[0], by_bot=True)
        return shown[-1] if shown and when(shown[-1].content) else None

    return found


def discord_note() -> str:
    return discord_render.failure_note(CUT_OFF_TEXT)


async def test_a_discord_reply_cut_by_kill_9_is_finished_at_the_next_start(
    tmp_path: Path,
) -> None:
    async with discord_run(tmp_path) as (discord, _, env):
        async with momentum("run", tmp_path, env) as first:
            await say_on_discord(discord, first, "hello")
            streaming = bot_reply(discord, lambda c: "word3" in c)
            await eventually(streaming, WITHIN, "the reply, streaming", first)
            first.process.kill()
            await first.process.wait()
        (frozen,) = discord.messages_in(discord.channel_ids[0], by_bot=True)
        assert frozen.content.endswith(STREAMING_INDICATOR)
        shown = frozen.content.removesuffix(STREAMING_INDICATOR).rstrip()
        async with momentum("run", tmp_path, env) as second:
            repaired = bot_reply(discord, lambda c: c.endswith(discord_note()))
            message = await eventually(repaired, WITHIN, "the cut reply, finished", second)
            assert message.id == frozen.id and message.content == f"{shown}\n\n{discord_note()}"
            *_, kept = await stored(tmp_path / "momentum.db", Platform.DISCORD)
            assert (kept.text, kept.complete, kept.meta.error) == (shown, False, "restart")
            assert await second.terminate() == 0


async def test_sigterm_on_discord_ends_a_reply_past_the_grace_with_a_note(
    tmp_path: Path,
) -> None:
    async with discord_run(tmp_path, SHUTDOWN_GRACE_SECONDS="0.5") as (discord, _, env):
        async with momentum("run", tmp_path, env) as process:
            await say_on_discord(discord, process, "hello")
            await eventually(
                bot_reply(discord, lambda c: "word3" in c), WITHIN, "the reply", process
            )
            assert await process.terminate(within=10) == 0
            assert "Traceback" not in process.log
        (message,) = discord.messages_in(discord.channel_ids[0], by_bot=True)
        assert message.content.endswith(f"\n\n{discord_note()}")
        assert STREAMING_INDICATOR not in message.content
        shown = message.content.removesuffix(f"\n\n{discord_note()}")
        # Kept: what the model had said, incomplete (the screen, paced, may lag behind it).
        *_, kept = await stored(tmp_path / "momentum.db", Platform.DISCORD)
        assert not kept.complete and kept.text.startswith(shown)
        assert await nothing_in_flight(tmp_path / "momentum.db")  # nothing left to repair


async def test_sigterm_on_discord_lets_a_reply_within_the_grace_finish(tmp_path: Path) -> None:
    async with discord_run(tmp_path, SHUTDOWN_GRACE_SECONDS="20") as (discord, llm, env):
        llm.token_delay = 0.02  # about a second in all
        async with momentum("run", tmp_path, env) as process:
            await say_on_discord(discord, process, "hello")
            await eventually(bot_reply(discord, lambda c: "word" in c), WITHIN, "reply", process)
            assert await process.terminate(within=10) == 0
        (message,) = discord.messages_in(discord.channel_ids[0], by_bot=True)
        assert message.content == long_reply({})
        *_, kept = await stored(tmp_path / "momentum.db", Platform.DISCORD)
        assert kept.complete and kept.text == long_reply({})


async def test_sigterm_on_slack_ends_a_reply_past_the_grace_with_a_note(tmp_path: Path) -> None:
    async with slack_run(tmp_path, SHUTDOWN_GRACE_SECONDS="0.5") as run:
        async with run.process(tmp_path) as (process, base):
            asked = await run.dm(base, "hello")
            await eventually(
                lambda: (r := run.reply_to(asked)) is not None and "word3" in r.text,
                WITHIN,
                "the reply",
                process,
            )
            assert await process.terminate(within=10) == 0
        reply = run.reply_to(asked)
        assert reply is not None and not reply.streaming
        assert reply.text.endswith(f"\n\n{slack_note()}")
        assert await nothing_in_flight(run.db)
