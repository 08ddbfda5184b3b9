"""The scale-out recipe (README "Scaling out"), run: two `momentum run` processes in Slack HTTP
mode on one MongoDB (the emulator), a load balancer alternating one user's burst between them,
and Slack's retries of some of the messages landing on the other process. Each message is
answered once, in the order sent, and no retry is answered: the dedupe claims and the user's
turn lease live in the shared store, so no stickiness is needed.

The in-process version of the ordering property (two Coaches on one store) is
tests/test_turn_order.py; this is the same property through the real processes, Bolt and
HTTP, with the clock (`momentum scheduler`) left out as in production (SCHEDULER_ENABLED=false)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from bots.slack.serve import EVENTS_PATH
from bots.stream import STREAMING_INDICATOR
from core.models import Identity, Platform, Role
from core.store import Store, open_store
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.slack_api import (
    TEAM_ID,
    FakeSlack,
    dm_channel_id,
    json_body,
    message_event,
    sign_request,
)
from tests.momentum_process import Momentum, eventually, momentum

pytestmark = [pytest.mark.mongo_emulator, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SECRET = "scale-out-signing-secret"
USER = "U0SCALEOUT"
DM = dm_channel_id(USER)
BURST = 8
RETRIED = (1, 3, 5, 6, 7)  # Slack redelivers these, each to the other process
WITHIN = 25.0  # every reply shown, on a busy 2-core machine
STARTUP = 20.0


def coach_reply(text: str) -> str:
    return f"Coach: {text}"  # the fake model's default: the reply names its message


@pytest.fixture
async def shared_store(mongo_uri: str) -> AsyncIterator[tuple[str, Store]]:
    """A fresh database on the shared MongoDB, and a store on it for the test's own reads."""
    database = f"scale_{uuid.uuid4().hex[:12]}"
    store = await open_store(mongo_uri, mongodb_database=database)
    try:
        yield database, store
    finally:
        await store.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
        try:
            await client.drop_database(database)
        finally:
            await client.close()


async def trip_before_a_turn(store: Store, who: Identity) -> float:
    """The store work before a turn (the user, the meetings), at its slowest of a few tries:
    the pure-Python emulator is slow on a busy machine, and the burst is spaced beyond it."""
    slowest = 0.0
    for _ in range(3):
        started = time.perf_counter()
        user, _ = await store.get_or_create_user(who, datetime.now(UTC))
        await store.list_meetings(user.id, closing_after=datetime.now(UTC))
        slowest = max(slowest, time.perf_counter() - started)
    return slowest


def web_env(mongo_uri: str, database: str, llm: FakeAnthropic, slack: FakeSlack) -> dict[str, str]:
    """One `web` process of the recipe: Slack HTTP mode, the shared MongoDB, no scheduler."""
    return {
        "ANTHROPIC_API_KEY": "scale-key",
        "ANTHROPIC_BASE_URL": llm.base_url,
        "ANTHROPIC_MAX_RETRIES": "0",
        "DATABASE_URL": mongo_uri,
        "MONGODB_DATABASE": database,
        "SCHEDULER_ENABLED": "false",
        "SLACK_BOT_TOKEN": "xoxb-scale",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.base_url,
        "SLACK_PORT": "0",
        "HISTORY_CONTEXT_MESSAGES": str(2 * BURST),
        "LOG_LEVEL": "INFO",  # the bound port and the ignored duplicates are logged at INFO
    }


async def events_url(process: Momentum) -> str:
    # Two cold interpreters at once on a busy machine: more than one's usual STARTUP_SECONDS.
    port = (await process.wait_for_log(r"Slack HTTP mode on \S+:(\d+)", STARTUP)).group(1)
    return f"http://127.0.0.1:{port}{EVENTS_PATH}"


def shown_replies(slack: FakeSlack, ts: str) -> list[Any]:
    """The bot's messages under the user's message `ts` (FakeSlack keeps only the bot's)."""
    return slack.messages(DM, thread_ts=ts)


def finished(message: Any) -> bool:
    return not message.streaming and not message.text.endswith(STREAMING_INDICATOR)


