"""A proposal of the coach on Discord: a message with Confirm and Decline buttons under the
reply. The buttons are `DynamicItem`s whose custom_id holds the proposal's id, all a fresh
process needs, so a click after a restart is answered; the Coach decides it once, for the
user it was made to (core/proposals.py). In a shared channel anyone sees the buttons: another
member's click is answered to them alone, and the card stays for its owner."""

from __future__ import annotations

import logging
import re
from typing import Any, Self

import discord

from bots.discord.confirm import coach_of
from bots.discord.connect import discord_identity
from bots.discord.ephemeral import tell_something_went_wrong
from bots.discord.render import discord_commands
from bots.voice import CONFIRM_LABEL, DECLINE_LABEL, PROPOSAL_TITLE, proposal_text
from core.models import Proposal

log = logging.getLogger(__name__)

PROPOSAL_ID = "momentum:proposal"
PROPOSAL_TEMPLATE = re.compile(
    rf"{re.escape(PROPOSAL_ID)}:(?P<answer>confirm|decline):(?P<proposal_id>[0-9a-f]{{32}})"
)


class ProposalButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=PROPOSAL_TEMPLATE
):
    def __init__(self, proposal_id: str, confirm: bool) -> None:
        super().__init__(
            discord.ui.Button(
                label=CONFIRM_LABEL if confirm else DECLINE_LABEL,
                style=discord.ButtonStyle.success if confirm else discord.ButtonStyle.secondary,
                custom_id=f"{PROPOSAL_ID}:{'confirm' if confirm else 'decline'}:{proposal_id}",
            )
        )
        self.proposal_id, self.confirm = proposal_id, confirm

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(match["proposal_id"], match["answer"] == "confirm")

    async def callback(self, interaction: discord.Interaction) -> None:
        # discord.py only logs what a dynamic item raises; the user must hear about it.
        try:
            await self.answer(interaction)
        except Exception as error:
            log.error("proposal %s: the answer of Discord user %s failed", self.proposal_id,
                      interaction.user.id, exc_info=error)  # fmt: skip
            await tell_something_went_wrong(interaction)

    async def answer(self, interaction: discord.Interaction) -> None:
        coach = coach_of(interaction.client)
        identity = discord_identity(interaction.user, interaction.guild_id)
        decision = await coach.decide(identity, self.proposal_id, confirm=self.confirm)
        text = discord_commands(decision.text)
        if decision.by_someone_else:
            await interaction.response.send_message(text, ephemeral=True)
            return
        asked = f"\n-# {decision.proposal.summary}" if decision.proposal else ""
        await interaction.response.edit_message(content=text + asked, view=None)


def proposal_card(proposal: Proposal) -> tuple[str, discord.ui.View]:
    """The message's text and its buttons (the view never times out: the buttons act on
    their own, and the Coach says when a proposal has expired)."""
    view = discord.ui.View(timeout=None)
    view.add_item(ProposalButton(proposal.id, confirm=True))
    view.add_item(ProposalButton(proposal.id, confirm=False))
    return f"**{PROPOSAL_TITLE}** {discord_commands(proposal_text(proposal))}", view


async def post_proposal(channel: discord.abc.Messageable, proposal: Proposal) -> None:
    """The card under the reply. If Discord refuses it, the proposal simply expires."""
    content, view = proposal_card(proposal)
    try:
        await channel.send(content, view=view, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as error:
        log.warning("proposal %s not posted: %s", proposal.id, error)
