"""The console as a person at a terminal meets it: a real `momentum chat` in a pseudo-terminal,
keys sent as a terminal sends them (arrows, Ctrl-C, Ctrl-D), the screen read back."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import sys
import termios
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, StreamError
from tests.test_console import CLEAN_ENV

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

PROMPT = "you>"  # prompt_toolkit may draw the space after it as a cursor move
UP, ENTER, CTRL_C, CTRL_D = "\x1b[A", "\r", "\x03", "\x04"
SGR = re.compile(r"\x1b\[([0-9;]*)m")
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
REPLY = "Here is **the plan**: run `3 times`.\n\n" + " ".join(f"step{i}" for i in range(60))


class Terminal:
    """A process on a pseudo-terminal: what it wrote, and keys to send it."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process, self.master = process, master
        self.raw = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.raw += data

    @property
    def output(self) -> str:
        return self.raw.decode(errors="replace")

    @property
    def text(self) -> str:
        """What was written, without the escape sequences that drew it."""
        return ESCAPES.sub("", self.output)

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def shows(self, fragment: str, *, after: int = 0, within: float = 20.0) -> int:
        """Wait until `fragment` appears past `after` in the text; where it ends."""
        deadline = time.monotonic() + within
        while (at := self.text.find(fragment, after)) == -1:
            if time.monotonic() > deadline or self.process.returncode is not None:
                raise AssertionError(f"{fragment!r} not shown; the screen:\n{self.text[-2000:]}")
            await asyncio.sleep(0.05)
        return at + len(fragment)

    async def exit_code(self, within: float = 20.0) -> int:
        return await asyncio.wait_for(self.process.wait(), within)

    async def quit(self) -> None:
        self.send(CTRL_D)
        assert await self.exit_code() == 0
        assert "Traceback" not in self.text


@asynccontextmanager
async def chat_in_terminal(
    tmp_path: Path, fake: FakeAnthropic, **env: str
) -> AsyncIterator[Terminal]:
    """`momentum chat` on a 100x40 pseudo-terminal, once it shows its prompt."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "chat",
        cwd=tmp_path,
        env={
            **CLEAN_ENV,
            "PYTHONPATH": os.getcwd(),
            "TERM": "xterm-256color",
            # prompt_toolkit asks a terminal where its cursor is; this one will not answer.
            "PROMPT_TOOLKIT_NO_CPR": "1",
            "ANTHROPIC_API_KEY": "k",
            "ANTHROPIC_BASE_URL": fake.base_url,
            "XDG_STATE_HOME": str(tmp_path / "state"),
            **env,
        },
        stdin=slave,
        stdout=slave,
        stderr=slave,
        # Its own session with the pty as controlling terminal: Ctrl-C there is SIGINT.
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    terminal = Terminal(process, master)
    try:
        await terminal.shows(PROMPT)
        yield terminal
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        os.close(master)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(reply=REPLY, ttft=0.2, token_delay=0.03) as fake:
        yield fake


async def test_a_reply_is_drawn_from_markdown_in_colour(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    async with chat_in_terminal(tmp_path, fake) as terminal:
        terminal.send("plan my week" + ENTER)
        end = await terminal.shows("step59")
        await terminal.shows(PROMPT, after=end)
        reply = terminal.text[terminal.text.find("coach>") :]
        assert "Here is the plan: run 3 times." in reply  # no ** or backticks
        assert _colours(terminal.output)  # the inline code has a colour
        await terminal.quit()


async def test_no_colour_with_no_color(tmp_path: Path, fake: FakeAnthropic) -> None:
    async with chat_in_terminal(tmp_path, fake, NO_COLOR="1") as terminal:
        terminal.send("plan my week" + ENTER)
        await terminal.shows("step59")
        assert "Here is the plan" in terminal.text
        assert not _colours(terminal.output)
        await terminal.quit()


async def test_arrows_edit_the_line_and_up_recalls_the_last_one(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    async with chat_in_terminal(tmp_path, fake) as terminal:
        terminal.send("/goal add Run 5k" + "\x1b[D" * 2 + "1" + ENTER)  # Left twice, then "1"
        end = await terminal.shows("Saved: Run 15k")
        terminal.send(UP)
        await terminal.shows("/goal add Run 15k", after=end)
        terminal.send(ENTER)
        end = await terminal.shows("Saved: Run 15k", after=end)  # sent again, as edited
        terminal.send("/goals" + ENTER)
        await terminal.shows("2. Run 15k", after=end)
        assert "^[[" not in terminal.text and not fake.requests  # no key codes reached the coach
        await terminal.quit()


async def test_ctrl_c_stops_a_reply_and_keeps_what_was_shown(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    async with chat_in_terminal(tmp_path, fake) as terminal:
        terminal.send("plan my week" + ENTER)
        end = await terminal.shows("step3")
        terminal.send(CTRL_C)
        end = await terminal.shows("Stopped.", after=end)
        end = await terminal.shows(PROMPT, after=end)
        assert "step59" not in terminal.text
        terminal.send("/history" + ENTER)
        await terminal.shows("[incomplete]", after=end)
        terminal.send(CTRL_C)  # at the prompt: quit
        end = await terminal.shows("Bye!", after=end)
        assert await terminal.exit_code() == 0
        assert "Traceback" not in terminal.text


async def test_log_lines_go_to_the_file_named_at_start(tmp_path: Path, fake: FakeAnthropic) -> None:
    fake.enqueue(StreamError(after=3))  # the reply is cut: logged as a warning
    async with chat_in_terminal(tmp_path, fake) as terminal:
        log = tmp_path / "state" / "momentum" / "console.log"
        assert f"logs      {log}" in terminal.text
        terminal.send("plan my week" + ENTER)
        end = await terminal.shows("stopped in the middle")
        await terminal.shows(PROMPT, after=end)
        assert "WARNING" not in terminal.text
        assert "WARNING" in log.read_text()
        await terminal.quit()


def _colours(output: str) -> list[str]:
    """The colour codes among the SGR sequences (bold and italic are not colours)."""
    codes = (code for params in SGR.findall(output) for code in params.split(";") if code)
    return [c for c in codes if c in ("38", "48") or 30 <= int(c) <= 37 or 90 <= int(c) <= 97]
