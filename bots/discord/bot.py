"""The Discord adapter: messages in, Coach replies streamed out as edits; `/coach` commands.

Who the coach answers (`text_for_coach`): in a coaching channel (DISCORD_CHANNEL_IDS, and the
threads inside them) every user's message; elsewhere in a guild only messages that mention
the bot (the mention is stripped); DMs when DISCORD_ALLOW_DMS is on. Never bots, never itself.
Each Discord user is their own Momentum user, so two people in one channel never share a
conversation; the coach answers each as a reply to their message.

Replies stream through bots/stream.py: typing at once, the first text as soon as the model
writes it, then coalesced edits paced by one bucket per channel that every conversation in
that channel shares (Discord limits message writes per channel), and a final edit. Past
2,000 characters a reply continues in a new message, with code blocks closed and reopened.
Everything is sent silent and with no mentions, except that the reply reference may ping
the person being answered. The message id is the event id, so a replayed event is answered
once. Each message of a reply is posted with one nonce, kept across retries and enforced by
Discord, so a post retried after a 5xx that Discord had in fact taken is not shown twice.

Sharded (DISCORD_SHARD_COUNT set) the bot is a `ShardedDiscordCoach`: the same bot on
discord.py's AutoShardedClient, running DISCORD_SHARD_IDS (or all shards), and its global
budget is its share of the bot's limit among the processes that share the token. Unset,
the plain single-connection client runs, as it always did.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from contextlib import aclosing
from typing import Any

import aiohttp
import discord

from bots.discord.commands import CoachCommands, CoachTree
from bots.discord.connect import (
    QUIET,
    discord_identity,
    intents_for,
)
from bots.discord.render import failure_note
from bots.discord.reply import ChannelReply, DiscordVoice, repair, tell_unfinished
from bots.repairs import keep_repairing
from bots.stream import RateLimited, render
from bots.tasks import Background
from bots.throttle import Buckets, Budgets, EditBucket
from bots.voice import spoken
from core.coach import Coach
from core.config import Settings
from core.metrics import LAG, RATE_LIMITED
from core.models import Identity, InFlight, Platform
from core.reply import Reply
from core.texts import CUT_OFF_TEXT, INTERNAL_ERROR_TEXT

log = logging.getLogger(__name__)

# Discord publishes no per-route numbers; about 5 message writes per 5 s per channel is the
# observed limit, so every reply in a channel shares that budget.
EDITS_PER_WINDOW = 5
EDIT_WINDOW_SECONDS = 5.0
# Of the bot's global requests/s, replies use this share: the rest is headroom for
# discord.py's own calls and for network jitter bunching paced requests together.
GLOBAL_SHARE = 0.8
GLOBAL_BURST = 3  # Discord counts requests per second, not a pace: a few may go at once
CONVERSATION_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})


def in_coaching_channel(channel_id: int, parent_id: int | None, coaching: frozenset[int]) -> bool:
    """A coaching channel, or a thread inside one."""
    return channel_id in coaching or (parent_id is not None and parent_id in coaching)


def strip_mention(content: str, user_id: int) -> str:
    return re.sub(rf"<@!?{user_id}>", " ", content).strip()








def global_budget(limit: int, processes: int = 1) -> EditBucket:
    """This process's share of Discord's `limit` requests/s for the bot, when `processes`
    share its token: limit / processes each, so that together they stay under it."""
    share = limit / processes
    pace = max(1, math.floor(share * GLOBAL_SHARE))
    # A burst spends headroom: pace + burst - 1 writes must fit in Discord's second.
    burst = max(1, min(GLOBAL_BURST, math.floor(share) - pace))
    return EditBucket(pace, 1.0, burst=burst)


def rate_limits_counted() -> aiohttp.TraceConfig:
    """Counts every 429 Discord answers (momentum_platform_rate_limited), also those that
    discord.py waits out itself and our code never sees."""

    async def ended(
        session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.response.status == 429:
            RATE_LIMITED.labels("discord").inc()

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(ended)
    return trace


class DiscordCoach(discord.Client):
    """The bot: a gateway client with the `/coach` command tree. Sync commands with
    `momentum discord-sync`, never here: on_ready fires on every reconnect."""

    def __init__(
        self,
        coach: Coach,
        settings: Settings,
        *,
        edit_rate: tuple[int, float] = (EDITS_PER_WINDOW, EDIT_WINDOW_SECONDS),
        **options: Any,
    ) -> None:
        options.setdefault("http_trace", rate_limits_counted())
        super().__init__(intents=intents_for(settings), allowed_mentions=QUIET, **options)
        self.coach = coach
        self.settings = settings
        self.coaching_channels = frozenset(settings.discord_channel_ids)
        self.buckets = Buckets(*edit_rate)  # by channel id: Discord's message-write bucket
        # Discord's global limit covers every channel and every process of the bot: one
        # budget per process, its share of the limit.
        self.global_budget = global_budget(
            settings.discord_global_rate_limit, settings.discord_processes
        )
        self.tree = CoachTree(self)
        self.commands = CoachCommands(coach, allow_dms=settings.discord_allow_dms)
        self.tree.add_command(self.commands)
        self._told_about_intent = False
        self.replying = Background("Discord")  # conversations being answered
        self._repairs: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Shut down: the replies in flight get SHUTDOWN_GRACE_SECONDS to finish, the rest end
        with a note, and only then does the connection close (the gateway task has stopped
        by now, so no new message starts meanwhile)."""
        if self._repairs is not None:
            self._repairs.cancel()
        await self.replying.stop(self.settings.shutdown_grace_seconds)
        await super().close()

    async def repair(self, record: InFlight) -> str | None:
        """Finish a reply a crash cut off (bots/discord/reply.py)."""
        return await repair(self, record)

    async def on_ready(self) -> None:
        if self._repairs is None:  # on_ready comes again after each reconnect: once
            self._repairs = asyncio.create_task(
                keep_repairing(self.coach, Platform.DISCORD, self.repair), name="discord-repairs"
            )
        log.info(
            "Discord: logged in as %s; coaching channels %s; DMs %s%s",
            self.user,
            sorted(self.coaching_channels) or "none",
            "on" if self.settings.discord_allow_dms else "off",
            self._shards_here(),
        )

    def _shards_here(self) -> str:
        if self.shard_count is None:
            return ""
        ids = self.settings.discord_shard_ids or range(self.shard_count)
        return f"; shards {','.join(map(str, ids))} of {self.shard_count}"

    async def on_message(self, message: discord.Message) -> None:
        text = self.text_for_coach(message)
        if text is not None:
            await self.converse(message, text)

    def text_for_coach(self, message: discord.Message) -> str | None:
        """What `message` says to the coach, or None when it is not for the coach."""
        me = self.user
        if me is None or message.author.bot or message.author.id == me.id:
            return None
        if message.type not in CONVERSATION_TYPES:
            return None
        mentioned = any(user.id == me.id for user in message.mentions)
        if message.guild is None:
            addressed = self.settings.discord_allow_dms
        else:
            parent_id = getattr(message.channel, "parent_id", None)
            coaching = in_coaching_channel(message.channel.id, parent_id, self.coaching_channels)
            addressed = mentioned or coaching
            # No content and no attachment: Discord blanked it (no intent). A file alone is
            # answered: the coach says it reads text only, rather than a silent drop.
            if coaching and not mentioned and not message.content and not message.attachments:
                self._explain_missing_intent()
                return None
        if not addressed:
            return None
        return strip_mention(message.content, me.id) if mentioned else message.content

    def _explain_missing_intent(self) -> None:
        """An empty message in a coaching channel: without the intent, Discord blanks them."""
        if self.settings.discord_message_content_intent or self._told_about_intent:
            return
        self._told_about_intent = True
        log.warning(
            "Discord sends empty content for coaching-channel messages that do not mention the "
            "bot: enable the Message Content intent in the Developer Portal and set "
            "DISCORD_MESSAGE_CONTENT_INTENT=true (until then only mentions and DMs work)"
        )

    async def converse(self, message: discord.Message, text: str) -> None:
        """Answer one user message, streamed; delivery problems are logged with context."""
        identity = discord_identity(message.author, message.guild.id if message.guild else None)
        # Before any await: the message's place in line is taken as it arrives.
        reply = self.coach.reply(
            identity,
            text,
            event_id=str(message.id),
            sent_at=message.created_at,
            place={"channel": str(message.channel.id), "reply_to": str(message.id)},
        )
        if (task := asyncio.current_task()) is not None:
            self.replying.track(task)  # discord.py runs each event in a task of its own
        surface = ChannelReply(message, self.global_budget, reply)
        try:
            async with aclosing(reply):
                await self._render(message, identity, reply, surface)
        finally:
            surface.stop_typing()

    async def _render(
        self, message: discord.Message, identity: Identity, reply: Reply, surface: ChannelReply
    ) -> None:
        try:
            await render(
                spoken(reply, DiscordVoice(message.id, message.channel)),
                surface,
                Budgets(self.buckets.get(message.channel.id), self.global_budget),
                fail_note=failure_note(INTERNAL_ERROR_TEXT),
                cut_note=failure_note(CUT_OFF_TEXT),
                on_lag=LAG.labels("discord").observe,
            )
        except (discord.HTTPException, RateLimited) as error:  # RateLimited: refused too often
            log.error(
                "Discord refused the reply to message %s in channel %s (user %s): %s",
                message.id,
                message.channel.id,
                message.author.id,
                error,
            )
            await reply.undelivered()
            await tell_unfinished(message.channel, self.global_budget)


class ShardedDiscordCoach(DiscordCoach, discord.AutoShardedClient):
    """The bot on DISCORD_SHARD_IDS of DISCORD_SHARD_COUNT shards (one gateway connection
    each; Discord sends each shard only its guilds' events, DMs to shard 0)."""

    def __init__(self, coach: Coach, settings: Settings, **options: Any) -> None:
        options.setdefault("shard_count", settings.discord_shard_count)
        options.setdefault("shard_ids", settings.discord_shard_ids or None)  # None: all
        super().__init__(coach, settings, **options)


def discord_coach(coach: Coach, settings: Settings, **options: Any) -> DiscordCoach:
    """The bot `settings` ask for: sharded when DISCORD_SHARD_COUNT is set, else plain."""
    kind = ShardedDiscordCoach if settings.discord_sharded else DiscordCoach
    return kind(coach, settings, **options)
