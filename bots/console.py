"""The terminal adapter: the same coach, locally, with no platform account.

Interactive in a terminal (a prompt, replies streamed as they are written); line by line
when stdin is piped, so scripts and tests can drive it.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
from contextlib import aclosing, suppress
from typing import TextIO

from bots.commands import as_text, is_command, run_command, when_for_result
from bots.stream import Failure
from bots.voice import When, spoken
from core.coach import Coach
from core.models import Identity, Platform
from core.text import without_controls
from core.zones import UserTime

PROMPT = "you> "
COACH_PREFIX = "coach> "


class Console:
    def __init__(self, coach: Coach, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout):
        self.coach = coach
        self.stdin = stdin
        self.out = stdout
        self.interactive = stdin.isatty()
        self.identity = Identity(platform=Platform.CONSOLE, external_id=_local_user())

    def write(self, text: str) -> None:
        # The model's words reach a terminal here: no escape sequence may drive it.
        self.out.write(without_controls(text))
        self.out.flush()

    async def run(self) -> None:
        if self.interactive:
            self.write("Chatting with your Momentum coach. /help for commands, Ctrl-D to quit.\n")
        while True:
            if self.interactive:
                self.write(PROMPT)
            line = await self.readline()
            if not line:  # end of input
                if self.interactive:
                    self.write("\nBye! Keep the momentum going.\n")
                return
            if line.strip():
                await self.handle(line.rstrip("\n"))

    async def readline(self) -> str:
        """The next line, read in a daemon thread: a blocked read must not keep Ctrl-C from
        exiting (`asyncio.to_thread` would hold the process until the user pressed Enter)."""
        loop = asyncio.get_running_loop()
        line: asyncio.Future[str] = loop.create_future()

        def deliver(result: str | Exception) -> None:
            if line.done():
                return
            if isinstance(result, Exception):
                line.set_exception(result)
            else:
                line.set_result(result)

        def read() -> None:
            result: str | Exception
            try:
                result = self.stdin.readline()
            except Exception as error:
                result = error
            with suppress(RuntimeError):  # the loop closed while we read: nobody waits
                loop.call_soon_threadsafe(deliver, result)

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        return await line

    async def handle(self, line: str) -> None:
        if is_command(line):
            result = await run_command(self.coach, self.identity, line)
            self.write(as_text(result, when_for_result(result)) + "\n")
            return
        streaming = False
        async with aclosing(self.coach.reply(self.identity, line)) as events:
            async for delta in spoken(events, ConsoleVoice(self)):
                if isinstance(delta, Failure):
                    self.write(("\n" if streaming else "") + delta.note + "\n")
                    return
                if not streaming:
                    self.write(COACH_PREFIX)
                    streaming = True
                self.write(delta)
        if streaming:
            self.write("\n")


class ConsoleVoice:
    """bots/voice.py's Voice for a terminal: plain text, times in the user's zone."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def coach(self, text: str) -> str:
        return text  # Console.write takes out what could drive the terminal

    def ours(self, text: str) -> str:
        return text

    def note(self, text: str) -> str:
        return f"⚠ {text}"

    def when(self, time: UserTime) -> When:
        return time

    async def welcome(self, text: str) -> str:
        self.console.write(text + "\n\n")
        return ""

    async def duplicate(self) -> None:
        return None


def _local_user() -> str:
    try:
        return getpass.getuser()
    except OSError:
        return "local"
