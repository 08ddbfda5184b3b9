"""A whole Slack deployment on loopback, for tests: FakeSlack, FakeAnthropic, a real Coach on
SQLite, and the real SlackBot serving its HTTP endpoint on 127.0.0.1. Events reach it as
signed HTTP requests, exactly as Slack sends them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bots.slack.app import SlackBot
from bots.slack.serve import EVENTS_PATH, SlackServer
from bots.slack.stream import WorkspaceEdits
from core.anthropic_llm import AnthropicLLM
from core.coach import Coach
from core.config import Settings
from core.models import Identity, Platform
from core.persona import Persona
from core.store import Store, open_store
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.slack_api import (
    TEAM_ID,
    USER_ID,
    FakeSlack,
    json_body,
    message_event,
    sign_request,
    slash_command_body,
)

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
# Fast budgets: the pacing logic is the same, only the clock is shorter.
FAST_BUDGETS = ((50, 0.5), (100, 0.5))


def identity(user: str = USER_ID) -> Identity:
    return Identity(platform=Platform.SLACK, external_id=user, workspace_id=TEAM_ID)


def settings_for(fake: FakeSlack, llm: FakeAnthropic, db: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{db}",
        "anthropic_api_key": "test-key",
        "anthropic_base_url": llm.base_url,
        "anthropic_max_retries": 0,
        "slack_bot_token": TOKEN,
        "slack_signing_secret": SECRET,
        "slack_api_url": fake.base_url,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Deployment:
    fake: FakeSlack
    llm: FakeAnthropic
    bot: SlackBot
    coach: Coach
    store: Store
    url: str
    http: aiohttp.ClientSession

    async def send(
        self, body: bytes | dict[str, Any], *, retry_num: int | None = None, secret: str = SECRET
    ) -> aiohttp.ClientResponse:
        raw = json_body(body) if isinstance(body, dict) else body
        headers = sign_request(secret, raw, retry_num=retry_num)
        async with self.http.post(self.url + EVENTS_PATH, data=raw, headers=headers) as response:
            await response.read()
            return response

    async def deliver(self, body: bytes | dict[str, Any], **kwargs: Any) -> None:
        """Send, expect Slack's 200, and wait until the work it started is done."""
        response = await self.send(body, **kwargs)
        assert response.status == 200, response.status
        await self.bot.wait_idle()

    async def dm(self, text: str, **kwargs: Any) -> dict[str, Any]:
        envelope = message_event(text, **kwargs)
        await self.deliver(envelope)
        return envelope["event"]

    async def command(self, text: str, *, tag: str = "cmd", user: str = USER_ID) -> dict[str, Any]:
        """`/coach <text>`; returns the (last) response posted to its response_url."""
        before = len(self.fake.responses(tag))
        body = slash_command_body(
            "/coach", text, response_url=self.fake.response_url(tag), user=user
        )
        await self.deliver(body)
        responses = self.fake.responses(tag)
        assert len(responses) == before + 1, responses
        return responses[-1]


def block_texts(blocks: list[dict[str, Any]] | None) -> str:
    """Every text in a Block Kit payload, joined: what a user reads."""
    return json.dumps(blocks or [], ensure_ascii=False)


@asynccontextmanager
async def deployment(
    tmp_path: Path,
    *,
    fake: FakeSlack | None = None,
    llm: FakeAnthropic | None = None,
    budgets: tuple[tuple[int, float], tuple[int, float]] = FAST_BUDGETS,
    db_name: str = "momentum.db",
    **settings: Any,
) -> AsyncIterator[Deployment]:
    fake = fake or FakeSlack()
    llm = llm or FakeAnthropic()
    async with fake, llm, aiohttp.ClientSession() as http:
        config = settings_for(fake, llm, tmp_path / db_name, **settings)
        store = await open_store(
            config.database_url,
            mongodb_database=config.mongodb_database,
            timeout_seconds=config.database_timeout_seconds,
        )
        model = AnthropicLLM(
            api_key="test-key",
            model=config.anthropic_model,
            max_tokens=config.anthropic_max_tokens,
            base_url=llm.base_url,
            max_retries=config.anthropic_max_retries,
            deadline_seconds=config.llm_deadline_seconds,
            stall_seconds=config.llm_stall_seconds,
        )
        coach = Coach(store, model, Persona.load(None), config)
        bot = SlackBot(coach, config, budgets=WorkspaceEdits(*budgets))
        server = SlackServer(bot)
        url = await server.start_http("127.0.0.1", 0)
        try:
            yield Deployment(fake, llm, bot, coach, store, url, http)
        finally:
            await server.stop()
            await model.aclose()
            await store.close()
