"""Serving the Slack app: over HTTP (the Events API endpoint and /health on aiohttp) or over
Socket Mode, signed in first, and shut down so that the replies in flight finish or end
with a note (bots/tasks.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bots.repairs import keep_repairing
from bots.slack.app import SlackBot
from bots.slack.notify import SlackSetupError, open_socket_url
from core.coach import Coach
from core.config import Settings
from core.models import Platform

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/health"
HTTP_HOST = "0.0.0.0"  # behind a proxy or tunnel; Slack must reach it


def slack_mode(settings: Settings) -> Literal["socket", "http"]:
    """Socket Mode when an app-level token is set; HTTP (Events API) otherwise."""
    if settings.slack_bot_token is None:
        raise SlackSetupError("SLACK_BOT_TOKEN is not set.")
    if settings.slack_app_token is not None:
        if not settings.slack_app_token.get_secret_value().startswith("xapp-"):
            raise SlackSetupError("SLACK_APP_TOKEN must be an app-level token (xapp-…).")
        return "socket"
    if settings.slack_signing_secret is None:
        raise SlackSetupError(
            "Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)."
        )
    return "http"


class SlackServer:
    """Serves one SlackBot until cancelled, in the mode the settings ask for."""

    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def keep_connections(self) -> None:
        """Give the bot's Web API clients one aiohttp session, a pool of kept-alive
        connections. Without it slack_sdk makes a session, so a new TCP and TLS connection,
        per call: the bench found connecting to be the largest cost of a Slack call under
        load."""
        if self._session is None or self._session.closed:
            bot = self.bot
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=bot.client.timeout)
            )
            bot.client.session = bot.stream_client.session = self._session
            bot.app.client.session = self._session  # the base of each request's client

    async def start_http(self, host: str = HTTP_HOST, port: int = 3000) -> str:
        """Serve the Events API endpoint and a health route; returns the base URL."""
        await self.keep_connections()
        await self.bot.sign_in()
        server = web.Application()
        server.router.add_post(EVENTS_PATH, self._dispatch)
        server.router.add_get(HEALTH_PATH, self._health)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        log.info("Slack HTTP mode on %s:%s%s", bound_host, bound_port, EVENTS_PATH)
        return f"http://{bound_host}:{bound_port}"

    async def _dispatch(self, request: web.Request) -> web.Response:
        try:
            bolt_request = await to_bolt_request(request)
        except Exception as error:
            # Bolt parses the body before it checks the signature and raises on a body that
            # is not the JSON object or form Slack sends: answer 400, not a 500 and a traceback.
            log.warning("Slack request refused, unreadable body: %r", error)
            return web.json_response({"error": "bad request"}, status=400)
        return await to_aiohttp_response(await self.bot.app.async_dispatch(bolt_request))

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "replies_in_flight": len(self.bot.background)})

    async def stop(self) -> None:
        """Stop taking requests, then let the work in flight finish (within the grace)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.bot.background.stop(self.bot.settings.shutdown_grace_seconds)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        bot, settings = self.bot, self.bot.settings
        mode = slack_mode(settings)
        socket: AsyncSocketModeHandler | None = None
        await self.keep_connections()
        repairs: asyncio.Task[None] | None = None
        try:
            await bot.sign_in()
            repairs = asyncio.create_task(keep_repairing(bot.coach, Platform.SLACK, bot.repair))
            if mode == "socket":
                assert settings.slack_app_token is not None
                app_token = settings.slack_app_token.get_secret_value()
                socket = AsyncSocketModeHandler(bot.app, app_token)
                # Open the first connection's URL here, where a rejected token or no network
                # ends the start with one line; the SDK would retry it forever, with tracebacks.
                socket.client.wss_uri = await open_socket_url(bot.client, app_token, bot.retries)
                await socket.connect_async()  # type: ignore[no-untyped-call]
                log.info("Slack Socket Mode connected")
            else:
                await self.start_http(HTTP_HOST, settings.slack_port)
            await asyncio.Event().wait()
        finally:
            if repairs is not None:
                repairs.cancel()
            if socket is not None:
                await socket.close_async()  # type: ignore[no-untyped-call]
            await self.stop()


async def serve_slack(coach: Coach, settings: Settings) -> None:
    """The `momentum run` service for Slack; SlackSetupError says what to set."""
    slack_mode(settings)
    await SlackServer(SlackBot(coach, settings)).run()
