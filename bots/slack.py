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
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import Export, run_command, when_for_result
from bots.repairs import keep_repairing
from bots.slack_errors import refusal
from bots.slack_notify import SlackSetupError, check_bot_token, open_socket_url, web_client
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
from bots.slack_repair import finish_cut_reply
from bots.slack_stream import Destination, WorkspaceEdits, export_messages, stream_reply
from bots.startup import Retries
from bots.stream import CUT_WRITE_SECONDS
from bots.voice import When, spoken
from core.coach import Coach
from core.config import Settings
from core.models import Identity, InFlight, Platform
from core.texts import CUT_OFF_TEXT, INTERNAL_ERROR_TEXT
from core.timeparse import UserTime
from core.turn import Reply

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/health"
HTTP_HOST = "0.0.0.0"  # behind a proxy or tunnel; Slack must reach it
STATUS_THINKING = "is thinking…"  # Slack shows "<app name> is thinking…"
# Message subtypes in which a person is speaking; every other subtype (edits, deletions,
# joins, bot messages…) is not a message for the coach.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
RESPOND_ATTEMPTS = 2  # a response_url answer refused with a 5xx or 429 is sent once more
RESPOND_RETRY_SECONDS = 1.0


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

    async def stop(self, grace: float) -> None:
        """Let the work finish for `grace` seconds; then cancel what is left, which ends
        each reply with a note (bots/stream.py `cut_note`), and wait for those notes."""
        # asyncio.wait, not asyncio.timeout: this runs in a task being cancelled (SIGTERM),
        # and before 3.12 a timeout there raises CancelledError instead of TimeoutError.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)  # work may start more work
        if not self._tasks:
            return
        log.warning("%d task(s) still running after %.1f s: cutting them off", len(self), grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.wait(set(self._tasks), timeout=CUT_WRITE_SECONDS + 1)


@dataclass(frozen=True)
class Turn:
    """One user message to answer, the thread the answer goes to, and the coach's reply,
    made when the event arrived (its place in the user's line is taken then)."""

    identity: Identity
    where: Destination
    key: str  # dedupe key: the message itself
    retried: bool  # a redelivery: its first delivery may already be answered
    reply: Reply


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


def sent_at(ts: str) -> datetime | None:
    """When Slack stamped a message (its ts is seconds since 1970): the order of a burst."""
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (ValueError, OverflowError):
        return None


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
        self.retries = Retries.from_settings(settings)
        self._signed_in: AuthorizeResult | None = None
        self._signing_in = asyncio.Lock()

        async def authorize() -> AuthorizeResult:
            # Signed in before serving: no request awaits the network (or one another) here.
            if self._signed_in is not None:
                return self._signed_in
            return await self.sign_in()

        self.app = AsyncApp(
            # Bolt gives each request its own copy of this client, with the token that
            # `authorize` returns: a token here would only make Bolt warn that it ignores it.
            client=AsyncWebClient(base_url=self.client.base_url, timeout=self.client.timeout),
            authorize=authorize,
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
        where = Destination(
            channel=channel,
            thread_ts=str(event.get("thread_ts") or ts),
            user_id=identity.external_id,
            team_id=identity.workspace_id or "",
            message_ts=ts,
        )
        key = f"{channel}:{ts}"
        # Before any await: the message's place in line is taken as it arrives.
        reply = self.coach.reply(
            identity,
            text,
            event_id=key,
            sent_at=sent_at(ts),
            place=where.place(),
            prepare=lambda: self.adopt_timezone(identity),
        )
        turn = Turn(identity, where, key, retried=is_retry(request), reply=reply)
        self.background.spawn(self.answer(turn), f"reply:{turn.key}")

    # --- The work ------------------------------------------------------------------------

    async def answer(self, turn: Turn) -> None:
        """Stream the coach's reply to one message into its thread."""
        async with aclosing(turn.reply) as events:
            status_shown = not turn.retried and await self.set_status(
                turn.where, STATUS_THINKING
            )
            try:
                voice = SlackVoice(self, turn, status_shown)
                async with aclosing(spoken(events, voice)) as deltas:
                    await stream_reply(
                        deltas,
                        self.stream_client,
                        turn.where,
                        self.budgets,
                        native=self.settings.slack_native_streaming,
                        shown=events.shown_at,
                        cut_note=failure_note(CUT_OFF_TEXT),
                    )
            except Exception:
                log.exception("reply to %s failed on Slack's side", turn.key)
                await events.undelivered()
                with suppress(Exception):  # Slack itself may be what failed
                    await self.post(turn.where, f"{WARNING} {INTERNAL_ERROR_TEXT}")

    async def set_status(self, where: Destination, status: str) -> bool:
        """The "thinking…" line under the user's message. Optional: older (non-agent)
        installs lack assistant:write, and a reply works without it."""
        try:
            await self.stream_client.assistant_threads_setStatus(
                channel_id=where.channel, thread_ts=where.thread_ts, status=status
            )
        except SlackApiError as error:
            log.info("no status for %s: %s", where.channel, refusal(error))
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

    async def post_welcome(self, where: Destination, markdown: str) -> bool:
        """The welcome, a message of its own before the first reply. False when Slack
        refused it: the user is welcomed once only, so the welcome then opens the reply."""
        try:
            await self.post(where, markdown)
        except SlackApiError as error:
            log.warning(
                "welcome in %s not posted (%s): the reply opens with it",
                where.channel,
                refusal(error),
            )
            return False
        return True

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
            refused = refusal(error)
            log.warning("users.info %s: %s", identity.external_id, refused)
            if refused.server_error or refused.rate_limited:  # passing: try again next time
                self._timezones_checked.discard(identity.external_id)
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
                message = result_message(result, when_for_result(result))
        except Exception:
            log.exception("/coach %s failed for %s", line[:40], identity.external_id)
            message = SlackMessage(f"{WARNING} {INTERNAL_ERROR_TEXT}")
        command = "".join(line.split()[:1])  # a button's value may be blank
        await _respond(respond, message, replace=replace, about=f"/coach {command}")

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
        you = await self.coach.session(identity)
        meetings = await you.meetings()
        facts = HomeFacts(
            phase=you.user.phase,
            standing=await you.access(),
            goals=await you.goals(),
            next_meeting=meetings[0] if meetings else None,
        )
        view = home_view(facts, you.time)
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
            self.app.client.session = self._session  # the base of each request's client

    async def sign_in(self) -> AuthorizeResult:
        """auth.test, once, before serving: a rejected SLACK_BOT_TOKEN stops the start (a
        SlackSetupError), and Bolt gets who the bot is from here (`authorize`), so that no
        request waits on auth.test. Bolt's own single-workspace mode called it lazily, on the
        first requests, and a burst of them then reached the listeners out of order."""
        async with self._signing_in:
            if self._signed_in is None:
                response = await check_bot_token(self.client, self.retries)
                self._signed_in = AuthorizeResult.from_auth_test_response(
                    bot_token=self.client.token,
                    bot_scopes=response.headers.get("x-oauth-scopes"),
                    auth_test_response=response,
                )
                log.info("Slack: signed in as %s in %s", response["user"], response["team"])
        return self._signed_in

    async def start_http(self, host: str = HTTP_HOST, port: int = 3000) -> str:
        """Serve the Events API endpoint and a health route; returns the base URL."""
        await self.keep_connections()
        await self.sign_in()
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
        await self.background.stop(self.settings.shutdown_grace_seconds)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self) -> None:
        """Until every reply, command answer and Home update started so far is done."""
        await self.background.wait()

    async def repair(self, record: InFlight) -> str | None:
        """Finish a reply a crash cut off (bots/slack_repair.py)."""
        return await finish_cut_reply(
            self.stream_client, record.place, failure_note(CUT_OFF_TEXT)
        )

    async def run(self) -> None:
        """Serve until cancelled, in the mode the settings ask for."""
        mode = slack_mode(self.settings)
        socket: AsyncSocketModeHandler | None = None
        await self.keep_connections()
        repairs: asyncio.Task[None] | None = None
        try:
            await self.sign_in()
            repairs = asyncio.create_task(keep_repairing(self.coach, Platform.SLACK, self.repair))
            if mode == "socket":
                assert self.settings.slack_app_token is not None
                app_token = self.settings.slack_app_token.get_secret_value()
                socket = AsyncSocketModeHandler(self.app, app_token)
                # Open the first connection's URL here, where a rejected token or no network
                # ends the start with one line; the SDK would retry it forever, with tracebacks.
                socket.client.wss_uri = await open_socket_url(self.client, app_token, self.retries)
                await socket.connect_async()  # type: ignore[no-untyped-call]
                log.info("Slack Socket Mode connected")
            else:
                await self.start_http(HTTP_HOST, self.settings.slack_port)
            await asyncio.Event().wait()
        finally:
            if repairs is not None:
                repairs.cancel()
            if socket is not None:
                await socket.close_async()  # type: ignore[no-untyped-call]
            await self.stop()


class SlackVoice:
    """bots/voice.py's Voice for one Slack reply: Markdown made Slack-safe, `/coach …`
    commands, the welcome posted as a message of its own."""

    def __init__(self, bot: SlackBot, turn: Turn, status_shown: bool) -> None:
        self.bot, self.turn, self.status_shown = bot, turn, status_shown

    def coach(self, text: str) -> str:
        return coach_markdown(text)

    def ours(self, text: str) -> str:
        return our_text(text)

    def note(self, text: str) -> str:
        return failure_note(text)

    def when(self, time: UserTime) -> When:
        return time

    async def welcome(self, text: str) -> str:
        if await self.bot.post_welcome(self.turn.where, our_text(text)):
            return ""
        return our_text(text) + "\n\n"  # it opens the reply instead

    async def duplicate(self) -> None:
        log.info("already answered %s", self.turn.key)
        if self.status_shown:
            await self.bot.set_status(self.turn.where, "")


async def attach_identity(context: AsyncBoltContext, next: Callable[[], Awaitable[None]]) -> None:
    """Every listener speaks to the coach as this Identity; built once, here."""
    if context.user_id:
        context["identity"] = Identity(
            platform=Platform.SLACK,
            external_id=context.user_id,
            workspace_id=context.team_id or context.enterprise_id,
        )
    await next()


async def _respond(
    respond: AsyncRespond, message: SlackMessage, *, replace: bool, about: str = "an action"
) -> None:
    """An ephemeral answer through the response_url. slack_sdk's webhook client returns a
    refusal instead of raising it: a passing one (a proxy's 503, a 429) is tried once more,
    and one that stays is logged rather than dropped unseen."""
    for attempt in range(RESPOND_ATTEMPTS):
        answer = await respond(
            text=message.text,
            blocks=message.blocks,
            response_type="ephemeral",
            replace_original=replace,
        )
        passing = answer.status_code >= 500 or answer.status_code == 429
        if answer.status_code == 200 or not passing or attempt == RESPOND_ATTEMPTS - 1:
            break
        await asyncio.sleep(RESPOND_RETRY_SECONDS)
    if answer.status_code != 200:
        log.warning(
            "Slack refused the answer to %s through its response_url: HTTP %s %r",
            about,
            answer.status_code,
            " ".join(str(answer.body).split())[:80],
        )


async def serve_slack(coach: Coach, settings: Settings) -> None:
    """The `momentum run` service for Slack; SlackSetupError says what to set."""
    slack_mode(settings)
    await SlackBot(coach, settings).run()
