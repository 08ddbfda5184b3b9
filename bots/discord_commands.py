"""The `/coach` app command group: typed options in, one line of the shared grammar out.

Every subcommand builds the same text a console user would type (`goal done 2`) and hands
it to `bots.commands.run_command`, so the rules live in one place. Answers are ephemeral.
Work that may outlast Discord's 3-second answer deadline is deferred: always for export and
history, and for any other command that has not finished after `DEFER_AFTER_SECONDS`.
Clear and forget ask first, with buttons that run the grammar's `Confirm.command`.

The buttons survive a restart (deploy, crash) between the question and the click: they are
`discord.ui.DynamicItem`s whose custom_id carries all a fresh process needs (the action, the
Discord user who asked, the expiry on the coach's clock, the question's id), and `CoachTree`
registers them when the bot is built. Only the asker may answer; after
`CONFIRM_TIMEOUT_SECONDS` "yes" deletes nothing and says to run the command again; each
question is answered once (a claim in the store, so a double click or a click on a stale
copy never repeats the action, whichever process gets it). In the process that asked, a
question left unanswered is also edited to say so when it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self
from zoneinfo import available_timezones

import discord
from discord import app_commands

from bots.commands import CONFIRM_WORD, Confirm, Reply, Result, run_command
from bots.discord_connect import QUIET, REFUSED, discord_identity
from bots.discord_render import Answer, answer_for
from core.coach import Coach
from core.models import Identity
from core.session import MAX_GOAL_CHARS
from core.text import clip
from core.texts import INTERNAL_ERROR_TEXT

log = logging.getLogger(__name__)

DEFER_AFTER_SECONDS = 2.0  # answer directly when we can; defer before the 3 s deadline
CONFIRM_TIMEOUT_SECONDS = 120.0
MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices
CHOICE_NAME_LIMIT = 100
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
SOMETHING_WENT_WRONG = f"⚠️ {INTERNAL_ERROR_TEXT}"
# What a user's Discord client sent does not match the commands this bot has (a stale command
# list, or options of the wrong type): their problem to retry, not a failure "on my side".
OUT_OF_DATE = (
    "⚠️ That command doesn't match the ones I know: my commands may have been updated. "
    "Type `/coach` again and pick it from the list, or try `/coach help`."
)
MISMATCHED_COMMAND = (
    app_commands.CommandNotFound,
    app_commands.CommandSignatureMismatch,
    app_commands.TransformerError,
)
_TIMEZONES = sorted(available_timezones())


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


def _choice_name(number: int, text: str) -> str:
    return clip(f"{number}. {' '.join(text.split())}", CHOICE_NAME_LIMIT)


def _matching(choices: list[app_commands.Choice[int]], current: str) -> list[
    app_commands.Choice[int]
]:
    wanted = current.strip().lower()
    return [c for c in choices if wanted in c.name.lower()][:MAX_CHOICES]


class CoachCommands(app_commands.Group):
    """`/coach <subcommand>`: thin wrappers over the shared grammar."""

    goal = app_commands.Group(name="goal", description="Add a goal, or finish or drop one")

    def __init__(self, coach: Coach, *, allow_dms: bool) -> None:
        super().__init__(
            name="coach",
            description="Your Momentum coach",
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=allow_dms, private_channel=False
            ),
        )
        self.coach = coach
        self.defer_after = DEFER_AFTER_SECONDS

    async def answer(
        self, interaction: discord.Interaction, line: str, *, defer: bool = False
    ) -> None:
        """Run `line` for the user who asked, deferring first when told or when it is slow."""
        identity = discord_identity(interaction.user, interaction.guild_id)
        if defer:
            await interaction.response.defer(ephemeral=True, thinking=True)
        work = asyncio.ensure_future(self._run(identity, line))
        if not defer:
            done, _ = await asyncio.wait({work}, timeout=self.defer_after)
            if not done:
                await interaction.response.defer(ephemeral=True, thinking=True)
        result, answer = await work
        view = None
        if isinstance(result, Confirm):
            now = self.coach.now()
            question = Question.asked(result, interaction.user.id, interaction.id, now)
            view = ConfirmView(self.coach, question, interaction)
        await send_answer(interaction, answer, view)

    async def _run(self, identity: Identity, line: str) -> tuple[Result, Answer]:
        result = await run_command(self.coach, identity, line)
        return result, answer_for(result)

    # --- subcommands, in the order /coach help lists them ---------------------------------

    @app_commands.command(name="help", description="What I can do")
    async def help_(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "help")

    @app_commands.command(description="Can you reach me now, and when next")
    async def access(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "access")

    @app_commands.command(description="Our conversation, newest first")
    @app_commands.describe(page="Page number (1 is the newest)")
    async def history(
        self, interaction: discord.Interaction, page: app_commands.Range[int, 1] = 1
    ) -> None:
        await self.answer(interaction, f"history {page}", defer=True)

    @app_commands.command(description="Delete our conversation history (asks first)")
    async def clear(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "clear")

    @app_commands.command(description="Your active goals")
    async def goals(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "goals")

    @goal.command(name="add", description="Add a goal")
    @app_commands.describe(goal="The goal, e.g. Run 5 km by March")
    async def goal_add(
        self, interaction: discord.Interaction, goal: app_commands.Range[str, 1, MAX_GOAL_CHARS]
    ) -> None:
        await self.answer(interaction, f"goal add {goal}")

    @goal.command(name="done", description="Mark a goal done")
    @app_commands.describe(number="The goal's number in /coach goals")
    async def goal_done(self, interaction: discord.Interaction, number: int) -> None:
        await self.answer(interaction, f"goal done {number}")

    @goal.command(name="drop", description="Drop a goal")
    @app_commands.describe(number="The goal's number in /coach goals")
    async def goal_drop(self, interaction: discord.Interaction, number: int) -> None:
        await self.answer(interaction, f"goal drop {number}")

    @goal_done.autocomplete("number")
    @goal_drop.autocomplete("number")
    async def goal_numbers(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        identity = discord_identity(interaction.user, interaction.guild_id)
        goals = await self.coach.goals(identity)
        choices = [
            app_commands.Choice(name=_choice_name(n, goal.text), value=n)
            for n, goal in enumerate(goals, 1)
        ]
        return _matching(choices, current)

    @app_commands.command(description="Book a coaching meeting")
    @app_commands.describe(
        when="e.g. tomorrow 9am, fri 18:30, next monday 7:00",
        minutes="How long it lasts, in minutes",
        weekly="Repeat every week at the same time",
    )
    async def schedule(
        self,
        interaction: discord.Interaction,
        when: str,
        minutes: app_commands.Range[int, 1, 24 * 60] | None = None,
        weekly: bool = False,
    ) -> None:
        line = f"schedule {when}" + (f" for {minutes}m" if minutes else "")
        await self.answer(interaction, line + (" weekly" if weekly else ""))

    @app_commands.command(description="Your upcoming meetings")
    async def meetings(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "meetings")

    @app_commands.command(description="Cancel a meeting, or its whole weekly series")
    @app_commands.describe(
        number="The meeting's number in /coach meetings", series="Cancel the whole weekly series"
    )
    async def cancel(
        self, interaction: discord.Interaction, number: int, series: bool = False
    ) -> None:
        await self.answer(interaction, f"cancel {number}" + (" series" if series else ""))

    @cancel.autocomplete("number")
    async def meeting_numbers(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        identity = discord_identity(interaction.user, interaction.guild_id)
        you = await self.coach.session(identity)
        choices = [
            app_commands.Choice(name=_choice_name(n, you.local(meeting.start)), value=n)
            for n, meeting in enumerate(await you.meetings(), 1)
        ]
        return _matching(choices, current)

    @app_commands.command(description="Start tracking (needs a goal and a meeting)")
    async def track(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "track")

    @app_commands.command(description="Back to goal setting: talk to me any time")
    async def goalsetting(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "goalsetting")

    @app_commands.command(description="Show or set your timezone")
    @app_commands.describe(name="An IANA name such as Europe/Paris; leave out to see yours")
    async def timezone(self, interaction: discord.Interaction, name: str | None = None) -> None:
        await self.answer(interaction, f"timezone {name or ''}".strip())

    @timezone.autocomplete("name")
    async def timezone_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        wanted = "_".join(current.split()).lower()
        names = [name for name in _TIMEZONES if wanted in name.lower()]
        return [app_commands.Choice(name=name, value=name) for name in names[:MAX_CHOICES]]

    @app_commands.command(description="All your data, as a JSON file")
    async def export(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "export", defer=True)

    @app_commands.command(description="Delete all your data (asks first)")
    async def forget(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "forget")


class CoachTree(app_commands.CommandTree[discord.Client]):
    """A command tree whose failures end in a friendly ephemeral line and a log entry.

    It also registers the buttons that its questions carry, with the client it is built for,
    so that a click reaches them however long ago (and in whichever process) they were sent.
    """

    def __init__(self, client: discord.Client, **options: Any) -> None:
        super().__init__(client, **options)
        client.add_dynamic_items(AnswerButton)

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        command = interaction.command.qualified_name if interaction.command else "?"
        if isinstance(error, MISMATCHED_COMMAND):
            log.warning("/%s from Discord user %s: %s", command, interaction.user.id, error)
            await tell(interaction, OUT_OF_DATE)
            return
        log.error("/%s failed for Discord user %s", command, interaction.user.id, exc_info=error)
        await tell_something_went_wrong(interaction)


async def tell_something_went_wrong(interaction: discord.Interaction) -> None:
    await tell(interaction, SOMETHING_WENT_WRONG)


async def tell(interaction: discord.Interaction, text: str) -> None:
    """One ephemeral line, as the response or as a follow-up after a defer."""
    with contextlib.suppress(*REFUSED):
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
