"""The console's terminal: reading the user's lines, showing the coach's words.

A real terminal (stdin and stdout both ttys) gets prompt_toolkit's line editing and history,
and the coach's Markdown rendered by rich, in colour unless NO_COLOR is set or the terminal
cannot show it (rich reads both). Anything else (a pipe, a file, a test) is read line by
line and written as plain text: Markdown already reads as text, and a script wants the
words, not escape codes.
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from core.text import without_controls

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from rich.console import Console as RichConsole
    from rich.live import Live
    from rich.markdown import Markdown
    from rich.text import Text

PROMPT = "you> "
COACH_PREFIX = "coach> "
REFRESH_SECONDS = 0.05  # how often a streaming reply is redrawn, at most


class Gone(Exception):
    """The output went away (`momentum chat | head`): stop quietly."""


class Input(Protocol):
    async def line(self) -> str | None:
        """The user's next line (without its newline), or None when they quit."""

    def quiet(self) -> AbstractContextManager[None]:
        """While a reply streams: keys typed meanwhile are kept for the next prompt, not
        echoed into the reply (nor Ctrl-C's "^C", which would shift rich's live area)."""


class Screen(Protocol):
    def say(self, text: str) -> None:
        """Our own words (command answers), shown as they are."""

    def note(self, text: str) -> None:
        """A warning or a failure, set apart from the coach's words."""

    def markdown(self, text: str) -> None:
        """The coach's words, whole (the welcome)."""

    def reply(self) -> ReplyView:
        """A place for one streaming reply."""


class ReplyView(Protocol):
    def add(self, delta: str) -> None: ...
    def end(self) -> None:
        """The reply is over (whole, stopped or failed): show what it has, leave the line."""


# Input


class PipedInput:
    """Lines from a pipe or file, read in a daemon thread: a blocked read must not keep
    Ctrl-C from exiting (`asyncio.to_thread` would hold the process until Enter)."""

    def __init__(self, stdin: TextIO, prompt: Callable[[str], None] | None = None) -> None:
        self.stdin, self.prompt = stdin, prompt  # prompt: for a person typing, unseen

    async def line(self) -> str | None:
        if self.prompt is not None:
            self.prompt(PROMPT)
        text = await self._read()
        return text.rstrip("\n") if text else None

    def quiet(self) -> AbstractContextManager[None]:
        return nullcontext()

    async def _read(self) -> str:
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


class PromptInput:
    """prompt_toolkit's line editor: arrows, Home/End, history kept in a file across runs."""

    def __init__(self, history: Path | None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        self.session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)) if history else InMemoryHistory()
        )

    async def line(self) -> str | None:
        try:
            return await self.session.prompt_async(PROMPT)
        except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the prompt: quit
            return None

    @contextmanager
    def quiet(self) -> Iterator[None]:
        import termios

        fd = sys.stdin.fileno()
        try:
            before = termios.tcgetattr(fd)
        except (termios.error, OSError):
            yield
            return
        silent = list(before)
        silent[3] &= ~(termios.ECHO | termios.ECHOCTL)  # lflags
        termios.tcsetattr(fd, termios.TCSANOW, silent)
        try:
            yield
        finally:
            termios.tcsetattr(fd, termios.TCSANOW, before)


# Screens


class PlainScreen:
    """Text as it is, for pipes and files (and for terminals that asked for nothing else)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> None:
        # The model's words reach a terminal here: no escape sequence may drive it.
        try:
            self.out.write(without_controls(text))
            self.out.flush()
        except BrokenPipeError as error:
            raise Gone from error

    def say(self, text: str) -> None:
        self.write(text + "\n")

    def note(self, text: str) -> None:
        self.write(f"⚠ {text}\n")

    def markdown(self, text: str) -> None:
        self.write(text + "\n\n")

    def reply(self) -> ReplyView:
        return PlainReply(self)


class PlainReply:
    def __init__(self, screen: PlainScreen) -> None:
        self.screen, self.started = screen, False

    def add(self, delta: str) -> None:
        if not self.started:
            self.screen.write(COACH_PREFIX)
            self.started = True
        self.screen.write(delta)

    def end(self) -> None:
        if self.started:
            self.screen.write("\n")
            self.started = False


class RichScreen:
    """A terminal: the coach's Markdown rendered, our own words plain, notes in yellow."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console as RichConsole

        # No emoji codes, markup or highlighting: only Markdown is interpreted, and only in
        # the coach's words.
        self.console: RichConsole = RichConsole(
            file=out, emoji=False, markup=False, highlight=False
        )

    def say(self, text: str) -> None:
        self.console.print(without_controls(text))

    def note(self, text: str) -> None:
        self.console.print(f"⚠ {without_controls(text)}", style="yellow")

    def markdown(self, text: str) -> None:
        self.console.print(rendered(text))
        self.console.print()

    def reply(self) -> ReplyView:
        return LiveReply(self.console)


