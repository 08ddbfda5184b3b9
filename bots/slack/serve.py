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
from bots.slack.oauth_setup import INSTALL_PATH, REDIRECT_PATH, install_url, oauth_problem
from core.coach import Coach
from core.config import Settings
from core.models import Platform

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/health"
HTTP_HOST = "0.0.0.0"  # behind a proxy or tunnel; Slack must reach it


def slack_mode(settings: Settings) -> Literal["socket", "http"]:
    """Socket Mode when an app-level token is set; HTTP (Events API) otherwise, for one
    pasted bot token or, with an OAuth client, for any workspace ("Add to Slack")."""
    if (problem := oauth_problem(settings)) is not None:
        raise SlackSetupError(problem + ".")
    if settings.slack_oauth:
        if settings.slack_bot_token is not None:
            log.warning("SLACK_BOT_TOKEN is ignored: with SLACK_CLIENT_ID each workspace "
                        "adds the app at %s", install_url(settings))  # fmt: skip
        return "http"
    if settings.slack_bot_token is None:
        raise SlackSetupError("SLACK_BOT_TOKEN is not set.")
    if settings.slack_app_token is not None:
        if not settings.slack_app_token.get_secret_value().startswith("xapp-"):
            raise SlackSetupError("SLACK_APP_TOKEN must be an app-level token (xapp-…).")
        if settings.slack_client_id is not None:
            log.warning("SLACK_CLIENT_ID is ignored: Add to Slack needs HTTP mode "
                        "(no SLACK_APP_TOKEN)")  # fmt: skip
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
        if self.bot.app.oauth_flow is not None:  # "Add to Slack"
            server.router.add_get(INSTALL_PATH, self._install)
            server.router.add_get(REDIRECT_PATH, self._oauth_redirect)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        log.info("Slack HTTP mode on %s:%s%s", bound_host, bound_port, EVENTS_PATH)
        if self.bot.app.oauth_flow is not None:
            log.info("Slack: Add to Slack at %s", install_url(self.bot.settings))
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

    async def _install(self, request: web.Request) -> web.Response:
        """A state cookie and the redirect to Slack's authorize page."""
        flow = self.bot.app.oauth_flow
        assert flow is not None
        return await to_aiohttp_response(
            await flow.handle_installation(await to_bolt_request(request))
        )

    async def _oauth_redirect(self, request: web.Request) -> web.Response:
        """Slack sends the installer back here: the state checked, the code exchanged for
        the workspace's tokens, which are saved (encrypted). A wrong state is refused."""
        flow = self.bot.app.oauth_flow
        assert flow is not None
        answer = await flow.handle_callback(await to_bolt_request(request))
        if answer.status != 200:
            log.warning("Slack install refused (HTTP %s): %s", answer.status,
                        request.query.get("error") or "bad or missing state")  # fmt: skip
        return await to_aiohttp_response(answer)

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
