"""One message's reply in its Slack thread: the "thinking…" status, the welcome, the streamed
answer (bots/slack/stream.py), the note when Slack refused it, and the repair of a reply a
crash cut off (bots/slack/repair.py)."""

from __future__ import annotations

import logging
from contextlib import aclosing, suppress
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.edits import Destination
from bots.slack.errors import refusal
from bots.slack.notify import with_token
from bots.slack.render import (
    WARNING,
    coach_markdown,
    failure_note,
    our_text,
    proposal_message,
    reply_blocks,
)
from bots.slack.repair import finish_cut_reply
from bots.slack.stream import WorkspaceEdits, stream_reply
from bots.voice import When, spoken
from core.config import Settings
from core.models import Identity, InFlight, Proposal
from core.reply import Reply
from core.texts import CUT_OFF_TEXT, INTERNAL_ERROR_TEXT
from core.zones import UserTime

log = logging.getLogger(__name__)

STATUS_THINKING = "is thinking…"  # Slack shows "<app name> is thinking…"


@dataclass(frozen=True)
class Turn:
    """One user message to answer, the thread the answer goes to, and the coach's reply,
    made when the event arrived (its place in the user's line is taken then)."""

    identity: Identity
    where: Destination
    key: str  # dedupe key: the message itself
    retried: bool  # a redelivery: its first delivery may already be answered
    reply: Reply


class SlackReplies:
    def __init__(
        self,
        client: AsyncWebClient,
        stream_client: AsyncWebClient,
        settings: Settings,
        budgets: WorkspaceEdits,
    ) -> None:
        # One-off calls may wait out a 429; streaming writes are paced by bots/stream.py.
        self.client, self.stream_client = client, stream_client
        self.settings, self.budgets = settings, budgets

    def for_token(self, token: str | None) -> SlackReplies:
        """These replies, speaking with another workspace's token (OAuth); the same ones for
        the token they have. The clients share the connection pool and the edit budgets."""
        if not token or token == self.client.token:
            return self
        return SlackReplies(
            with_token(self.client, token),
            with_token(self.stream_client, token),
            self.settings,
            self.budgets,
        )

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

    async def post_proposal(self, where: Destination, proposal: Proposal) -> None:
        """A proposal's card in the reply's thread. If Slack refuses it, the proposal is
        never seen and simply expires: the reply says it in words as well."""
        card = proposal_message(proposal)
        try:
            await self.client.chat_postMessage(
                channel=where.channel, thread_ts=where.thread_ts, text=card.text, blocks=card.blocks
            )
        except SlackApiError as error:
            log.warning("proposal %s not posted in %s: %s", proposal.id, where.channel,
                        refusal(error))  # fmt: skip

    async def repair(self, record: InFlight) -> str | None:
        """Finish a reply a crash cut off (bots/slack/repair.py)."""
        return await finish_cut_reply(
            self.stream_client, record.place, failure_note(CUT_OFF_TEXT)
        )


class SlackVoice:
    """bots/voice.py's Voice for one Slack reply: Markdown made Slack-safe, `/coach …`
    commands, the welcome posted as a message of its own."""

    def __init__(self, replies: SlackReplies, turn: Turn, status_shown: bool) -> None:
        self.replies, self.turn, self.status_shown = replies, turn, status_shown

    def coach(self, text: str) -> str:
        return coach_markdown(text)

    def ours(self, text: str) -> str:
        return our_text(text)

    def note(self, text: str) -> str:
        return failure_note(text)

    def when(self, time: UserTime) -> When:
        return time

    async def propose(self, proposal: Proposal) -> None:
        await self.replies.post_proposal(self.turn.where, proposal)

    async def welcome(self, text: str) -> str:
        if await self.replies.post_welcome(self.turn.where, our_text(text)):
            return ""
        return our_text(text) + "\n\n"  # it opens the reply instead

    async def duplicate(self) -> None:
        log.info("already answered %s", self.turn.key)
        if self.status_shown:
            await self.replies.set_status(self.turn.where, "")
