"""The Slack adapter: slack-bolt's AsyncApp translating Slack events into Coach calls.

Listeners ack at once and hand the work to `Background`, so Slack gets its 200 within
milliseconds whatever the model does. The app runs with `process_before_response=True`:
a listener returns only after it has *started* its work, which makes the work visible to
`wait_idle()` (graceful shutdown, and tests that must not guess with sleeps) in HTTP and
Socket Mode alike. Bolt's own "ack, then run the listener in a stray future" mode would
hide it.

Dedupe lives in the store (`coach.reply(event_id=...)`), keyed by the message itself
(channel and ts), so a retried delivery, a redelivery after a restart, or one message
arriving as both `message` and `app_mention` is answered once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import Export, run_command, when_for_result, when_local
from bots.slack_notify import web_client
from bots.slack_render import (
    ACTION_CANCEL,
    ACTION_CONFIRM,
    ACTION_HISTORY_PAGE,
    CANCELLED,
    SLASH_COMMAND,
    WARNING,
    HomeFacts,
    SlackMessage,
    coach_markdown,
    escape,
    failure_note,
    from_slack,
    home_view,
    our_text,
    reply_blocks,
    result_message,
)
from bots.slack_stream import Destination, WorkspaceEdits, export_messages, stream_reply
from bots.stream import Failure
from core.coach import Chunk, Coach, Denied, Done, Failed, ReplyEvent, SafetyReply, Welcome
from core.config import Settings
from core.models import Identity, Platform

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/health"
HTTP_HOST = "0.0.0.0"  # behind a proxy or tunnel; Slack must reach it
STATUS_THINKING = "is thinking…"  # Slack shows "<app name> is thinking…"
# Let replies in flight finish before the store closes; under the 30 s that hosts such as
# Heroku allow between SIGTERM and SIGKILL, so the rest of shutdown still runs.
SHUTDOWN_GRACE_SECONDS = 20.0
# Message subtypes in which a person is speaking; every other subtype (edits, deletions,
# joins, bot messages…) is not a message for the coach.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
INTERNAL_ERROR_TEXT = "Something went wrong on my side. It has been logged; please try again."


class SlackSetupError(Exception):
    """Slack settings that cannot work; the message says what to set."""


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


class Background:
    """Tasks that outlive a listener's ack: tracked, so they can be awaited and logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Slack task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until no work is left (work may start more work)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


@dataclass(frozen=True)
class Turn:
    """One user message to answer, and the thread the answer goes to."""

    identity: Identity
    text: str
    where: Destination
    key: str  # dedupe key: the message itself
    retried: bool  # a redelivery: its first delivery may already be answered


def is_user_speaking(event: Mapping[str, Any]) -> bool:
    """A person wrote a new message: no bot, no edit, no deletion, no join notice."""
    return (
        event.get("subtype") in USER_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
        and not event.get("hidden")
    )


def text_of(event: Mapping[str, Any]) -> str:
    """The message's text as the user typed it: Slack sends `&`, `<` and `>` as entities, and
    passing them on would show `&lt;` in /history and give the model `&amp;`. A field of the
    wrong type counts as no text."""
    text = event.get("text")
    return from_slack(text) if isinstance(text, str) else ""


def without_mention(text: str, bot_user_id: str) -> str:
    """`<@BOT> how do I start?` -> `how do I start?`; other people's mentions stay."""
    return re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text).strip()


def is_retry(request: AsyncBoltRequest) -> bool:
    """Slack's redelivery: X-Slack-Retry-Num >= 1 (Bolt mirrors Socket Mode's retry_attempt
    into the same header, with 0 on a first delivery)."""
    attempt = (request.headers.get("x-slack-retry-num") or ["0"])[0]
    return attempt.isdigit() and int(attempt) > 0


