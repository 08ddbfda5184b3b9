"""Ephemeral answers to an interaction: the first response, or the follow-up after a defer."""

from __future__ import annotations

import contextlib
from typing import Any

import discord

from bots.discord.connect import QUIET, REFUSED
from bots.discord.render import Answer
from core.texts import INTERNAL_ERROR_TEXT

SOMETHING_WENT_WRONG = f"⚠️ {INTERNAL_ERROR_TEXT}"


async def send_answer(
    interaction: discord.Interaction, answer: Answer, view: discord.ui.View | None = None
) -> None:
    """Send an ephemeral answer, as the first response or as the follow-up after a defer."""
    fields: dict[str, Any] = {"ephemeral": True, "allowed_mentions": QUIET}
    if answer.content:
        fields["content"] = answer.content
    if answer.embed is not None:
        fields["embed"] = answer.embed
    if (file := answer.file()) is not None:
        fields["file"] = file
    if view is not None:
        fields["view"] = view
    if interaction.response.is_done():
        await interaction.followup.send(**fields)
    else:
        await interaction.response.send_message(**fields)


async def tell_something_went_wrong(interaction: discord.Interaction) -> None:
    await tell(interaction, SOMETHING_WENT_WRONG)


async def tell(interaction: discord.Interaction, text: str) -> None:
    """One ephemeral line, as the response or as a follow-up after a defer."""
    with contextlib.suppress(*REFUSED):
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)

