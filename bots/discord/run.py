"""Starting the Discord client: `momentum run`'s service, and `momentum discord-sync`."""

from __future__ import annotations

import discord

from bots.discord.bot import DiscordCoach, discord_coach
from bots.discord.connect import DiscordSetupError, log_in, use_discord_urls
from bots.startup import NETWORK_ERRORS, Retries, describe
from core.coach import Coach
from core.config import Settings


async def run_discord(coach: Coach, settings: Settings) -> None:
    """The `momentum run` service: log in (the token proven, the network given its tries),
    then connect to the gateway and serve until cancelled."""
    if settings.discord_bot_token is None:
        raise DiscordSetupError("DISCORD_BOT_TOKEN is not set.")
    use_discord_urls(settings)
    token = settings.discord_bot_token.get_secret_value()
    retries = Retries.from_settings(settings)
    bot = await log_in(lambda: discord_coach(coach, settings), token, retries)
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
