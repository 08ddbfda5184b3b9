"""Reaching Slack: the Web client, the start-up checks of both tokens, and the scheduler's
Notifier.

The notifier needs only the bot token (no Socket Mode, no public URL), so a separate
`momentum scheduler` process can tell users that a meeting window opened or closed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.errors import CountRateLimits
from bots.slack.render import our_text
from bots.startup import NETWORK_ERRORS, Retries, SetupError, reach
from core.config import Settings
from core.installs import Installs
from core.models import Platform, User

log = logging.getLogger(__name__)

T = TypeVar("T")

# One-off posts may wait out a 429 once; streaming writes never do (bots/stream.py paces them).
ONE_OFF_RATE_LIMIT_RETRIES = 2
BOT_TOKEN_HELP = "copy the Bot User OAuth Token (xoxb-…) from the app's Install App page"
APP_TOKEN_HELP = (
    "generate an app-level token with the connections:write scope under Basic Information "
    "→ App-Level Tokens"
)


class SlackSetupError(SetupError):
    """Slack settings that cannot work; the message says what to set."""


class NotInstalled(Exception):
    """A user's workspace has no installation of the app (uninstalled since): no token."""


class BotTokens(Protocol):
    async def bot_token(self, team_id: str | None) -> str | None:
        """The bot token of a workspace that installed the app, or None."""


def slack_refusal(error: SlackApiError) -> str:
    """Slack's error code (`invalid_auth`), or the status when the body was not Slack's JSON."""
    data = error.response.data
    code = data.get("error") if isinstance(data, dict) else None
    return str(code or f"HTTP {error.response.status_code}")


def is_passing(error: Exception) -> bool:
    """No network, or Slack itself failing (5xx, 429): worth another try at start."""
    if isinstance(error, SlackApiError):
        status = int(error.response.status_code)
        return status >= 500 or status == 429
    return isinstance(error, NETWORK_ERRORS)


def _without_retries(client: AsyncWebClient) -> AsyncWebClient:
    """The same client without slack_sdk's own retries: start-up counts its tries itself
    (STARTUP_RETRIES), with a log line each, and hidden retries would only add waiting."""
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        session=client.session,
        retry_handlers=[],
    )


async def _proving(
    setting: str, help: str, call: Callable[[], Awaitable[T]], base_url: str, retries: Retries
) -> T:
    """A start-up call that proves `setting`: network trouble is tried again, a refusal is a
    SlackSetupError naming the setting and how to get a good one."""
    try:
        return await reach(
            call,
            what="Slack",
            hint=f"check SLACK_API_URL (now {base_url}) and the network",
            retries=retries,
            passing=is_passing,
        )
    except SlackApiError as error:
        refusal = slack_refusal(error)
        raise SlackSetupError(f"Slack rejected {setting} ({refusal}): {help}.") from error


async def check_bot_token(client: AsyncWebClient, retries: Retries) -> AsyncSlackResponse:
    """auth.test: proves SLACK_BOT_TOKEN before anything is served, and says who the bot is."""
    auth_test = _without_retries(client).auth_test
    return await _proving("SLACK_BOT_TOKEN", BOT_TOKEN_HELP, auth_test, client.base_url, retries)


async def open_socket_url(client: AsyncWebClient, app_token: str, retries: Retries) -> str:
    """apps.connections.open: proves SLACK_APP_TOKEN, and gives the Socket Mode URL to use."""
    plain = _without_retries(client)

    async def connections_open() -> str:
        return str((await plain.apps_connections_open(app_token=app_token))["url"])

    return await _proving(
        "SLACK_APP_TOKEN", APP_TOKEN_HELP, connections_open, client.base_url, retries
    )


def web_client(settings: Settings, *, retry_rate_limits: bool = False) -> AsyncWebClient:
    """An AsyncWebClient for the bot token, pointed at SLACK_API_URL when set (fakes, GovSlack).
    With OAuth it has no token of its own: `with_token` gives it a workspace's."""
    if settings.slack_oauth:
        token = None
    elif settings.slack_bot_token is None:
        raise ValueError("SLACK_BOT_TOKEN is not set")
    else:
        token = settings.slack_bot_token.get_secret_value()
    base_url = (settings.slack_api_url or AsyncWebClient.BASE_URL).rstrip("/") + "/"
    client = AsyncWebClient(token=token, base_url=base_url)
    client.retry_handlers.insert(0, CountRateLimits())
    if retry_rate_limits:
        client.retry_handlers.append(
            AsyncRateLimitErrorRetryHandler(max_retry_count=ONE_OFF_RATE_LIMIT_RETRIES)
        )
    return client


def with_token(client: AsyncWebClient, token: str) -> AsyncWebClient:
    """The same client (URL, timeout, connection pool, retries) with a workspace's token."""
    return AsyncWebClient(
        token=token,
        base_url=client.base_url,
        timeout=client.timeout,
        session=client.session,
        retry_handlers=list(client.retry_handlers),
    )


class SlackNotifier:
    """Sends a DM: conversations.open, then chat.postMessage. Errors propagate to the caller,
    which knows whether to retry (a window message) or give up.

    chat.postMessage takes no idempotency key, so `key` is not used: a retry after Slack took
    a message but answered an error can show it twice (the scheduler's outbox says so).
    """

    def __init__(
        self,
        client: AsyncWebClient,
        retries: Retries | None = None,
        tokens: BotTokens | None = None,
    ) -> None:
        self.client = client
        self.retries = retries or Retries()
        self.tokens = tokens  # with OAuth: each user's workspace's token

    async def verify(self) -> None:
        """At start (`momentum scheduler`): a rejected token is a SlackSetupError. With
        OAuth there is none to check: each workspace's is found when a user is notified."""
        if self.tokens is not None:
            log.info("Slack notifier: each workspace's token from its installation")
            return
        identity = await check_bot_token(self.client, self.retries)
        log.info("Slack notifier: signed in as %s in %s", identity["user"], identity["team"])

    async def notify(self, user: User, text: str, *, key: str | None = None) -> None:
        if user.identity.platform is not Platform.SLACK:
            raise ValueError(f"not a Slack user: {user.identity.platform}")
        client = self.client
        if self.tokens is not None:
            workspace = user.identity.workspace_id
            token = await self.tokens.bot_token(workspace)
            if token is None:
                raise NotInstalled(f"the app is not installed in Slack workspace {workspace}")
            client = with_token(client, token)
        opened = await client.conversations_open(users=user.identity.external_id)
        channel = opened["channel"]["id"]
        await client.chat_postMessage(channel=channel, text=our_text(text))
        log.info("notified Slack user %s", user.identity.external_id)


def slack_notifier(settings: Settings, installs: Installs | None = None) -> SlackNotifier | None:
    """The notifier for these settings, or None when Slack is not configured. With OAuth it
    needs `installs` (the Coach's) for each workspace's token; without them, None."""
    if not settings.slack_configured:
        return None
    client = web_client(settings, retry_rate_limits=True)
    tokens = None
    if settings.slack_oauth:
        if installs is None:
            return None
        from bots.slack.oauth import SlackInstallations, WorkspaceTokens

        tokens = WorkspaceTokens(SlackInstallations(installs), settings, client)
    return SlackNotifier(client, Retries.from_settings(settings), tokens)