def rendered(text: str) -> Markdown:
    from markdown_it import MarkdownIt
    from rich.markdown import Markdown

    text = without_controls(text)
    # Links as "text (url)": the reader sees where a link goes before following it.
    markdown = Markdown(text, hyperlinks=False)
    # rich drops raw HTML it cannot draw; a terminal shows "<goal>" or "<b>" as written.
    parser = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])
    markdown.parsed = parser.parse(text)
    return markdown


class LiveReply:
    """A reply rendered as it streams. Finished blocks are printed for good above a live
    area that redraws only the block being written: the live area stays small, so it never
    scrolls off the screen (where rich could no longer redraw it)."""

    def __init__(self, console: RichConsole) -> None:
        self.console = console
        self.text = ""
        self.shown = 0  # text[:shown] is printed for good
        self.live: Live | None = None
        self.drawn_at = 0.0

    def add(self, delta: str) -> None:
        if self.live is None:
            from rich.live import Live

            self.console.print("coach>", style="bold magenta")
            self.live = Live(console=self.console, auto_refresh=False, transient=True)
            self.live.start()
        self.text += delta
        blocks, self.shown = finished_blocks(self.text, self.shown)
        for block in blocks:
            self.live.console.print(self.block(block))
            self.live.console.print()
        now = asyncio.get_running_loop().time()
        if blocks or now - self.drawn_at >= REFRESH_SECONDS:
            self.live.update(self.block(self.text[self.shown :]), refresh=True)
            self.drawn_at = now

    def end(self) -> None:
        if self.live is None:
            return
        self.live.update("", refresh=True)
        self.live.stop()
        self.live = None
        if tail := self.text[self.shown :].strip():
            self.console.print(self.block(tail))
        self.console.print()

    def block(self, markdown: str) -> Text:
        """One block rendered, without the blank lines rich puts around some (lists): the
        blocks are printed one by one, with one blank line between them."""
        from rich.console import Console as RichConsole
        from rich.text import Text

        # A scratch console like ours: capturing on ours would tangle with its live display.
        scratch = RichConsole(
            file=io.StringIO(),
            width=self.console.width,
            color_system="auto" if self.console.color_system else None,
            force_terminal=self.console.is_terminal,
            no_color=self.console.no_color,
            emoji=False,
            markup=False,
            highlight=False,
        )
        with scratch.capture() as captured:
            scratch.print(rendered(markdown))
        return Text.from_ansi(captured.get().strip("\n"), no_wrap=True)


def finished_blocks(text: str, start: int) -> tuple[list[str], int]:
    """The Markdown blocks of `text[start:]` that are finished, and where the rest begins.

    A block is finished at a blank line outside a code fence, once the next line has begun
    and does not continue it (an indented line may belong to a list item above). `start`
    must be such a boundary (0 is). Nothing is dropped: the blocks and the rest, joined,
    are `text[start:]` less the blank lines between blocks.
    """
    blocks: list[str] = []
    block_start = position = start
    in_fence = has_content = False
    blank_at: int | None = None  # where the blank lines after the block's content begin

    def next_line_begins(line: str) -> None:
        nonlocal block_start, blank_at
        if blank_at is not None and not line[:1].isspace():
            blocks.append(text[block_start:blank_at].strip("\n"))
            block_start = position
        blank_at = None

    while (end := text.find("\n", position)) != -1:
        line = text[position:end]
        if in_fence or line.strip():
            if not in_fence:
                next_line_begins(line)
            if line.lstrip(" ").startswith(("```", "~~~")) and len(line) - len(line.lstrip()) < 4:
                in_fence = not in_fence
            has_content = True
        elif has_content and blank_at is None:
            blank_at = position
        position = end + 1
    rest = text[position:]
    if rest.strip() and not in_fence:  # the line being written starts the next block
        next_line_begins(rest)
    return blocks, block_start


def open_terminal(
    stdin: TextIO, stdout: TextIO, history: Path | None
) -> tuple[Input, Screen, bool]:
    """The input, the screen, and whether a person is typing (stdin is a terminal)."""
    typing, seeing = _isatty(stdin), _isatty(stdout)
    if typing and seeing:
        return PromptInput(history), RichScreen(stdout), True
    if seeing:
        return PipedInput(stdin), RichScreen(stdout), False
    screen = PlainScreen(stdout)
    return PipedInput(stdin, screen.write if typing else None), screen, typing


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
