"""The `/coach` app command group: typed options in, one line of the shared grammar out.

Every subcommand builds the same text a console user would type (`goal done 2`) and hands
it to `bots.commands.run_command`, so the rules live in one place. Answers are ephemeral.
Work that may outlast Discord's 3-second answer deadline is deferred: always for export and
history, and for any other command that has not finished after `DEFER_AFTER_SECONDS`.
Clear and forget ask first, with buttons that run the grammar's `Confirm.command` and
survive a restart (bots/discord/confirm.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from zoneinfo import available_timezones

import discord
from discord import app_commands

from bots.commands import Confirm, Result, run_command
from bots.discord.confirm import AnswerButton, ConfirmView, Question
from bots.discord.connect import discord_identity
from bots.discord.ephemeral import send_answer, tell, tell_something_went_wrong
from bots.discord.proposals import ProposalButton
from bots.discord.render import Answer, answer_for
from core.coach import Coach
from core.models import Identity
from core.progress import MAX_PROGRESS_CHARS
from core.session import MAX_GOAL_CHARS
from core.text import clip

log = logging.getLogger(__name__)

DEFER_AFTER_SECONDS = 2.0  # answer directly when we can; defer before the 3 s deadline
MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices
CHOICE_NAME_LIMIT = 100
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

    @app_commands.command(description="Note progress on a goal")
    @app_commands.describe(goal="The goal's number in /coach goals", text="What you did")
    async def log(
        self,
        interaction: discord.Interaction,
        goal: int,
        text: app_commands.Range[str, 1, MAX_PROGRESS_CHARS],
    ) -> None:
        await self.answer(interaction, f"log {goal} {text}")

    @goal_done.autocomplete("number")
    @goal_drop.autocomplete("number")
    @log.autocomplete("goal")
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

    @app_commands.command(description="What you said you would do; mark one done")
    @app_commands.describe(done="The number of a commitment you did; leave out to list them")
    async def commitments(self, interaction: discord.Interaction, done: int | None = None) -> None:
        line = "commitments" if done is None else f"commitments done {done}"
        await self.answer(interaction, line)

    @commitments.autocomplete("done")
    async def commitment_numbers(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        identity = discord_identity(interaction.user, interaction.guild_id)
        choices = [
            app_commands.Choice(name=_choice_name(n, c.text), value=n)
            for n, c in enumerate(await self.coach.commitments(identity), 1)
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

    @app_commands.command(description="What I remember about you; forget a note")
    @app_commands.describe(forget="The number of a note to forget; leave out to list them")
    async def memory(self, interaction: discord.Interaction, forget: int | None = None) -> None:
        await self.answer(interaction, "memory" if forget is None else f"memory forget {forget}")

    @memory.autocomplete("forget")
    async def note_numbers(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        identity = discord_identity(interaction.user, interaction.guild_id)
        choices = [
            app_commands.Choice(name=_choice_name(n, note), value=n)
            for n, note in enumerate(await self.coach.memory(identity), 1)
        ]
        return _matching(choices, current)

    @app_commands.command(description="One user across Slack, Discord and the web")
    @app_commands.describe(code="The code from /coach link on your other account; none: get one")
    async def link(self, interaction: discord.Interaction, code: str | None = None) -> None:
        await self.answer(interaction, f"link {code or ''}".strip())

    @app_commands.command(description="Take this account out of the link")
    async def unlink(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "unlink")

    @app_commands.command(description="A sign-in link for the web page (only you see it)")
    async def web(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "web")

    @app_commands.command(description="Your meetings as a feed for your calendar (only you see it)")
    async def calendar(self, interaction: discord.Interaction) -> None:
        await self.answer(interaction, "calendar")

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
        client.add_dynamic_items(AnswerButton, ProposalButton)

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




