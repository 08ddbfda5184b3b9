"""One coach reply streamed into a Slack thread: natively first, by editing a message if not.

Native streaming (chat.startStream / appendStream / stopStream via slack_sdk's ChatStream) is
append-only and paced by the workspace's appendStream budget (~100/min). It hands over to edit
streaming (bots/stream.py `render`: post, then throttled chat.update under the workspace's
chat.update budget, ~50/min shared by every conversation) when Slack refuses to start a stream,
or closes one mid-reply (`message_not_in_streaming_state` after ~5 minutes, or the user's
stop button): the closed stream's own message is then finished with chat.update.

A post that Slack answers with a 5xx may still have been made (a proxy's 500 or 503 after the
write), and chat.postMessage has no idempotency key: posting again would show that part of the
reply twice. So every post carries a marker of its own in the message's metadata
(`REPLY_POST_EVENT`, a random id, nothing of the conversation: metadata is readable by any
app in the workspace), and before a part whose post met a 5xx is posted again, the thread is
searched for it (conversations.replies with `include_all_metadata`, newer than the user's
message or the reply's previous part). Found, it becomes that part and is edited to the newest
text. A 429 was not taken, so it is simply posted again (a 429 on the search is waited out,
a few times). A failed search (e.g. `missing_scope` in a channel, where the manifest
asks for no history scope) is logged and the part posted again: a duplicate is better than a
lost reply. In DMs, `im:history` allows the search.

Native streaming has no such guard: chat.startStream takes no `metadata` (only
chat.stopStream does) and a 5xx on it leaves us without the stream's ts, so a stream Slack
started before answering 5xx cannot be told from another reply in the same thread (matching
its author and first words could take over another user's reply in a channel thread). If
Slack did start it, the user sees that stream's first words (left streaming until Slack
closes it after ~5 minutes) above the whole reply, which edits then post. A 5xx on
appendStream or stopStream is safe: the stream's ts is known, and edits take over that very
message.

Everything written here is already Slack-safe: the caller escapes the deltas.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.errors import refusal
from bots.slack.render import reply_blocks
from bots.stream import (
    CUT_WRITE_SECONDS,
    Buckets,
    EditBucket,
    Failure,
    RateLimited,
    closed_fences,
    render,
    split_message,
)

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 12_000  # a `markdown` block's characters per message; also one native append
EXPORT_PART_CHARS = 12_000
UPDATES_PER_MINUTE = 50  # chat.update, Tier 3, per workspace
APPENDS_PER_MINUTE = 100  # chat.appendStream, per workspace
MAX_STOP_ATTEMPTS = 5  # a final write refused this often (429) is given up, and logged
DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 or a 5xx comes without Retry-After
REPLY_POST_EVENT = "momentum_reply_post"  # metadata event_type: {"post": <this post's marker>}
MAX_LOOKUP_CALLS = 5  # conversations.replies calls (pages, 429s) in one search for a post
# Slack's answers for a stream it has closed; the message stays and takes chat.update.
STREAM_CLOSED = frozenset(
    {"message_not_in_streaming_state", "stopped_by_user", "streaming_state_conflict"}
)

Delta = str | Failure
# Told where the reply now shows (`kind` "stream" or "message", and its `ts`), so that a
# process starting after a crash can finish it: `Reply.shown_at`.
Shown = Callable[..., Awaitable[None]]


async def _untracked(**place: str) -> None:
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


class WorkspaceEdits:
    """The per-workspace write budgets, shared by every reply in that workspace."""

    def __init__(
        self,
        updates: tuple[int, float] = (UPDATES_PER_MINUTE, 60.0),
        appends: tuple[int, float] = (APPENDS_PER_MINUTE, 60.0),
    ) -> None:
        self._updates = Buckets(*updates)
        self._appends = Buckets(*appends)

    def updates(self, team_id: str) -> EditBucket:
        return self._updates.get(team_id)

    def appends(self, team_id: str) -> EditBucket:
        return self._appends.get(team_id)


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
        shown: Shown = _untracked,
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


@dataclass(frozen=True)
class Handoff:
    """Native streaming gave up: what it had written, and where edits should continue."""

    text: str  # every character handed to the stream so far (shown or buffered)
    ts: str | None  # the stream's message, if Slack created one
    failure: Failure | None = None


class NativeReply:
    """One native stream. `run` returns None when the reply is complete, or a Handoff."""

    def __init__(
        self,
        client: AsyncWebClient,
        where: Destination,
        appends: EditBucket,
        shown: Shown = _untracked,
    ) -> None:
        self.client, self.where, self.appends, self.shown = client, where, appends, shown
        self.text = ""  # handed to the SDK (sent, or in its buffer after a refused flush)
        self.pending = ""  # read from the model, not yet handed over
        self._stream: AsyncChatStream | None = None

    async def run(
        self, deltas: AsyncIterator[Delta], cut_note: str | None = None
    ) -> Handoff | None:
        """Stream the deltas; cancelled (a shutdown), stop the stream with `cut_note`."""
        failure: Failure | None = None
        try:
            async for delta in deltas:
                if isinstance(delta, Failure):
                    failure = delta
                    break
                self.pending += delta
                # The first text goes out at once; later text waits for a free append slot and
                # meanwhile keeps accumulating, so each append carries everything new.
                if self._stream is None or self.appends.try_acquire():
                    handoff = await self._append()
                    if handoff is not None:
                        return handoff
        except asyncio.CancelledError:
            if cut_note is not None:
                await self._cut(cut_note)
            raise
        return await self._stop(failure)

    async def _cut(self, note: str) -> None:
        try:
            # wait_for, not asyncio.timeout: before 3.12, a timeout inside a task being
            # cancelled ends in CancelledError instead of TimeoutError.
            await asyncio.wait_for(self._stop(Failure(note)), CUT_WRITE_SECONDS)
        except Exception as error:  # refused, or too slow: Slack closes it within minutes
            log.warning("could not stop a cut-off stream in %s: %r", self.where.channel, error)

    async def _append(self) -> Handoff | None:
        piece, self.pending = self.pending[:MESSAGE_LIMIT], self.pending[MESSAGE_LIMIT:]
        try:
            if self._stream is None:
                self._stream = await self._open()
            self.text += piece
            known = self._stream.ts
            await self._stream.append(markdown_text=piece)
        except SlackApiError as error:
            return self._refused(error)
        if known is None and self._stream.ts is not None:  # chat.startStream made it
            await self.shown(kind="stream", ts=self._stream.ts)
        return None

    async def _stop(self, failure: Failure | None) -> Handoff | None:
        if self._stream is None and not self.pending and failure is None:
            return None  # nothing to say (a duplicate delivery)
        tail = self.pending
        whole = self.text + tail
        tail += closed_fences(whole)[len(whole) :]
        if failure is not None:
            tail += f"\n\n{failure.note}" if (whole + tail).strip() else failure.note
        if self._stream is None:
            self._stream = await self._open()
        # chat.stopStream is not an append: it does not queue for the workspace's append
        # budget (at 500 concurrent replies that queue alone took minutes). A 429 on it is
        # waited out by this reply alone.
        for _ in range(MAX_STOP_ATTEMPTS):
            try:
                # A refused stop keeps its text in the SDK's buffer: hand it over once only.
                await self._stream.stop(markdown_text=tail)
                return None
            except SlackApiError as error:
                tail = ""
                wait = retry_after(error)
                if wait is None:
                    self._log_handover(error)
                    return Handoff(whole, self._stream.ts, failure)
                await asyncio.sleep(wait)
        log.error("stream in %s: stop refused %d times", self.where.channel, MAX_STOP_ATTEMPTS)
        return Handoff(whole, self._stream.ts, failure)

    async def _open(self) -> AsyncChatStream:
        return await self.client.chat_stream(
            channel=self.where.channel,
            thread_ts=self.where.thread_ts,
            recipient_user_id=self.where.user_id,
            recipient_team_id=self.where.team_id,
            buffer_size=1,  # we coalesce and pace ourselves: every handover is one call
        )

    def _refused(self, error: SlackApiError) -> Handoff | None:
        """A 429 waits (the text stays buffered); anything else hands over to edits."""
        wait = retry_after(error)
        if wait is not None:
            self.appends.penalize(wait)
            return None
        self._log_handover(error)
        return Handoff(self.text + self.pending, self._stream.ts if self._stream else None)

    def _log_handover(self, error: SlackApiError) -> None:
        refused = refusal(error)
        if refused.code in STREAM_CLOSED:
            ts = self._stream.ts if self._stream is not None else None
            log.info("Slack closed the stream %s (%s): finishing with chat.update", ts, refused)
        else:
            log.warning(
                "native streaming failed in %s (%s): using edits", self.where.channel, refused
            )


async def _prepend(
    first: str, rest: AsyncIterator[Delta], last: Failure | None
) -> AsyncIterator[Delta]:
    if first:
        yield first
    async for delta in rest:
        yield delta
    if last is not None:
        yield last


async def stream_reply(
    deltas: AsyncIterable[Delta],
    client: AsyncWebClient,
    where: Destination,
    budgets: WorkspaceEdits,
    *,
    native: bool,
    shown: Shown = _untracked,
    cut_note: str | None = None,
) -> None:
    """Write the reply: native when asked and possible, then (or else) edit streaming.
    Cancelled (a shutdown), it ends with `cut_note` after what was shown."""
    rest = aiter(deltas)
    handoff = Handoff("", None)
    if native:
        native_reply = NativeReply(client, where, budgets.appends(where.team_id), shown)
        outcome = await native_reply.run(rest, cut_note)
        if outcome is None:
            return
        handoff = outcome
    surface = EditSurface(client, where, adopt=handoff.ts, shown=shown)
    await render(
        _prepend(handoff.text, rest, handoff.failure),
        surface,
        budgets.updates(where.team_id),
        cut_note=cut_note,
    )


def export_messages(escaped_json: str) -> list[str]:
    """An export as code-block messages, each within Slack's limits, fences kept whole."""
    return split_message(f"```json\n{escaped_json}\n```", EXPORT_PART_CHARS)
