"""A real web adapter for tests: uvicorn serving bots/web on a loopback port, over a real
Coach (SQLite file, the anthropic SDK against the fake), and an aiohttp client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bots.web.serve import WebServer
from core.coach import Coach
from core.models import Identity, Platform
from core.store.sqlite import SQLiteStore
from tests.support import FakeClock, coach_on


@dataclass
class WebWorld:
    coach: Coach
    http: aiohttp.ClientSession  # relative URLs: /api/v1/...
    base_url: str

    async def token(self, name: str = "ada") -> str:
        """A new token for the web user `name` (created if need be)."""
        user = await self.coach.user(Identity(platform=Platform.WEB, external_id=name))
        return await self.coach.keys.new_token(user)

    async def signed_in(self, name: str = "ada") -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(name)}"}

    async def tracking(self, headers: dict[str, str]) -> None:
        """A goal, a meeting tomorrow at 9:00 and the tracking phase: the window is closed."""
        await self.post("/api/v1/goals", headers, {"text": "Run 5k"})
        status, booked = await self.post("/api/v1/meetings", headers, {"when": "tomorrow 9am"})
        assert status == 201, booked
        async with self.http.put("/api/v1/phase", headers=headers, json={"phase": "tracking"}) as r:
            assert r.status == 200, await r.text()

    async def get(self, path: str, headers: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
        async with self.http.get(path, headers=headers, **kwargs) as response:
            return response.status, await response.json()

    async def post(self, path: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
        async with self.http.post(path, headers=headers, json=body) as response:
            return response.status, await response.json()


@asynccontextmanager
async def web_on(
    tmp_path: Path, llm_url: str | None, clock: FakeClock | None = None, **settings: Any
) -> AsyncIterator[WebWorld]:
    store = await SQLiteStore.open(str(tmp_path / "web.db"))
    try:
        async with coach_on(store, llm_url, clock, **settings) as coach:
            listening = socket.create_server(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{listening.getsockname()[1]}"
            serving = asyncio.create_task(WebServer(coach, coach.settings).run(listening))
            try:
                async with aiohttp.ClientSession(base_url) as http:
                    yield WebWorld(coach, http, base_url)
            finally:
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
    finally:
        await store.close()
