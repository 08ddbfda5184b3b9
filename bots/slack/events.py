"""What Slack's events say, read safely: pure, no Slack call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest

from bots.slack.render import from_slack

# Message subtypes in which a person is speaking; every other subtype (edits, deletions,
# joins, bot messages…) is not a message for the coach.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


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
