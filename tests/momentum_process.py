"""`python -m bots` as a real child process, for tests/test_processes.py and bench/: started
with a clean environment (only what the caller sets), its log read line by line as written."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MOMENTUM = [sys.executable, "-m", "bots"]
CLEAN_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(
        (
            "ANTHROPIC_", "SLACK_", "DISCORD_", "DATABASE_", "PERSONA_", "SCHEDULER_", "LOG_",
            "STARTUP_", "MEETING_", "DEFAULT_TIMEZONE", "WEB_", "METRICS_",
        )
    )
}
IMPORT_TIMES = [sys.executable, "-X", "importtime", "-m", "bots"]  # logs each module imported
STARTUP_SECONDS = 10.0  # a cold interpreter importing every SDK; usually ~2 s
STOP_SECONDS = 5.0


class Momentum:
    """One running `python -m bots`, its log (stderr) read line by line as it is written."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace"))

    async def wait_for_log(self, pattern: str, within: float = STARTUP_SECONDS) -> re.Match[str]:
        """The first log match of `pattern`; fails early, with the log, if the process dies."""

        def found() -> re.Match[str] | None:
            if self.process.returncode is not None:
                raise AssertionError(f"momentum exited ({self.process.returncode}):\n{self.log}")
            return re.search(pattern, self.log)

        match: re.Match[str] = await eventually(found, within, f"log {pattern!r}", self)
        return match

    async def exited(self, within: float = STARTUP_SECONDS, *, why: str = "") -> int:
        """The exit code of a process that ends by itself (or after `why`), within `within`;
        its whole log read."""
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(f"no exit {within}s after {why or 'start'}:\n{self.log}") from None
        await self._reader
        return code

    async def terminate(self, within: float = STOP_SECONDS) -> int:
        """SIGTERM, as Heroku-style platforms stop a dyno; the exit code, within `within`."""
        self.process.send_signal(signal.SIGTERM)
        return await self.exited(within, why="SIGTERM")


def imported_packages(log: str) -> set[str]:
    """The top-level packages a process started with IMPORT_TIMES imported, read from its log."""
    return set(re.findall(r"^import time:.*\|\s+([A-Za-z_]\w*)(?:\.\S*)?\s*$", log, re.M))


async def eventually(
    predicate: Callable[[], Any], within: float, what: str, process: Momentum | None = None
) -> Any:
    """Poll `predicate` until truthy: the fakes see a process's effects only over the wire."""
    deadline = time.monotonic() + within
    while not (result := predicate()):
        if time.monotonic() > deadline:
            log = f"; log:\n{process.log}" if process is not None else ""
            raise AssertionError(f"not within {within}s: {what}{log}")
        await asyncio.sleep(0.05)
    return result


@asynccontextmanager
async def momentum(
    command: str, cwd: Path, env: dict[str, str], *, launcher: Sequence[str] = MOMENTUM
) -> AsyncIterator[Momentum]:
    """Start `momentum <command>` (through `launcher`, e.g. a profiler that runs `-m bots`);
    killed on the way out if a test left it running."""
    process = await asyncio.create_subprocess_exec(
        *launcher,
        command,
        cwd=cwd,
        env={**CLEAN_ENV, "PYTHONPATH": str(REPO), "LOG_LEVEL": "INFO", **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Momentum(process)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
