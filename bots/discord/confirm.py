"""Clear and forget ask first: a question with two buttons that survive a restart.

The buttons are `discord.ui.DynamicItem`s whose custom_id carries all a fresh process needs
(the action, the Discord user who asked, the expiry on the coach's clock, the question's id);
`CoachTree` registers them when the bot is built. Only the asker may answer; after
`CONFIRM_TIMEOUT_SECONDS` "yes" deletes nothing and says to run the command again; each
question is answered once (a claim in the store, so a double click or a click on a stale
copy never repeats the action, whichever process gets it). In the process that asked, a
question left unanswered is also edited to say so when it expires.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self

import discord

from bots.commands import CONFIRM_WORD, Confirm, Reply, run_command
from bots.discord.connect import discord_identity
from bots.discord.ephemeral import tell_something_went_wrong
from bots.discord.render import answer_for
from core.coach import Coach

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 120.0
# A button's custom_id is `<CONFIRM_ID or KEEP_ID>:<action>:<user id>:<expiry>:<question id>`.
CONFIRM_ID = "momentum:confirm"
KEEP_ID = "momentum:keep"
CONFIRMED_ACTIONS = ("clear", "forget")  # the grammar's commands that answer with a Confirm
ANSWER_TEMPLATE = re.compile(
    rf"(?P<answer>{re.escape(CONFIRM_ID)}|{re.escape(KEEP_ID)}):"
    rf"(?P<action>{'|'.join(CONFIRMED_ACTIONS)}):"
    r"(?P<user_id>[0-9]{1,20}):(?P<expires>[0-9]{1,12}):(?P<question_id>[0-9]{1,20})"
)
NOTHING_DELETED = "Okay, nothing was deleted."
NO_ANSWER = "No answer, so nothing was deleted."
NOT_YOURS = "These buttons belong to someone else's question."
EXPIRED = (
    "⌛ That question expired, so nothing was deleted. "
    "If you still want to, run `/coach {action}` again."
)
ALREADY_SETTLED = "That question is already settled, so I did nothing more."


@dataclass(frozen=True)
class Question:
    """A destructive command's question, as its buttons carry it: no memory needed."""

    action: str  # one of CONFIRMED_ACTIONS
    user_id: int  # the Discord user who asked: nobody else may answer
    expires: int  # unix seconds on the coach's clock; "yes" after this deletes nothing
    id: int  # the asking interaction's id: each question is answered once

    @classmethod
    def asked(cls, confirm: Confirm, user_id: int, question_id: int, now: datetime) -> Question:
        action = confirm.command.split()[0]
        if action not in CONFIRMED_ACTIONS or confirm.command != f"{action} {CONFIRM_WORD}":
            raise ValueError(f"no confirmation buttons for {confirm.command!r}")
        expires = now + timedelta(seconds=CONFIRM_TIMEOUT_SECONDS)
        return cls(action, user_id, math.ceil(expires.timestamp()), question_id)

    @property
    def command(self) -> str:
        """The grammar's line that carries the action out."""
        return f"{self.action} {CONFIRM_WORD}"

    @property
    def claim_key(self) -> str:
        return f"discord:question:{self.id}"

    def custom_id(self, answer: str) -> str:
        return f"{answer}:{self.action}:{self.user_id}:{self.expires}:{self.id}"

    def expired(self, now: datetime) -> bool:
        return now.timestamp() >= self.expires


class AnswerButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=ANSWER_TEMPLATE
):
    """A "Yes, delete" or "Keep everything" button, rebuilt from its custom_id by whichever
    process receives the click: it works after a restart."""

    def __init__(self, question: Question, answer: str) -> None:
        confirm = answer == CONFIRM_ID
        super().__init__(
            discord.ui.Button(
                label="Yes, delete" if confirm else "Keep everything",
                style=discord.ButtonStyle.danger if confirm else discord.ButtonStyle.secondary,
                custom_id=question.custom_id(answer),
            )
        )
        self.question = question
        self.answer = answer

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        question = Question(
            match["action"], int(match["user_id"]), int(match["expires"]), int(match["question_id"])
        )
        return cls(question, match["answer"])

    async def callback(self, interaction: discord.Interaction) -> None:
        # discord.py only logs what a dynamic item raises; the user must hear about it.
        try:
            await settle(coach_of(interaction.client), self.question, self.answer, interaction)
        except Exception as error:
            log.error(
                "confirmation of /coach %s failed for Discord user %s",
                self.question.action,
                interaction.user.id,
                exc_info=error,
            )
            await tell_something_went_wrong(interaction)


async def settle(
    coach: Coach, question: Question, answer: str, interaction: discord.Interaction
) -> None:
    """One click on a question's buttons: only its asker, only once, "yes" only in time."""
    if interaction.user.id != question.user_id:
        await interaction.response.send_message(NOT_YOURS, ephemeral=True)
        return
    if not await coach.claim_once(question.claim_key):
        await interaction.response.send_message(ALREADY_SETTLED, ephemeral=True)
        return
    if answer == KEEP_ID:
        await interaction.response.edit_message(content=NOTHING_DELETED, embed=None, view=None)
        return
    if question.expired(coach.now()):
        await coach.release_claim(question.claim_key)  # nothing happened: nothing settled
        text = EXPIRED.format(action=question.action)
        await interaction.response.edit_message(content=text, embed=None, view=None)
        return
    identity = discord_identity(interaction.user, interaction.guild_id)
    try:
        result = await run_command(coach, identity, question.command)
    except BaseException:
        await coach.release_claim(question.claim_key)
        raise
    if isinstance(result, Reply) and result.error:  # e.g. the store was down: not done
        await coach.release_claim(question.claim_key)
    answered = answer_for(result)
    await interaction.response.edit_message(content=answered.content, embed=None, view=None)


def coach_of(client: discord.Client) -> Coach:
    """The Coach of the bot that received a click (`DiscordCoach.coach`)."""
    coach = getattr(client, "coach", None)
    if not isinstance(coach, Coach):
        raise TypeError(f"{type(client).__name__} has no coach to answer a question with")
    return coach


class ConfirmView(discord.ui.View):
    """The two buttons under a question. They act on their own (`AnswerButton`); the view
    only tidies up in the process that asked: unanswered at the timeout, the question says
    so. A restart loses that tidy-up, never the buttons."""

    def __init__(self, coach: Coach, question: Question, asked: discord.Interaction) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_SECONDS)
        self.coach = coach
        self.question = question
        self.asked = asked
        self.add_item(AnswerButton(question, CONFIRM_ID))
        self.add_item(AnswerButton(question, KEEP_ID))

    async def on_timeout(self) -> None:
        try:
            if await self.coach.claim_once(self.question.claim_key):  # else: answered
                await self.asked.edit_original_response(content=NO_ANSWER, embed=None, view=None)
        except Exception as error:
            log.warning("could not mark question %s unanswered: %s", self.question.id, error)

