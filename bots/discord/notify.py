"""Reaching a Discord user outside a conversation: the scheduler's Notifier.

It needs REST only (a login, no gateway connection), so a separate `momentum scheduler`
process can tell users that a meeting window opened or closed. Users who closed their DMs
(error 50007) are told in the first coaching channel instead, with a mention that pings them
and nobody else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

import discord

from bots.discord.connect import QUIET, log_in, use_discord_urls
from bots.discord.render import MESSAGE_LIMIT, discord_commands
from bots.startup import Retries
from core.config import Settings
from core.models import Platform, User
from core.text import clip

log = logging.getLogger(__name__)

DMS_CLOSED = 50007  # "Cannot send messages to this user"


def notice_nonce(key: str) -> str:
    """A nonce for a notice key, the same on every try: a digest, as Discord takes at most
    25 characters and a key (`<meeting id>:<step>`) is longer."""
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def only_mention(user_id: int) -> discord.AllowedMentions:
    """Ping exactly this user: never @everyone, roles or anyone named in the text."""
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(user_id)]
    )


class DiscordNotifier:
    """DMs a user; falls back to a mention in a coaching channel when their DMs are closed.

    Errors other than closed DMs propagate, so the scheduler's delivery can retry them. A
    notice's `key` becomes the message nonce, which Discord enforces for a few minutes: a
    retry after Discord created the message but answered an error gets that message back
    instead of posting a second one.
    """

    def __init__(
        self,
        client: discord.Client,
        channel_ids: Sequence[int],
        token: str | None = None,
        *,
        retries: Retries | None = None,
    ) -> None:
        self.client = client
        self.channel_ids = list(channel_ids)
        self._token = token  # None: the client is logged in by its owner (the gateway bot)
        self._login = asyncio.Lock()
        self.retries = retries or Retries()

    async def verify(self) -> None:
        """At start (`momentum scheduler`): log in now, so that a rejected token or no network
        ends the start with one line (a DiscordSetupError) rather than failing every notice."""
        async with self._login:
            if self._token is None or self.client.http.token is not None:
                return
            like = self.client  # never logged in, so it holds no connection to close

            def fresh() -> discord.Client:
                return discord.Client(intents=like.intents, allowed_mentions=like.allowed_mentions)

            self.client = await log_in(fresh, self._token, self.retries)
            log.info("Discord notifier: logged in as %s", self.client.user)

    async def notify(self, user: User, text: str, *, key: str | None = None) -> None:
        if user.identity.platform is not Platform.DISCORD:
            raise ValueError(f"not a Discord user: {user.identity.platform}")
        await self._logged_in()
        user_id = int(user.identity.external_id)
        content = clip(discord_commands(text), MESSAGE_LIMIT)
        nonce = notice_nonce(key) if key is not None else None
        try:
            dm = await self.client.create_dm(discord.Object(user_id))
            await dm.send(content, allowed_mentions=QUIET, nonce=nonce)
        except discord.Forbidden as error:
            if error.code != DMS_CLOSED or not self.channel_ids:
                raise
            await self._mention_in_channel(user_id, content, nonce)
            return
        log.info("notified Discord user %s by DM", user_id)

    async def _mention_in_channel(self, user_id: int, content: str, nonce: str | None) -> None:
        channel_id = self.channel_ids[0]
        log.warning(
            "Discord user %s has DMs closed (50007): notifying them in channel %s instead",
            user_id,
            channel_id,
        )
        mention = f"<@{user_id}> "
        channel = self.client.get_partial_messageable(channel_id)
        await channel.send(
            mention + clip(content, MESSAGE_LIMIT - len(mention)),
            allowed_mentions=only_mention(user_id),
            nonce=nonce,
        )

    async def _logged_in(self) -> None:
        async with self._login:
            if self._token is not None and self.client.http.token is None:
                await self.client.login(self._token)

    async def aclose(self) -> None:
        if self._token is not None:  # ours to close; a gateway bot's client is not
            await self.client.close()


def discord_notifier(settings: Settings) -> DiscordNotifier | None:
    """A REST-only notifier for these settings, or None when Discord is not configured."""
    if settings.discord_bot_token is None:
        return None
    use_discord_urls(settings)
    # REST only, so intents are never sent; `guilds` just spares every start discord.py's
    # misleading "Guilds intent seems to be disabled" warning.
    return DiscordNotifier(
        discord.Client(intents=discord.Intents(guilds=True), allowed_mentions=QUIET),
        settings.discord_channel_ids,
        settings.discord_bot_token.get_secret_value(),
        retries=Retries.from_settings(settings),
    )
