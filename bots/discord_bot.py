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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import discord

from bots.discord_commands import CoachCommands, CoachTree
from bots.discord_connect import (
    QUIET,
    REFUSED,
    DiscordSetupError,
    discord_identity,
    intents_for,
    log_in,
    use_discord_urls,
)
from bots.discord_render import MESSAGE_LIMIT, discord_commands, discord_when, failure_note
from bots.repairs import keep_repairing
from bots.startup import NETWORK_ERRORS, Retries, describe
from bots.stream import (
    CUT_WRITE_SECONDS,
    STREAMING_INDICATOR,
    Buckets,
    Budgets,
    EditBucket,
    RateLimited,
    render,
)
from bots.voice import When, spoken
from core.coach import Coach
from core.config import Settings
from core.models import Identity, InFlight, Platform
from core.texts import CUT_OFF_TEXT, INTERNAL_ERROR_TEXT
from core.timeparse import UserTime
from core.turn import Reply

log = logging.getLogger(__name__)

# Discord publishes no per-route numbers; about 5 message writes per 5 s per channel is the
# observed limit, so every reply in a channel shares that budget.
EDITS_PER_WINDOW = 5
EDIT_WINDOW_SECONDS = 5.0
# Of the bot's global requests/s, replies use this share: the rest is headroom for
# discord.py's own calls and for network jitter bunching paced requests together.
GLOBAL_SHARE = 0.8
GLOBAL_BURST = 3  # Discord counts requests per second, not a pace: a few may go at once
TYPING_REFRESH_SECONDS = 8.0  # Discord shows "typing…" for 10 s after each trigger
TYPING_MAX_WAIT_SECONDS = 0.25  # a later "typing…" is no longer a prompt sign of life
REFUSED_RETRY_SECONDS = 1.0  # wait before writing again after a 5xx or a 429 storm
# A reply Discord refused past the renderer's patience: its note is tried for this long,
# first after NOTE_FIRST_WAIT_SECONDS, then waiting twice as long after each refusal (up to
# NOTE_MAX_WAIT_SECONDS), until it lands.
NOTE_PATIENCE_SECONDS = 120.0
NOTE_FIRST_WAIT_SECONDS = 1.0
NOTE_MAX_WAIT_SECONDS = 15.0
CONVERSATION_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
# The reply reference may notify the person answered; nothing in the text pings anyone.
REPLY_MENTIONS = discord.AllowedMentions(
    everyone=False, users=False, roles=False, replied_user=True
)


def in_coaching_channel(channel_id: int, parent_id: int | None, coaching: frozenset[int]) -> bool:
    """A coaching channel, or a thread inside one."""
    return channel_id in coaching or (parent_id is not None and parent_id in coaching)


def strip_mention(content: str, user_id: int) -> str:
    return re.sub(rf"<@!?{user_id}>", " ", content).strip()


def _retrieved(request: asyncio.Future[None]) -> None:
    if not request.cancelled() and (error := request.exception()) is not None:
        log.debug("typing indicator failed: %s", error)


class ChannelReply:
    """One streamed reply (a `bots.stream.Surface`): the first message answers the user's
    (in a guild, as a reply to it), the rest follow it in the same channel."""

    limit = MESSAGE_LIMIT

    def __init__(
        self, message: discord.Message, global_budget: EditBucket, reply: Reply | None = None
    ) -> None:
        self.channel = message.channel
        self.global_budget = global_budget  # typing spends it too; posts/edits via render
        self.reply = reply  # told where each part shows, for a repair after a crash
        self.reference = (
            message.to_reference(fail_if_not_exists=False) if message.guild is not None else None
        )
        self._typing: asyncio.Task[None] | None = None
        self._posted = False
        # The message part being posted: its nonce lives until a post of it succeeds, so
        # a retry after a 5xx that Discord had in fact taken returns that message instead
        # of a second copy (enforce_nonce, which discord.py sets with any nonce).
        self._nonce: str | None = None

    async def indicate(self) -> None:
        await self._type()
        self._typing = asyncio.create_task(self._keep_typing())

    async def _keep_typing(self) -> None:
        """Until the first text shows: a slow first token must not look like a dead bot."""
        while True:
            await asyncio.sleep(TYPING_REFRESH_SECONDS)
            with contextlib.suppress(*REFUSED):
                await self._type()

    async def _type(self) -> None:
        # "typing…" is a courtesy: when replies are already queueing for the bot's global
        # budget, a slot is worth more as text than as an indicator that would come late.
        if self.global_budget.backlog() <= TYPING_MAX_WAIT_SECONDS:
            await self.global_budget.acquire()
            # Shielded: a typing request cut off mid-flight (the reply ended first, as a
            # replayed message's does at once) left discord.py's typing route waiting, and
            # the next reply in the channel waited behind it for ~30 s.
            request = asyncio.ensure_future(self.channel.typing())
            request.add_done_callback(_retrieved)  # nobody awaits it once we are cancelled
            await asyncio.shield(request)

    def stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def post(self, text: str) -> discord.Message:
        self.stop_typing()
        retry = self._nonce is not None
        if self._nonce is None:
            self._nonce = secrets.token_hex(12)  # Discord allows 25 characters
        with refusals_retried():
            if not self._posted and self.reference is not None:
                sent = await self.channel.send(
                    text,
                    reference=self.reference,
                    silent=True,
                    allowed_mentions=REPLY_MENTIONS,
                    nonce=self._nonce,
                )
            else:
                sent = await self.channel.send(
                    text, silent=True, allowed_mentions=QUIET, nonce=self._nonce
                )
            if retry and sent.content != text:
                # Discord returned the copy it had taken before its 5xx, with the older
                # text: bring it up to date, since the renderer takes it as showing `text`.
                await sent.edit(content=text, allowed_mentions=QUIET)
        self._posted = True
        self._nonce = None  # the next part is a new message
        if self.reply is not None:
            await self.reply.shown_at(message=str(sent.id))
        return sent

    async def edit(self, handle: discord.Message, text: str) -> None:
        with refusals_retried():
            await handle.edit(content=text, allowed_mentions=QUIET)


