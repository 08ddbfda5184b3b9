"""One coach reply streamed into a Slack thread: natively first, by editing a message if not.

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
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.edits import (
    MESSAGE_LIMIT,
    Destination,
    EditSurface,
    Shown,
    retry_after,
    untracked,
)
from bots.slack.errors import refusal
from bots.split import closed_fences, split_message
from bots.stream import CUT_WRITE_SECONDS, Failure, render
from bots.throttle import Buckets, EditBucket
from core.metrics import LAG

log = logging.getLogger(__name__)

EXPORT_PART_CHARS = 12_000
UPDATES_PER_MINUTE = 50  # chat.update, Tier 3, per workspace
APPENDS_PER_MINUTE = 100  # chat.appendStream, per workspace
MAX_STOP_ATTEMPTS = 5  # a final write refused this often (429) is given up, and logged
# Slack's answers for a stream it has closed; the message stays and takes chat.update.
STREAM_CLOSED = frozenset(
    {"message_not_in_streaming_state", "stopped_by_user", "streaming_state_conflict"}
)

Delta = str | Failure








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
        shown: Shown = untracked,
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
    shown: Shown = untracked,
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
        on_lag=LAG.labels("slack").observe,
    )


def export_messages(escaped_json: str) -> list[str]:
    """An export as code-block messages, each within Slack's limits, fences kept whole."""
    return split_message(f"```json\n{escaped_json}\n```", EXPORT_PART_CHARS)