async def test_two_web_processes_on_mongodb_answer_a_burst_and_its_retries_once_in_order(
    tmp_path: Path, mongo_uri: str, shared_store: tuple[str, Store]
) -> None:
    database, store = shared_store
    who = Identity(platform=Platform.SLACK, external_id=USER, workspace_id=TEAM_ID)
    user, _ = await store.get_or_create_user(who, datetime.now(UTC))
    await store.update_user(user.id, welcomed=True)  # the replies, not the one-off welcome
    gap = max(0.05, 3 * await trip_before_a_turn(store, who))
    async with (
        FakeSlack() as slack,
        FakeAnthropic(token_delay=0.02) as llm,
        aiohttp.ClientSession() as http,
        AsyncExitStack() as stack,
    ):
        slack.add_user(USER)
        env = web_env(mongo_uri, database, llm, slack)
        webs = [await stack.enter_async_context(momentum("run", tmp_path, env)) for _ in "ab"]
        urls = await asyncio.gather(*(events_url(web) for web in webs))

        async def deliver(to: int, raw: bytes, retry_num: int | None = None) -> None:
            headers = sign_request(SECRET, raw, retry_num=retry_num)
            async with http.post(urls[to], data=raw, headers=headers) as response:
                assert response.status == 200, await response.text()

        texts = [f"m{n} is a message" for n in range(BURST)]
        events = [message_event(text, user=USER) for text in texts]
        raws = [json_body(event) for event in events]
        stamps = [str(event["event"]["ts"]) for event in events]

        async def retry(n: int) -> None:  # the same event again, to the other process
            await deliver(1 - n % 2, raws[n], retry_num=1)

        # The load balancer: round robin. A retry comes two messages after its original (its
        # claim is in the store by then, as after Slack's 3 s timeout); the last ones after.
        for n, raw in enumerate(raws):
            await deliver(n % 2, raw)
            if n - 2 in RETRIED:
                await retry(n - 2)
            await asyncio.sleep(gap)
        for n in RETRIED:
            if n >= BURST - 2:
                await retry(n)
                await asyncio.sleep(gap)

        def all_shown() -> bool:
            return all(
                (shown := shown_replies(slack, ts)) and finished(shown[-1]) for ts in stamps
            )

        await eventually(all_shown, WITHIN, "every message answered", webs[0])
        for n in RETRIED:  # each retry was seen, and ignored, by the process it reached
            key = f"duplicate event slack:{DM}:{stamps[n]} ignored"
            await webs[1 - n % 2].wait_for_log(key, within=WITHIN)
        await asyncio.sleep(0.5)  # time enough for a second answer to show, were there one
        for n, ts in enumerate(stamps):  # each answered by the process that got it first
            prompt = f"{DM}:{ts}]: user {user.id}: prompt"
            assert prompt in webs[n % 2].log and prompt not in webs[1 - n % 2].log

        # Exactly one reply under each message, the one naming it, shown in the order sent.
        replies = [shown_replies(slack, ts) for ts in stamps]
        assert [[m.text for m in shown] for shown in replies] == [
            [coach_reply(t)] for t in texts
        ]
        shown_ts = [float(shown[0].ts) for shown in replies]
        assert shown_ts == sorted(shown_ts)
        # The model was asked once per message, one at a time, in the order sent, and each
        # request carried every earlier turn: no retry was answered.
        requests = llm.requests
        assert [r.last_user_text for r in requests] == texts
        for before, after in itertools.pairwise(requests):
            assert before.finished_at is not None and before.finished_at <= after.received_at
        for n, request in enumerate(requests):
            earlier = [part for t in texts[:n] for part in (t, coach_reply(t))]
            assert [m["content"] for m in request.body["messages"]] == [*earlier, texts[n]]
        # The shared history reads m0, r0, m1, r1, …
        history = await store.messages_between(user.id)
        assert [(m.role, m.text) for m in history] == [
            pair for t in texts for pair in ((Role.USER, t), (Role.ASSISTANT, coach_reply(t)))
        ]
        for web in webs:  # both stop cleanly, as on a deploy
            assert await web.terminate() == 0

