"""How Momentum connects to Discord: where (API and gateway URLs), the login that proves
DISCORD_BOT_TOKEN at start, what it asks to hear (intents), and the rule that nothing it
sends pings anyone unless a caller says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.startup import NETWORK_ERRORS, Retries, SetupError, reach
from core.config import Settings
from core.models import Identity, Platform

# Model output may contain `@everyone` or `<@id>`: by default nothing we send pings anyone.
QUIET = discord.AllowedMentions.none()
# What a REST call raises when Discord, or a proxy in front of it, refuses it: HTTPException
# (a text/plain or HTML body is kept as its `text`, `code` 0), or JSONDecodeError for a page
# mislabelled `application/json`, which discord.py parses before it looks at the status.
REFUSED = (discord.HTTPException, json.JSONDecodeError)

TOKEN_HELP = "copy the token from the Developer Portal (your application → Bot → Reset Token)"

ClientT = TypeVar("ClientT", bound=discord.Client)


class DiscordSetupError(SetupError):
    """Discord refused a setup step; the message says what to check."""


def is_passing(error: Exception) -> bool:
    """No network, or Discord failing (5xx, after discord.py's own retries): try again."""
    if isinstance(error, discord.DiscordServerError):
        return True
    return isinstance(error, NETWORK_ERRORS)


async def log_in(make_client: Callable[[], ClientT], token: str, retries: Retries) -> ClientT:
    """A client logged in over REST (GET /users/@me proves the token); the caller closes it.

    Each try gets a fresh client, closed when its login fails: a failed login leaves its HTTP
    session behind, and discord.py cannot log the same client in again cleanly.
    """

    async def attempt() -> ClientT:
        client = make_client()
        try:
            await client.login(token)
        except BaseException:
            await client.close()
            raise
        return client

    try:
        return await reach(
            attempt,
            what="Discord",
            hint=f"check DISCORD_API_URL (now {Route.BASE}) and the network",
            retries=retries,
            passing=is_passing,
        )
    except discord.LoginFailure as error:
        raise DiscordSetupError(
            f"Discord rejected DISCORD_BOT_TOKEN (401 Unauthorized): {TOKEN_HELP}."
        ) from error
    except discord.HTTPException as error:
        raise DiscordSetupError(
            f"Discord refused the login with DISCORD_BOT_TOKEN ({error.status}: {error.text})."
        ) from error


def use_discord_urls(settings: Settings) -> None:
    """Point discord.py at DISCORD_API_URL / DISCORD_GATEWAY_URL (proxies, loopback fakes).

    discord.py reads both class attributes whenever it builds a request or connects, so this
    is process-wide; unset settings leave Discord's own URLs alone.
    """
    # Momentum never joins voice: discord.py's start-up warnings that its voice libraries
    # (PyNaCl, davey) are missing ask an operator to install what nothing uses.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    if settings.discord_api_url:
        Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def intents_for(settings: Settings) -> discord.Intents:
    """Guild messages, DMs when allowed, and message content only when asked for.

    Without the privileged message-content intent the bot still reads DMs and messages that
    mention it, so it works out of the box; coaching channels need the intent to hear
    messages that do not mention it.
    """
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = settings.discord_allow_dms
    intents.message_content = settings.discord_message_content_intent
    return intents


def discord_identity(user: discord.abc.User, guild_id: int | None) -> Identity:
    """Each Discord user is one Momentum user, whichever guild or DM they write from."""
    return Identity(
        platform=Platform.DISCORD,
        external_id=str(user.id),
        workspace_id=str(guild_id) if guild_id is not None else None,
        display_name=user.display_name,
    )