@contextlib.contextmanager
def refusals_retried() -> Iterator[None]:
    """Passing refusals become RateLimited, which the renderer waits out and retries with the
    newest text: a 429 that outlasted discord.py's own five tries, and a 5xx (discord.py
    raises a 503 at once). Before, either ended the reply silently, frozen mid-sentence.

    Whatever the body: discord.py keeps a proxy's text/plain or HTML page as the error's
    `text` (`code` 0), and the status decides. A page mislabelled `application/json` makes it
    raise JSONDecodeError instead, status unknown: that counts as passing too (a post
    retried with its nonce cannot show twice)."""
    try:
        yield
    except discord.RateLimited as limited:
        raise RateLimited(limited.retry_after) from limited
    except discord.HTTPException as error:
        if error.status != 429 and error.status < 500:
            raise
        raise RateLimited(REFUSED_RETRY_SECONDS) from error
    except json.JSONDecodeError as error:
        raise RateLimited(REFUSED_RETRY_SECONDS) from error


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
        super().__init__(intents=intents_for(settings), allowed_mentions=QUIET, **options)
        self.coach = coach
        self.settings = settings
        self.coaching_channels = frozenset(settings.discord_channel_ids)
        self.buckets = Buckets(*edit_rate)  # by channel id: Discord's message-write bucket
        # Discord's global limit covers every channel: one budget for the whole bot.
        limit = settings.discord_global_rate_limit
        pace = max(1, math.floor(limit * GLOBAL_SHARE))
        # A burst spends headroom: pace + burst - 1 writes must fit in Discord's second.
        self.global_budget = EditBucket(pace, 1.0, burst=max(1, min(GLOBAL_BURST, limit - pace)))
        self.tree = CoachTree(self)
        self.commands = CoachCommands(coach, allow_dms=settings.discord_allow_dms)
        self.tree.add_command(self.commands)
        self._told_about_intent = False
        self.replying: set[asyncio.Task[Any]] = set()  # conversations being answered
        self._repairs: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Shut down: the replies in flight get SHUTDOWN_GRACE_SECONDS to finish, the rest end
        with a note, and only then does the connection close (the gateway task has stopped
        by now, so no new message starts meanwhile)."""
        if self._repairs is not None:
            self._repairs.cancel()
        if self.replying:
            _, cut = await asyncio.wait(
                set(self.replying), timeout=self.settings.shutdown_grace_seconds
            )
            if cut:
                log.warning("%d Discord repl(ies) still running at shutdown: cut off", len(cut))
                for task in cut:
                    task.cancel()
                await asyncio.wait(cut, timeout=CUT_WRITE_SECONDS + 1)
        await super().close()

    async def on_ready(self) -> None:
        if self._repairs is None:  # on_ready comes again after each reconnect: once
            self._repairs = asyncio.create_task(
                keep_repairing(self.coach, Platform.DISCORD, self.repair), name="discord-repairs"
            )
        log.info(
            "Discord: logged in as %s; coaching channels %s; DMs %s",
            self.user,
            sorted(self.coaching_channels) or "none",
            "on" if self.settings.discord_allow_dms else "off",
        )

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
        task = asyncio.current_task()
        if task is not None:
            self.replying.add(task)
        surface = ChannelReply(message, self.global_budget, reply)
        try:
            async with aclosing(reply):
                await self._render(message, identity, reply, surface)
        finally:
            surface.stop_typing()
            if task is not None:
                self.replying.discard(task)

    async def _render(
        self, message: discord.Message, identity: Identity, reply: Reply, surface: ChannelReply
    ) -> None:
        try:
            await render(
                spoken(reply, DiscordVoice(message.id)),
                surface,
                Budgets(self.buckets.get(message.channel.id), self.global_budget),
                fail_note=failure_note(INTERNAL_ERROR_TEXT),
                cut_note=failure_note(CUT_OFF_TEXT),
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
            await self.tell_unfinished(message.channel)

    async def tell_unfinished(self, channel: discord.abc.Messageable) -> None:
        """Tell the user their reply broke off, trying until Discord takes the note (for
        NOTE_PATIENCE_SECONDS): a message frozen mid-sentence must not look like the whole
        answer, and a storm that refused the reply often refuses its first note too."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + NOTE_PATIENCE_SECONDS
        wait = NOTE_FIRST_WAIT_SECONDS
        while True:
            await asyncio.sleep(wait)
            await self.global_budget.acquire()
            try:
                await channel.send(
                    failure_note(INTERNAL_ERROR_TEXT), silent=True, allowed_mentions=QUIET
                )
                return
            except (*REFUSED, discord.RateLimited) as error:
                wait = min(wait * 2, NOTE_MAX_WAIT_SECONDS)
                if loop.time() + wait > give_up_at:
                    log.error("Discord refused the note about an unfinished reply for %.0f s, "
                              "giving up: %s", NOTE_PATIENCE_SECONDS, error)
                    return
                log.warning("Discord refused the note about an unfinished reply (%s); "
                            "trying again in %.1f s", error, wait)

    async def repair(self, record: InFlight) -> str | None:
        """Finish a reply a crash cut off: its last message without the indicator, then the
        note (in that message when it fits, else after it); the text it had, if known."""
        place, note = record.place, failure_note(CUT_OFF_TEXT)
        channel = self.get_partial_messageable(int(place["channel"]))
        shown: str | None = None
        if place.get("message"):
            try:
                last = await channel.fetch_message(int(place["message"]))
                shown = last.content.removesuffix(STREAMING_INDICATOR).rstrip()
                whole = f"{shown}\n\n{note}" if shown else note
                if len(whole) <= MESSAGE_LIMIT:
                    await last.edit(content=whole, allowed_mentions=QUIET)
                    return shown
                await last.edit(content=shown, allowed_mentions=QUIET)
            except discord.NotFound:  # deleted meanwhile: the note stands alone
                shown = None
        reference = discord.MessageReference(
            message_id=int(place["reply_to"]), channel_id=channel.id, fail_if_not_exists=False
        )
        await channel.send(note, reference=reference, silent=True, allowed_mentions=QUIET)
        return shown