class SlackBot:
    """The Bolt app, its listeners and its servers. One per process and bot token."""

    def __init__(
        self,
        coach: Coach,
        settings: Settings,
        *,
        client: AsyncWebClient | None = None,
        stream_client: AsyncWebClient | None = None,
        budgets: WorkspaceEdits | None = None,
    ) -> None:
        self.coach = coach
        self.settings = settings
        # One-off calls may wait out a 429; streaming writes are paced by bots/stream.py.
        self.client = client or web_client(settings, retry_rate_limits=True)
        self.stream_client = stream_client or web_client(settings)
        secret = settings.slack_signing_secret
        self.app = AsyncApp(
            client=self.client,
            signing_secret=secret.get_secret_value() if secret else "",
            process_before_response=True,
        )
        self.background = Background()
        self.budgets = budgets or WorkspaceEdits()
        self._timezones_checked: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._register()

    def _register(self) -> None:
        app = self.app
        app.middleware(attach_identity)
        app.event("message")(self.on_message)
        app.event("app_mention")(self.on_mention)
        app.event("app_home_opened")(self.on_home_opened)
        app.command(SLASH_COMMAND)(self.on_coach_command)
        app.action(ACTION_HISTORY_PAGE)(self.on_history_page)
        app.action(ACTION_CONFIRM)(self.on_confirm)
        app.action(ACTION_CANCEL)(self.on_cancel)

    # --- Listeners: ack, then hand over -------------------------------------------------

    async def on_message(self, event: dict[str, Any], request: AsyncBoltRequest) -> None:
        if event.get("channel_type") != "im" or not is_user_speaking(event):
            return  # acked and ignored: not a person writing in our DM
        self._answer_later(event, request, text_of(event))

    async def on_mention(
        self, event: dict[str, Any], request: AsyncBoltRequest, context: AsyncBoltContext
    ) -> None:
        if event.get("channel_type") == "im" or not is_user_speaking(event):
            return  # a DM arrives as message.im as well
        text = without_mention(text_of(event), context.bot_user_id or "")
        self._answer_later(event, request, text)

    async def on_home_opened(self, event: dict[str, Any], identity: Identity) -> None:
        if event.get("tab") == "home":
            self.background.spawn(self.publish_home(identity), f"home:{identity.external_id}")

    async def on_coach_command(
        self, ack: Any, command: dict[str, Any], respond: AsyncRespond, identity: Identity
    ) -> None:
        await ack()
        line = text_of(command).strip() or "help"
        self.background.spawn(self.answer_command(identity, line, respond), f"/coach {line}")

    async def on_history_page(
        self, ack: Any, action: dict[str, Any], respond: AsyncRespond, identity: Identity
    ) -> None:
        await ack()
        line = f"history {action.get('value', '1')}"
        self.background.spawn(self.answer_command(identity, line, respond, True), line)

    async def on_confirm(
        self, ack: Any, action: dict[str, Any], respond: AsyncRespond, identity: Identity
    ) -> None:
        """The button on a `Confirm` carries its command: running it carries the action out."""
        await ack()
        line = str(action.get("value") or "help")
        self.background.spawn(self.answer_command(identity, line, respond, True), line)

    async def on_cancel(self, ack: Any, respond: AsyncRespond) -> None:
        await ack()
        self.background.spawn(_respond(respond, CANCELLED, replace=True), "cancel")

    def _answer_later(self, event: dict[str, Any], request: AsyncBoltRequest, text: str) -> None:
        channel, ts = event.get("channel"), event.get("ts")
        if not (isinstance(channel, str) and channel and isinstance(ts, str) and ts):
            # Nowhere to answer: acked and logged, not a KeyError that Slack would answer
            # with three retries of the same broken event.
            log.warning("Slack message without channel or ts ignored: %.200r", event)
            return
        identity = request.context["identity"]
        turn = Turn(
            identity=identity,
            text=text,
            where=Destination(
                channel=channel,
                thread_ts=str(event.get("thread_ts") or ts),
                user_id=identity.external_id,
                team_id=identity.workspace_id or "",
                message_ts=ts,
            ),
            key=f"{channel}:{ts}",
            retried=is_retry(request),
        )
        self.background.spawn(self.answer(turn), f"reply:{turn.key}")

    # --- The work ------------------------------------------------------------------------

    async def answer(self, turn: Turn) -> None:
        """Stream the coach's reply to one message into its thread."""
        status_shown = not turn.retried and await self.set_status(turn.where, STATUS_THINKING)
        await self.adopt_timezone(turn.identity)
        events = self.coach.reply(turn.identity, turn.text, event_id=turn.key)
        try:
            async with aclosing(self.deltas(turn, events, status_shown)) as deltas:
                await stream_reply(
                    deltas,
                    self.stream_client,
                    turn.where,
                    self.budgets,
                    native=self.settings.slack_native_streaming,
                )
        except Exception:
            log.exception("reply to %s failed on Slack's side", turn.key)
            with suppress(Exception):  # Slack itself may be what failed
                await self.post(turn.where, f"{WARNING} {INTERNAL_ERROR_TEXT}")

    async def deltas(
        self, turn: Turn, events: AsyncGenerator[ReplyEvent], status_shown: bool
    ) -> AsyncGenerator[str | Failure]:
        """The coach's events as Slack-safe text for the streamer; the welcome goes first,
        as a message of its own."""
        async with aclosing(events):
            async for event in events:
                match event:
                    case Welcome(text=text):
                        await self.post(turn.where, our_text(text))
                    case Chunk(text=text):
                        yield coach_markdown(text)
                    case Denied(text=text) | SafetyReply(text=text):
                        yield our_text(text)
                    case Failed(kind="duplicate"):
                        log.info("already answered %s", turn.key)
                        if status_shown:
                            await self.set_status(turn.where, "")
                    case Failed(user_text=text):
                        yield Failure(failure_note(text))
                    case Done():
                        return

    async def set_status(self, where: Destination, status: str) -> bool:
        """The "thinking…" line under the user's message. Optional: older (non-agent)
        installs lack assistant:write, and a reply works without it."""
        try:
            await self.stream_client.assistant_threads_setStatus(
                channel_id=where.channel, thread_ts=where.thread_ts, status=status
            )
        except SlackApiError as error:
            log.info("no status for %s: %s", where.channel, error.response.get("error"))
            return False
        return True

    async def post(self, where: Destination, markdown: str) -> None:
        """A message of its own in the thread (the welcome), Markdown like the replies."""
        await self.client.chat_postMessage(
            channel=where.channel,
            thread_ts=where.thread_ts,
            text=markdown,
            blocks=reply_blocks(markdown),
        )

    async def adopt_timezone(self, identity: Identity) -> None:
        """Once per user and process: take Slack's timezone if the user has not set one.
        A courtesy: whatever fails here is logged, and the request goes on without it."""
        if identity.external_id in self._timezones_checked:
            return
        self._timezones_checked.add(identity.external_id)
        try:
            info = await self.client.users_info(user=identity.external_id)
            if tz := info["user"].get("tz"):
                await self.coach.suggest_timezone(identity, str(tz))
        except SlackApiError as error:
            log.warning("users.info %s: %s", identity.external_id, error.response.get("error"))
        except Exception:
            log.warning("timezone of %s not adopted", identity.external_id, exc_info=True)
            self._timezones_checked.discard(identity.external_id)  # try again next time

    async def answer_command(
        self, identity: Identity, line: str, respond: AsyncRespond, replace: bool = False
    ) -> None:
        """Run one line of the shared grammar and answer it ephemerally."""
        await self.adopt_timezone(identity)
        try:
            result = await run_command(self.coach, identity, line)
            if line.lower().split()[:1] == ["forget"]:
                self._timezones_checked.discard(identity.external_id)
            if isinstance(result, Export):
                sent = await self.send_export(identity, result)
                message = SlackMessage(f"Your data export is in our DM ({sent} message(s)).")
            else:
                message = result_message(result, when_for_result(self.coach, result))
        except Exception:
            log.exception("/coach %s failed for %s", line[:40], identity.external_id)
            message = SlackMessage(f"{WARNING} {INTERNAL_ERROR_TEXT}")
        await _respond(respond, message, replace=replace)

    async def send_export(self, identity: Identity, export: Export) -> int:
        """All their data as JSON, in our DM: too big for an ephemeral response."""
        opened = await self.client.conversations_open(users=identity.external_id)
        channel = opened["channel"]["id"]
        parts = export_messages(escape(export.json))
        for part in parts:
            await self.client.chat_postMessage(channel=channel, text=part)
        return len(parts)

    async def publish_home(self, identity: Identity) -> None:
        await self.adopt_timezone(identity)
        user = await self.coach.user(identity)
        access, text = await self.coach.access(identity)
        goals = await self.coach.goals(identity)
        meetings = await self.coach.meetings(identity)
        facts = HomeFacts(
            phase=user.phase,
            reachable=access.allowed,
            access_text=text,
            goals=goals,
            next_meeting=meetings[0] if meetings else None,
        )
        view = home_view(facts, when_local(self.coach, user))
        await self.client.views_publish(user_id=identity.external_id, view=view)

    # --- Serving -------------------------------------------------------------------------

    async def keep_connections(self) -> None:
        """Give both Web API clients one aiohttp session, a pool of kept-alive connections.
        Without it slack_sdk makes a session, so a new TCP and TLS connection, per call:
        the bench found connecting to be the largest cost of a Slack call under load."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.client.timeout)
            )
            self.client.session = self.stream_client.session = self._session

    async def start_http(self, host: str = HTTP_HOST, port: int = 3000) -> str:
        """Serve the Events API endpoint and a health route; returns the base URL."""
        await self.keep_connections()
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
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "replies_in_flight": len(self.background)})

    async def stop(self) -> None:
        """Stop taking requests, then let the work in flight finish (within a grace)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS):
                await self.background.wait()
        except TimeoutError:
            log.warning("%d Slack task(s) still running at shutdown", len(self.background))
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self) -> None:
        """Until every reply, command answer and Home update started so far is done."""
        await self.background.wait()

    async def run(self) -> None:
        """Serve until cancelled, in the mode the settings ask for."""
        mode = slack_mode(self.settings)
        socket: AsyncSocketModeHandler | None = None
        await self.keep_connections()
        try:
            if mode == "socket":
                assert self.settings.slack_app_token is not None
                socket = AsyncSocketModeHandler(
                    self.app, self.settings.slack_app_token.get_secret_value()
                )
                await socket.connect_async()  # type: ignore[no-untyped-call]
                log.info("Slack Socket Mode connected")
            else:
                await self.start_http(HTTP_HOST, self.settings.slack_port)
            await asyncio.Event().wait()
        finally:
            if socket is not None:
                await socket.close_async()  # type: ignore[no-untyped-call]
            await self.stop()


async def attach_identity(context: AsyncBoltContext, next: Callable[[], Awaitable[None]]) -> None:
    """Every listener speaks to the coach as this Identity; built once, here."""
    if context.user_id:
        context["identity"] = Identity(
            platform=Platform.SLACK,
            external_id=context.user_id,
            workspace_id=context.team_id or context.enterprise_id,
        )
    await next()


async def _respond(respond: AsyncRespond, message: SlackMessage, *, replace: bool) -> None:
    await respond(
        text=message.text,
        blocks=message.blocks,
        response_type="ephemeral",
        replace_original=replace,
    )


async def serve_slack(coach: Coach, settings: Settings) -> None:
    """The `momentum run` service for Slack; SlackSetupError says what to set."""
    slack_mode(settings)
    await SlackBot(coach, settings).run()
