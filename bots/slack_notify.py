"""Reaching a Slack user outside a conversation: the scheduler's Notifier, and the Web client.

The notifier needs only the bot token (no Socket Mode, no public URL), so a separate
`momentum scheduler` process can tell users that a meeting window opened or closed.
"""

from __future__ import annotations

import logging

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack_render import our_text
from core.config import Settings
from core.models import Platform, User

log = logging.getLogger(__name__)

# One-off posts may wait out a 429 once; streaming writes never do (bots/stream.py paces them).
ONE_OFF_RATE_LIMIT_RETRIES = 2


def web_client(settings: Settings, *, retry_rate_limits: bool = False) -> AsyncWebClient:
    """An AsyncWebClient for the bot token, pointed at SLACK_API_URL when set (fakes, GovSlack)."""
    if settings.slack_bot_token is None:
        raise ValueError("SLACK_BOT_TOKEN is not set")
    base_url = (settings.slack_api_url or AsyncWebClient.BASE_URL).rstrip("/") + "/"
    client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=base_url)
    if retry_rate_limits:
        client.retry_handlers.append(
            AsyncRateLimitErrorRetryHandler(max_retry_count=ONE_OFF_RATE_LIMIT_RETRIES)
        )
    return client


class SlackNotifier:
    """Sends a DM: conversations.open, then chat.postMessage. Errors propagate to the caller,
    which knows whether to retry (a window message) or give up.

    chat.postMessage takes no idempotency key, so `key` is not used: a retry after Slack took
    a message but answered an error can show it twice (the scheduler's outbox says so).
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def notify(self, user: User, text: str, *, key: str | None = None) -> None:
        if user.identity.platform is not Platform.SLACK:
            raise ValueError(f"not a Slack user: {user.identity.platform}")
        opened = await self.client.conversations_open(users=user.identity.external_id)
        channel = opened["channel"]["id"]
        await self.client.chat_postMessage(channel=channel, text=our_text(text))
        log.info("notified Slack user %s", user.identity.external_id)


def slack_notifier(settings: Settings) -> SlackNotifier | None:
    """The notifier for these settings, or None when Slack is not configured."""
    if not settings.slack_configured:
        return None
    return SlackNotifier(web_client(settings, retry_rate_limits=True))
