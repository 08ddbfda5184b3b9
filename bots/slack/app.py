"""The Slack adapter: slack-bolt's AsyncApp translating Slack events into Coach calls.

Listeners ack at once and hand the work to `Background` (bots/tasks.py), so Slack gets its
200 within milliseconds whatever the model does. The app runs with
`process_before_response=True`: a listener returns only after it has *started* its work,
which makes the work visible to `wait_idle()` (graceful shutdown, and tests that must not
guess with sleeps) in HTTP and Socket Mode alike. Bolt's own "ack, then run the listener in
a stray future" mode would hide it. Serving (HTTP, Socket Mode, shutdown) is in serve.py;
writing a reply into its thread in replying.py.

With SLACK_CLIENT_ID and SLACK_CLIENT_SECRET ("Add to Slack", bots/slack/oauth.py), Bolt's
OAuth flow replaces the one pasted token: each request carries its workspace's token, and
the work it starts speaks to Slack with that token (`replies` in the request's context).

Dedupe lives in the store (`coach.reply(event_id=...)`), keyed by the message itself
(channel and ts), so a retried delivery, a redelivery after a restart, or one message
arriving as both `message` and `app_mention` is answered once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import Export, goals_view, run_command, when_for_result
from bots.slack.edits import Destination
from bots.slack.errors import refusal
from bots.slack.events import is_retry, is_user_speaking, sent_at, text_of, without_mention
from bots.slack.notify import check_bot_token, web_client
from bots.slack.oauth import (
    SlackInstallations,
    WorkspaceTokens,
    listen_for_uninstalls,
    oauth_settings,
)
from bots.slack.render import (
    ACTION_CANCEL,
    ACTION_CONFIRM,
    ACTION_HISTORY_PAGE,
    ACTION_PROPOSAL_CONFIRM,
    ACTION_PROPOSAL_DECLINE,
    CANCELLED,
    SLASH_COMMAND,
    WARNING,
    HomeFacts,
    SlackMessage,
    decided_message,
    escape,
    home_view,
    result_message,
)
from bots.slack.replying import SlackReplies, Turn
from bots.slack.stream import WorkspaceEdits, export_messages
from bots.startup import Retries
from bots.tasks import Background
from core.coach import Coach
from core.config import Settings
from core.models import Identity, InFlight, Platform
from core.reply import Prepare
from core.texts import INTERNAL_ERROR_TEXT, counted

log = logging.getLogger(__name__)


class _BoltReadsTheEnvironment(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself, then warns that the client
    we give it wins over that token. It does, by design: `authorize` hands each request its
    token. The warning asks the operator to change nothing, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.AsyncApp").addFilter(_BoltReadsTheEnvironment())

RESPOND_ATTEMPTS = 2  # a response_url answer refused with a 5xx or 429 is sent once more
RESPOND_RETRY_SECONDS = 1.0


class SlackBot:
    """The Bolt app and its listeners. One per process: for one bot token, or for every
    workspace that added the app (OAuth)."""

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
        self.replies = SlackReplies(
            self.client, self.stream_client, settings, budgets or WorkspaceEdits()
        )
        self.retries = Retries.from_settings(settings)
        self.background = Background("Slack")
        self._signed_in: AuthorizeResult | None = None
        self._signing_in = asyncio.Lock()
        self._timezones_checked: set[str] = set()
        secret = settings.slack_signing_secret
        # Bolt gives each request its own copy of this client, with the token that
        # `authorize` returns: a token here would only make Bolt warn that it ignores it.
        template = AsyncWebClient(base_url=self.client.base_url, timeout=self.client.timeout)
        self.tokens: WorkspaceTokens | None = None  # each workspace's token, with OAuth
        if settings.slack_oauth:
            oauth = oauth_settings(settings, coach.installs, template)
            self.app = AsyncApp(
                client=template,
                oauth_settings=oauth,
                signing_secret=secret.get_secret_value() if secret else "",
                process_before_response=True,
            )
            installations = oauth.installation_store
            assert isinstance(installations, SlackInstallations)
            self.tokens = WorkspaceTokens(installations, settings, template)
            listen_for_uninstalls(self.app, installations)
        else:

            async def authorize() -> AuthorizeResult:  # Bolt passes a bound method `self`
                return await self._authorize()

            self.app = AsyncApp(
                client=template,
                authorize=authorize,
                signing_secret=secret.get_secret_value() if secret else "",
                process_before_response=True,
            )
            self.app.event("app_uninstalled")(self.on_uninstalled)
            self.app.event("tokens_revoked")(self.on_uninstalled)
        self._register()

    def _register(self) -> None:
        app = self.app
        app.middleware(self.attach_identity)
        app.error(self.on_error)
        app.event("message")(self.on_message)
        app.event("app_mention")(self.on_mention)
        app.event("app_home_opened")(self.on_home_opened)
        app.command(SLASH_COMMAND)(self.on_coach_command)
        app.action(ACTION_HISTORY_PAGE)(self.on_history_page)
        app.action(ACTION_CONFIRM)(self.on_confirm)
        app.action(ACTION_CANCEL)(self.on_cancel)
        app.action(ACTION_PROPOSAL_CONFIRM)(self.on_proposal)
        app.action(ACTION_PROPOSAL_DECLINE)(self.on_proposal)

    async def _authorize(self) -> AuthorizeResult:
        # Signed in before serving: no request awaits the network (or one another) here.
        if self._signed_in is not None:
            return self._signed_in
        signed_in = await self.sign_in()
        assert signed_in is not None  # the single-token mode's authorize only
        return signed_in

    async def sign_in(self) -> AuthorizeResult | None:
        """auth.test, once, before serving: a rejected SLACK_BOT_TOKEN stops the start (a
        SlackSetupError), and Bolt gets who the bot is from here (`authorize`), so that no
        request waits on auth.test. Bolt's own single-workspace mode called it lazily, on the
        first requests, and a burst of them then reached the listeners out of order.
        With OAuth there is no one token to prove: each request's is found by Bolt."""
        if self.tokens is not None:
            return None
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

    async def on_home_opened(
        self, event: dict[str, Any], identity: Identity, context: AsyncBoltContext
    ) -> None:
        if event.get("tab") == "home":
            work = self.publish_home(identity, context["prepare"], context["replies"].client)
            self.background.spawn(work, f"home:{identity.external_id}")

    async def on_coach_command(
        self, ack: Any, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        self._command_later(text_of(command).strip() or "help", respond, context)

    async def on_history_page(
        self, ack: Any, action: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        self._command_later(f"history {action.get('value', '1')}", respond, context, True)

    async def on_confirm(
        self, ack: Any, action: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        """The button on a `Confirm` carries its command: running it carries the action out."""
        await ack()
        self._command_later(str(action.get("value") or "help"), respond, context, True)

    async def on_proposal(
        self, ack: Any, action: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        """Confirm or decline on a proposal's card: decided once, whoever clicks when (the
        id is all a fresh process needs); the card then says what came of it."""
        await ack()
        confirm = action.get("action_id") == ACTION_PROPOSAL_CONFIRM
        work = self.answer_proposal(context["identity"], str(action.get("value")), confirm, respond)
        self.background.spawn(work, "proposal")

    async def answer_proposal(
        self, identity: Identity, proposal_id: str, confirm: bool, respond: AsyncRespond
    ) -> None:
        try:
            decision = await self.coach.decide(identity, proposal_id, confirm=confirm)
        except Exception:
            log.exception("proposal %s: the answer failed", proposal_id)
            message = SlackMessage(f"{WARNING} {INTERNAL_ERROR_TEXT}")
            await _respond(respond, message, replace=False, about="a proposal")
            return
        # Someone else's click is answered to them alone; the card stays for its owner.
        replace = not decision.by_someone_else
        await _respond(respond, decided_message(decision), replace=replace, about="a proposal")

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
            prepare=request.context["prepare"],
        )
        turn = Turn(identity, where, key, retried=is_retry(request), reply=reply)
        replies: SlackReplies = request.context["replies"]
        self.background.spawn(replies.answer(turn), f"reply:{turn.key}")

    async def adopt_timezone(
        self, identity: Identity, client: AsyncWebClient | None = None
    ) -> None:
        """Once per user and process: take Slack's timezone if the user has not set one.
        A courtesy: whatever fails here is logged, and the request goes on without it."""
        if identity.external_id in self._timezones_checked:
            return
        self._timezones_checked.add(identity.external_id)
        try:
            info = await (client or self.client).users_info(user=identity.external_id)
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

    def _command_later(
        self, line: str, respond: AsyncRespond, context: AsyncBoltContext, replace: bool = False
    ) -> None:
        work = self.answer_command(
            context["identity"], line, respond, context["prepare"], replace,
            client=context["replies"].client,
        )  # fmt: skip
        self.background.spawn(work, f"/coach {line[:40]}")

    async def answer_command(
        self,
        identity: Identity,
        line: str,
        respond: AsyncRespond,
        prepare: Prepare,
        replace: bool = False,
        *,
        client: AsyncWebClient | None = None,
    ) -> None:
        """Run one line of the shared grammar and answer it ephemerally."""
        await prepare()
        try:
            result = await run_command(self.coach, identity, line)
            if line.lower().split()[:1] == ["forget"]:
                self._timezones_checked.discard(identity.external_id)
            if isinstance(result, Export):
                sent = await self.send_export(identity, result, client)
                message = SlackMessage(
                    f"Your data export is in our DM ({counted(sent, 'message')})."
                )
            else:
                message = result_message(result, when_for_result(result))
        except Exception:
            log.exception("/coach %s failed for %s", line[:40], identity.external_id)
            message = SlackMessage(f"{WARNING} {INTERNAL_ERROR_TEXT}")
        command = "".join(line.split()[:1])  # a button's value may be blank
        await _respond(respond, message, replace=replace, about=f"/coach {command}")

    async def send_export(
        self, identity: Identity, export: Export, client: AsyncWebClient | None = None
    ) -> int:
        """All their data as JSON, in our DM: too big for an ephemeral response."""
        client = client or self.client
        opened = await client.conversations_open(users=identity.external_id)
        channel = opened["channel"]["id"]
        parts = export_messages(escape(export.json))
        for part in parts:
            await client.chat_postMessage(channel=channel, text=part)
        return len(parts)

    async def publish_home(
        self, identity: Identity, prepare: Prepare, client: AsyncWebClient | None = None
    ) -> None:
        await prepare()
        you = await self.coach.session(identity)
        meetings = await you.meetings()
        facts = HomeFacts(
            phase=you.user.phase,
            standing=await you.access(),
            goals=await goals_view(you),
            next_meeting=meetings[0] if meetings else None,
        )
        view = home_view(facts, you.time)
        await (client or self.client).views_publish(user_id=identity.external_id, view=view)

    async def wait_idle(self) -> None:
        """Until every reply, command answer and Home update started so far is done."""
        await self.background.wait()

    async def repair(self, record: InFlight) -> str | None:
        if self.tokens is None:
            return await self.replies.repair(record)
        token = await self.tokens.bot_token(record.place.get("team"))
        if token is None:  # uninstalled since: nowhere to finish it
            log.info("reply %s not repaired: its workspace has no installation", record.id)
            return None
        return await self.replies.for_token(token).repair(record)

    # --- Middleware and the one error handler ---------------------------------------------

    async def attach_identity(
        self, context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
    ) -> None:
        """Every listener speaks to the coach as this Identity, built once, here; and gets
        `prepare`, the adoption of the user's Slack timezone, for the work it starts to run
        first (inside a reply, after its place in line is taken: never before the ack);
        and `replies`, which speak to Slack with this request's token (its workspace's)."""
        replies = self.replies.for_token(context.bot_token)
        context["replies"] = replies
        if context.user_id:
            identity = Identity(
                platform=Platform.SLACK,
                external_id=context.user_id,
                workspace_id=context.team_id or context.enterprise_id,
            )
            context["identity"] = identity
            context["prepare"] = lambda: self.adopt_timezone(identity, replies.client)
        await next()

    async def on_uninstalled(self, body: dict[str, Any]) -> None:
        """With one pasted token there is nothing to delete: the token is dead, say so."""
        log.warning("Slack: the app was uninstalled (or its token revoked) in %s: "
                    "SLACK_BOT_TOKEN no longer works", body.get("team_id"))  # fmt: skip

    async def on_error(self, error: Exception, body: dict[str, Any]) -> None:
        """A listener failed before it handed its work over: logged with what Slack sent.
        (The work itself ends in a note to the user: a reply's or a command's.)"""
        kind = body.get("event", {}).get("type") or body.get("type") or body.get("command")
        log.error("Slack listener for %s failed", kind, exc_info=error)


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
