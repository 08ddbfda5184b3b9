"""Serving the web adapter in `momentum run`: uvicorn on WEB_HOST:WEB_PORT, until cancelled;
then the replies in flight get the shutdown grace to finish (they are stored either way)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from bots.repairs import keep_repairing
from bots.tasks import Background
from bots.web.app import create_app
from core.coach import Coach
from core.config import Settings
from core.errors import SetupError
from core.models import InFlight, Platform

log = logging.getLogger(__name__)

MAX_WEBSOCKET_BYTES = 1 << 20  # a frame over this closes the socket (1009); ws.py says less


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handlers: the process's own stop `momentum run` (SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    def __init__(self, coach: Coach, settings: Settings) -> None:
        self.coach, self.settings = coach, settings
        self.background = Background("web")
        self.app = create_app(coach, self.background)

    def bind(self) -> socket.socket:
        host, port = self.settings.web_host, self.settings.web_port
        try:
            return socket.create_server((host, port), reuse_port=False)
        except OSError as error:
            raise SetupError(
                f"WEB_PORT: cannot listen on {host}:{port} ({error.strerror}); "
                "is another process using it? Set WEB_PORT to a free port."
            ) from error

    async def run(self, listening: socket.socket | None = None) -> None:
        listening = listening or self.bind()
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws_max_size=MAX_WEBSOCKET_BYTES,
            ws_ping_interval=self.settings.web_ping_seconds,
            ws_ping_timeout=self.settings.web_ping_seconds,
            timeout_graceful_shutdown=max(1, round(self.settings.shutdown_grace_seconds)),
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve([listening]), name="web-server")
        repairs = asyncio.create_task(keep_repairing(self.coach, Platform.WEB, _nothing_shown))
        host, port = listening.getsockname()[:2]
        log.info("web on http://%s:%s (API docs at /api/v1/docs)", host, port)
        try:
            await asyncio.shield(serving)
        finally:
            repairs.cancel()
            server.should_exit = True
            await asyncio.gather(serving, return_exceptions=True)
            await self.background.stop(self.settings.shutdown_grace_seconds)


async def _nothing_shown(record: InFlight) -> str | None:
    """A web reply cut off by a crash has no message to finish: its client is gone. What was
    said is stored, incomplete, and shows in the history (None: the record's own text)."""
    return None


async def serve_web(coach: Coach, settings: Settings) -> None:
    await WebServer(coach, settings).run()
