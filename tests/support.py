"""Builders shared by tests: a controllable clock, settings that ignore the developer's .env,
and a real Coach (real store, real anthropic SDK) pointed at a loopback fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from core.anthropic_llm import AnthropicLLM
from core.coach import Coach
from core.config import Settings
from core.events import ReplyEvent
from core.models import Identity, Platform
from core.persona import Persona
from core.store import Store

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


class FakeClock:
    """Now, as the test says it is."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "anthropic_api_key": "test-key",
        "anthropic_model": "claude-sonnet-5-5",
        "anthropic_max_retries": 0,
        "llm_deadline_seconds": 10.0,
        "llm_stall_seconds": 5.0,
        "database_url": "sqlite:///:memory:",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def make_llm(settings: Settings, base_url: str) -> AnthropicLLM:
    assert settings.anthropic_api_key is not None
    return AnthropicLLM(
        api_key=settings.anthropic_api_key.get_secret_value(),
        model=settings.anthropic_model,
        max_tokens=settings.anthropic_max_tokens,
        base_url=base_url,
        max_retries=settings.anthropic_max_retries,
        deadline_seconds=settings.llm_deadline_seconds,
        stall_seconds=settings.llm_stall_seconds,
    )


@asynccontextmanager
async def coach_on(
    store: Store, llm_url: str | None, clock: FakeClock | None = None, **overrides: Any
) -> AsyncIterator[Coach]:
    """A Coach on `store`, talking to the fake Anthropic at `llm_url` (None: unconfigured)."""
    settings = make_settings(**overrides)
    llm = make_llm(settings, llm_url) if llm_url else None
    try:
        yield Coach(
            store, llm, Persona.load(settings.persona_path), settings, clock=clock or FakeClock()
        )
    finally:
        if llm is not None:
            await llm.aclose()


def person(name: str = "U1", platform: Platform = Platform.CONSOLE) -> Identity:
    return Identity(platform=platform, external_id=name)


async def collect(coach: Coach, identity: Identity, text: str, **kwargs: Any) -> list[ReplyEvent]:
    async with aclosing(coach.reply(identity, text, **kwargs)) as events:
        return [event async for event in events]