class DiscordVoice:
    """bots/voice.py's Voice for Discord: `/coach …` commands, Discord's time stamps until a
    user chose a zone, the welcome opening the reply."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id

    def coach(self, text: str) -> str:
        return text  # sent with no mentions allowed: nothing in it can ping

    def ours(self, text: str) -> str:
        return discord_commands(text)

    def note(self, text: str) -> str:
        return failure_note(text)

    def when(self, time: UserTime) -> When:
        return discord_when(time)

    async def welcome(self, text: str) -> str:
        return discord_commands(text) + "\n\n"

    async def duplicate(self) -> None:
        log.info("Discord message %s was already answered", self.message_id)


async def run_discord(coach: Coach, settings: Settings) -> None:
    """The `momentum run` service: log in (the token proven, the network given its tries),
    then connect to the gateway and serve until cancelled."""
    if settings.discord_bot_token is None:
        raise DiscordSetupError("DISCORD_BOT_TOKEN is not set.")
    use_discord_urls(settings)
    token = settings.discord_bot_token.get_secret_value()
    retries = Retries.from_settings(settings)
    bot = await log_in(lambda: DiscordCoach(coach, settings), token, retries)
    async with bot:
        try:
            await bot.connect()
        except discord.PrivilegedIntentsRequired as error:
            raise DiscordSetupError(
                "DISCORD_MESSAGE_CONTENT_INTENT=true, but the Message Content intent is not "
                "enabled for this bot: enable it in the Developer Portal (Bot tab) or unset it."
            ) from error
        except discord.ConnectionClosed as error:
            # discord.py reconnects by itself after passing drops: one it raises is final.
            raise DiscordSetupError(
                f"Discord closed the gateway connection ({error.code}: "
                f"{error.reason or 'no reason given'}): check DISCORD_BOT_TOKEN and "
                "DISCORD_GATEWAY_URL."
            ) from error


async def sync_commands(coach: Coach, settings: Settings, guild_id: int | None) -> list[str]:
    """Register `/coach` with Discord over REST: globally, or in one guild (instant, handy
    while testing). Discord caps command creation per day, hence an explicit CLI step."""
    if settings.discord_bot_token is None:
        raise DiscordSetupError("Set DISCORD_BOT_TOKEN to register the Discord commands.")
    use_discord_urls(settings)
    guild = discord.Object(guild_id) if guild_id is not None else None
    token = settings.discord_bot_token.get_secret_value()
    retries = Retries.from_settings(settings)
    bot = await log_in(lambda: DiscordCoach(coach, settings), token, retries)
    async with bot:
        try:
            if guild is not None:
                bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
        except discord.HTTPException as error:
            where = f"guild {guild_id} (is the bot in it?)" if guild_id else "your application"
            raise DiscordSetupError(f"Discord refused the commands for {where}: {error}") from error
        except NETWORK_ERRORS as error:
            raise DiscordSetupError(
                f"Discord became unreachable while registering the commands "
                f"({describe(error)}): run it again."
            ) from error
    return [command.name for command in synced]
