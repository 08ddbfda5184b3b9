"""One Discord reply as it streams (a bots/stream.py Surface): "typing…" until the first text,
each part posted once (its nonce kept across retries), refusals waited out, the note when
Discord refused the reply for good, and the repair of a reply a crash cut off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Iterator

import discord

from bots.discord.connect import QUIET, REFUSED
from bots.discord.proposals import post_proposal
from bots.discord.render import MESSAGE_LIMIT, discord_commands, discord_when, failure_note
from bots.stream import STREAMING_INDICATOR, RateLimited
from bots.throttle import EditBucket
from bots.voice import When
from core.models import InFlight, Proposal
from core.reply import Reply
from core.texts import CUT_OFF_TEXT, INTERNAL_ERROR_TEXT
from core.zones import UserTime

log = logging.getLogger(__name__)

TYPING_REFRESH_SECONDS = 8.0  # Discord shows "typing…" for 10 s after each trigger
TYPING_MAX_WAIT_SECONDS = 0.25  # a later "typing…" is no longer a prompt sign of life
REFUSED_RETRY_SECONDS = 1.0  # wait before writing again after a 5xx or a 429 storm
# A reply Discord refused past the renderer's patience: its note is tried for this long,
# first after NOTE_FIRST_WAIT_SECONDS, then waiting twice as long after each refusal (up to
# NOTE_MAX_WAIT_SECONDS), until it lands.
NOTE_PATIENCE_SECONDS = 120.0
NOTE_FIRST_WAIT_SECONDS = 1.0
NOTE_MAX_WAIT_SECONDS = 15.0
# The reply reference may notify the person answered; nothing in the text pings anyone.
REPLY_MENTIONS = discord.AllowedMentions(
    everyone=False, users=False, roles=False, replied_user=True
)


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


class DiscordVoice:
    """bots/voice.py's Voice for Discord: `/coach …` commands, Discord's time stamps until a
    user chose a zone, the welcome opening the reply."""

    def __init__(self, message_id: int, channel: discord.abc.Messageable) -> None:
        self.message_id, self.channel = message_id, channel

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

    async def propose(self, proposal: Proposal) -> None:
        await post_proposal(self.channel, proposal)


async def tell_unfinished(channel: discord.abc.Messageable, global_budget: EditBucket) -> None:
    """Tell the user their reply broke off, trying until Discord takes the note (for
    NOTE_PATIENCE_SECONDS): a message frozen mid-sentence must not look like the whole
    answer, and a storm that refused the reply often refuses its first note too."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + NOTE_PATIENCE_SECONDS
    wait = NOTE_FIRST_WAIT_SECONDS
    while True:
        await asyncio.sleep(wait)
        await global_budget.acquire()
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


async def repair(client: discord.Client, record: InFlight) -> str | None:
    """Finish a reply a crash cut off: its last message without the indicator, then the
    note (in that message when it fits, else after it); the text it had, if known."""
    place, note = record.place, failure_note(CUT_OFF_TEXT)
    channel = client.get_partial_messageable(int(place["channel"]))
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
