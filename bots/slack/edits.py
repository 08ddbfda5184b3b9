"""A reply streamed by editing messages in a Slack thread: the Surface for bots/stream.py
`render` (chat.postMessage, then throttled chat.update), and where a reply goes.

Native streaming (chat.startStream / appendStream / stopStream via slack_sdk's ChatStream) is
append-only and paced by the workspace's appendStream budget (~100/min). It hands over to edit
streaming (bots/stream.py `render`: post, then throttled chat.update under the workspace's
chat.update budget, ~50/min shared by every conversation) when Slack refuses to start a stream,
or closes one mid-reply (`message_not_in_streaming_state` after ~5 minutes, or the user's
stop button): the closed stream's own message is then finished with chat.update.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.errors import refusal
from bots.slack.render import reply_blocks
from bots.stream import RateLimited

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 12_000  # a `markdown` block's characters per message; also one native append

DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 or a 5xx comes without Retry-After

REPLY_POST_EVENT = "momentum_reply_post"  # metadata event_type: {"post": <this post's marker>}

MAX_LOOKUP_CALLS = 5  # conversations.replies calls (pages, 429s) in one search for a post

# Told where the reply now shows (`kind` "stream" or "message", and its `ts`), so that a
# process starting after a crash can finish it: `Reply.shown_at`.
Shown = Callable[..., Awaitable[None]]


async def untracked(**place: str) -> None:
    return None


@dataclass(frozen=True)


class Destination:
    """The thread a reply goes to, and who it is for (native streams need the recipient).
    Every reply goes into a thread: `thread_ts` is the user's message or its thread."""

    channel: str
    thread_ts: str
    user_id: str
    team_id: str
    message_ts: str = ""  # the user's message: every message of its reply is newer

    def place(self) -> dict[str, str]:
        """What a process needs to find the reply after a crash (core/in_flight.py)."""
        return {
            "channel": self.channel,
            "thread_ts": self.thread_ts,
            "team": self.team_id,
            "user": self.user_id,
        }


def retry_after(error: SlackApiError) -> float | None:
    """Seconds to wait when `error` is a 429 (whatever its body), else None."""
    refused = refusal(error)
    if not refused.rate_limited:
        return None
    try:
        return float(refused.headers.get("Retry-After", DEFAULT_RETRY_AFTER))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


class EditSurface:
    """bots/stream.py's Surface for Slack: chat.postMessage, then chat.update, in the thread.

    `adopt` is the ts of a native stream Slack closed: the reply's first message is that one,
    finished with chat.update instead of a new post. A part whose post met a 5xx may adopt
    the message that post made after all (see the module docstring).
    """

    limit = MESSAGE_LIMIT

    def __init__(
        self,
        client: AsyncWebClient,
        where: Destination,
        adopt: str | None,
        shown: Shown = untracked,
    ) -> None:
        self.client, self.where, self._adopt, self.shown = client, where, adopt, shown
        self._unsure: list[str] = []  # markers of this part's posts answered with a 5xx
        self._last_ts: str | None = None  # the reply's latest message

    async def post(self, text: str) -> str:
        if self._adopt is None and self._unsure:
            self._adopt = await self._taken()
        if self._adopt is not None:
            await self.edit(self._adopt, text)  # a 429 here keeps it adopted for the retry
            return await self._posted(self._adopt)
        marker = uuid.uuid4().hex
        try:
            response = await _paced(
                self.client.chat_postMessage(
                    channel=self.where.channel,
                    thread_ts=self.where.thread_ts,
                    text=text,
                    blocks=reply_blocks(text),
                    metadata={"event_type": REPLY_POST_EVENT, "event_payload": {"post": marker}},
                )
            )
        except RateLimited as refused:
            if _maybe_taken(refused):
                self._unsure.append(marker)
            raise
        return await self._posted(str(response["ts"]))

    async def _posted(self, ts: str) -> str:
        self._adopt, self._unsure, self._last_ts = None, [], ts
        await self.shown(kind="message", ts=ts)
        return ts

    async def _taken(self) -> str | None:
        """The message one of this part's posts made although Slack answered it with a 5xx,
        or None (not found, or the search failed: the caller posts again)."""
        where = self.where
        try:
            found = await self._find(set(self._unsure))
        except Exception as error:
            log.warning(
                "could not check whether Slack took a post it answered with a 5xx in %s "
                "(%s): posting again, which may show that part of the reply twice",
                where.channel,
                refusal(error) if isinstance(error, SlackApiError) else repr(error),
            )
            return None
        if not found:
            log.info("a post answered with a 5xx in %s was not taken: posting again", where.channel)
            return None
        first, *extra = found
        log.info(
            "Slack took a post it answered with a 5xx (%s in %s): going on in it",
            first,
            where.channel,
        )
        for ts in extra:  # several tries were taken: one message of the part stays
            try:
                await self.client.chat_delete(channel=where.channel, ts=ts)
            except Exception as error:
                log.warning("a second copy %s in %s stays: %r", ts, where.channel, error)
        self._unsure = []
        return first

    async def _find(self, markers: set[str]) -> list[str]:
        """The ts of the thread's messages that carry one of `markers`, oldest first. A 429
        is waited out here, a few times: not in the shared write budget, which it is not."""
        where, cursor = self.where, None
        found: list[str] = []
        oldest = self._last_ts or where.message_ts or where.thread_ts
        for call in range(MAX_LOOKUP_CALLS):
            try:
                page = await self.client.conversations_replies(
                    channel=where.channel,
                    ts=where.thread_ts,
                    oldest=oldest,
                    include_all_metadata=True,
                    cursor=cursor,
                )
            except SlackApiError as error:
                wait = retry_after(error)
                if wait is None or call == MAX_LOOKUP_CALLS - 1:
                    raise
                await asyncio.sleep(wait)
                continue
            messages = page.get("messages") or []
            found += [str(m["ts"]) for m in messages if _post_marker(m) in markers]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return sorted(found, key=float)

    async def edit(self, handle: str, text: str) -> None:
        await _paced(
            self.client.chat_update(
                channel=self.where.channel, ts=handle, text=text, blocks=reply_blocks(text)
            )
        )


def _post_marker(message: dict[str, Any]) -> str | None:
    """The marker `EditSurface.post` put in a message's metadata, if it did."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != REPLY_POST_EVENT:
        return None
    marker = (metadata.get("event_payload") or {}).get("post")
    return marker if isinstance(marker, str) else None


def _maybe_taken(refused: RateLimited) -> bool:
    """A write refused with a 5xx may have been carried out all the same; a 429 was not."""
    error = refused.__cause__
    return isinstance(error, SlackApiError) and refusal(error).server_error


async def _paced(call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Await a Web API call; a 429 or a 5xx becomes RateLimited, which the renderer waits out
    and retries with the newest text. (A 5xx used to end the reply at once, and when the
    error note's own post met the same outage, the user saw nothing at all.)"""
    try:
        return await call
    except SlackApiError as error:
        wait = retry_after(error)
        if wait is None and refusal(error).server_error:  # a proxy's page as well as JSON
            wait = DEFAULT_RETRY_AFTER
        if wait is None:
            raise
        raise RateLimited(wait) from error
