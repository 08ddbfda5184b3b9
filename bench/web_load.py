"""The web's load run: a real `momentum run` with WEB_ENABLED, N concurrent conversations
over real WebSockets (the `websockets` client), timed as bench/load.py times Slack's.

There is no platform fake: the bench's own WebSocket clients are the users' browsers, and
what a client received, frame by frame, is its screen (bench/screens.py `web_screen`). Each
conversation is a web user of its own in goal setting (the gate lets them in), welcomed
beforehand, with its own token: one message per token, so the per-token rate limit
(WEB_RATE_BURST) is never what is measured, and the bench leaves it as configured. A
conversation opens its socket, waits for `connected`, then the clock starts as its message
frame leaves; the socket is closed once the whole reply (`response`) has arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.load import (
    LoadConfig,
    anthropic_fake,
    base_env,
    collect_conversations,
    drive,
    figures,
    launcher,
    seed_welcomed_users,
)
from bench.screens import web_screen
from core.keys import Keys
from core.models import Identity, Platform, User
from core.store.sqlite import SQLiteStore
from tests.momentum_process import momentum
from tests.test_web_run import free_port

WS_PATH = "/api/v1/chat/ws"
CONNECT_SECONDS = 60.0  # a bot busy with 500 streams still has to accept the 500th socket
STARTUP_SECONDS = 60.0  # a start on a busy machine is not what is measured


class Client:
    """One user's browser: the frames it received, stamped on arrival."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.finished = False
        self.rate_limited = 0  # `error` frames saying rate_limited: the web's 429

    async def read(self, socket: ClientConnection) -> None:
        try:
            async for raw in socket:
                at, frame = time.monotonic(), json.loads(raw)
                self.frames.append((at, frame))
                if frame.get("type") == "error" and frame.get("error") == "rate_limited":
                    self.rate_limited += 1
                if frame.get("type") in ("response", "error"):
                    self.finished = True
                    break
        except ConnectionClosed:
            pass  # the bot stopped: what arrived is what the user saw
        finally:
            await socket.close()


async def tokens_for(db: Path, users: list[User]) -> list[str]:
    """A token each, as `momentum admin token create` makes them (only the digest is stored)."""
    store = await SQLiteStore.open(str(db))
    try:
        keys = Keys(store, lambda: datetime.now(UTC))
        return [await keys.new_token(user) for user in users]
    finally:
        await store.close()


async def run_web(
    n: int, config: LoadConfig, workdir: Path, *, profile: Path | None = None
) -> dict[str, Any]:
    total = config.conversations(n)
    db = workdir / "web.db"
    users = await seed_welcomed_users(
        db, [Identity(platform=Platform.WEB, external_id=f"bench{i:05d}") for i in range(total)]
    )
    tokens = await tokens_for(db, users)
    port = free_port()
    clients = [Client() for _ in range(total)]
    readers: list[asyncio.Task[None]] = []
    async with anthropic_fake(config) as llm:
        env = base_env(llm, db) | {
            "WEB_ENABLED": "true",
            "WEB_PORT": str(port),
            "LOG_LEVEL": "INFO",  # "web on http://..." is logged at INFO
        }
        async with momentum("run", workdir, env, launcher=launcher(profile)) as process:
            await process.wait_for_log(r"web on http://", within=STARTUP_SECONDS)
            url = f"ws://127.0.0.1:{port}{WS_PATH}"

            async def send(i: int) -> tuple[str, float]:
                key = f"web c{i}"
                socket = await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {tokens[i]}"},
                    proxy=None,  # loopback, whatever the environment's proxy says
                    open_timeout=CONNECT_SECONDS,
                )
                hello = json.loads(await socket.recv())
                if hello.get("type") != "connected":
                    raise RuntimeError(f"the web said {hello!r} instead of connected")
                sent_at = time.monotonic()
                await socket.send(json.dumps({"type": "message", "content": key}))
                readers.append(asyncio.create_task(clients[i].read(socket)))
                return key, sent_at

            def finished() -> set[int]:
                return {i for i, client in enumerate(clients) if client.finished}

            try:
                sent, usage = await drive(process, n, config, send, finished)
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
    by_key = {f"web c{i}": client for i, client in enumerate(clients)}
    convs = collect_conversations(sent, llm, lambda key: web_screen(by_key[key].frames))
    return figures(convs, usage, sum(c.rate_limited for c in clients), config)
