"""The terminal adapter: the same coach, locally, with no platform account.

In a terminal: a line editor with history, replies rendered from Markdown as they stream,
Ctrl-C stopping a reply (Ctrl-C at the prompt or Ctrl-D quits). Piped: line by line, plain
text, so scripts and tests can drive it (bots/terminal.py).
"""

from __future__ import annotations

import asyncio
import getpass
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bots.commands import Export, as_text, is_command, run_command, when_for_result
from bots.stream import Failure
from bots.terminal import Gone, Screen, open_terminal
from bots.voice import PROPOSAL_TITLE, When, proposal_text, spoken
from core.coach import Coach
from core.models import Identity, Platform, Proposal
from core.zones import UserTime

GREETING = "Chatting with your Momentum coach. /help for commands, Ctrl-D to quit."
STOPPED = "Stopped. What was shown is kept, marked incomplete in /history."


class Console:
    def __init__(
        self,
        coach: Coach,
        *,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        history: Path | None = None,
        exports: Path | None = None,
    ) -> None:
        self.coach = coach
        self.input, self.screen, self.interactive = open_terminal(stdin, stdout, history)
        self.exports = exports or Path.cwd()  # where /export writes its file
        self.identity = Identity(platform=Platform.CONSOLE, external_id=_local_user())

    async def run(self) -> None:
        try:
            if self.interactive:
                self.screen.say(GREETING)
            while (line := await self.input.line()) is not None:
                if line.strip():
                    await self.handle(line)
            if self.interactive:
                self.screen.say("Bye! Keep the momentum going.")
        except Gone:
            return  # `| head` has all it wanted

    async def handle(self, line: str) -> None:
        if is_command(line):
            result = await run_command(self.coach, self.identity, line)
            if isinstance(result, Export):
                self.screen.say(self.save_export(result))
            else:
                self.screen.say(as_text(result, when_for_result(result)))
            return
        work = asyncio.create_task(self.reply(line))
        with self.input.quiet(), _interrupt_cancels(work) as interrupted:
            with suppress(asyncio.CancelledError):
                await work
            if interrupted():
                self.screen.note(STOPPED)
            elif work.cancelled():  # we were cancelled ourselves, not by Ctrl-C
                raise asyncio.CancelledError

    async def reply(self, line: str) -> None:
        view = self.screen.reply()
        voice = ConsoleVoice(self.screen)
        try:
            async with aclosing(self.coach.reply(self.identity, line)) as events:
                async for delta in spoken(events, voice):
                    if isinstance(delta, Failure):
                        view.end()
                        self.screen.note(delta.note)
                        break
                    view.add(delta)
        finally:
            view.end()
        for proposal in voice.proposals:
            await self.ask(proposal)

    async def ask(self, proposal: Proposal) -> None:
        """A proposal, after the reply: y confirms; anything else declines it."""
        self.screen.say(f"{PROPOSAL_TITLE} {proposal_text(proposal)} Confirm? [y/N]")
        answer = (await self.input.line() or "").strip().lower()
        confirm = answer in ("y", "yes")
        decision = await self.coach.decide(self.identity, proposal.id, confirm=confirm)
        self.screen.say(decision.text)

    def save_export(self, export: Export) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = self.exports / f"momentum-export-{stamp}.json"
        try:
            path.write_text(export.json + "\n", encoding="utf-8")
        except OSError as error:
            return f"I couldn't write {path} ({error.strerror}); here it is instead:\n{export.json}"
        return f"Your data is in {path.resolve()}."


@contextmanager
def _interrupt_cancels(work: asyncio.Task[None]) -> Iterator[Callable[[], bool]]:
    """While a reply streams, Ctrl-C cancels it (closing the Reply keeps what was said,
    incomplete) instead of ending the process. Yields: was it interrupted?"""
    loop = asyncio.get_running_loop()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        work.cancel()

    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread: no Ctrl-C
        yield lambda: False
        return
    try:
        yield lambda: interrupted
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)  # asyncio.run's own, if it had one


class ConsoleVoice:
    """bots/voice.py's Voice for a terminal: Markdown text, times in the user's zone."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.proposals: list[Proposal] = []  # asked once the reply has ended

    def coach(self, text: str) -> str:
        return text  # the screen takes out what could drive the terminal

    def ours(self, text: str) -> str:
        return text

    def note(self, text: str) -> str:
        return text  # the screen marks it as a note

    def when(self, time: UserTime) -> When:
        return time

    async def welcome(self, text: str) -> str:
        self.screen.markdown(text)
        return ""

    async def duplicate(self) -> None:
        return None

    async def propose(self, proposal: Proposal) -> None:
        self.proposals.append(proposal)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except OSError:
        return "local"
