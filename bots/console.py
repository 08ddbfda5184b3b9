"""The terminal adapter: the same coach, locally, with no platform account.

Interactive in a terminal (a prompt, replies streamed as they are written); line by line
when stdin is piped, so scripts and tests can drive it.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from contextlib import aclosing
from typing import TextIO

from bots.commands import as_text, is_command, run_command, when_local
from core.coach import Chunk, Coach, Denied, Done, Failed, SafetyReply, Welcome
from core.models import Identity, Platform

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
        self.out.write(text)
        self.out.flush()

    async def run(self) -> None:
        if self.interactive:
            self.write("Chatting with your Momentum coach. /help for commands, Ctrl-D to quit.\n")
        while True:
            if self.interactive:
                self.write(PROMPT)
            line = await asyncio.to_thread(self.stdin.readline)
            if not line:  # end of input
                if self.interactive:
                    self.write("\nBye! Keep the momentum going.\n")
                return
            if line.strip():
                await self.handle(line.rstrip("\n"))

    async def handle(self, line: str) -> None:
        if is_command(line):
            result = await run_command(self.coach, self.identity, line)
            user = await self.coach.user(self.identity)
            self.write(as_text(result, when_local(self.coach, user)) + "\n")
            return
        streaming = False
        async with aclosing(self.coach.reply(self.identity, line)) as events:
            async for event in events:
                match event:
                    case Welcome(text=text):
                        self.write(text + "\n\n")
                    case Chunk(text=text):
                        if not streaming:
                            self.write(COACH_PREFIX)
                            streaming = True
                        self.write(text)
                    case Done():
                        self.write("\n")
                    case Failed(user_text=text):
                        self.write(("\n" if streaming else "") + f"⚠ {text}\n")
                    case Denied(text=text) | SafetyReply(text=text):
                        self.write(f"{COACH_PREFIX}{text}\n")


def _local_user() -> str:
    try:
        return getpass.getuser()
    except OSError:
        return "local"
