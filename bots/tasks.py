"""Work that outlives the event that started it (a listener's ack, a gateway event): kept in
one place, so that shutdown can let it finish, then cut it off, and failures are logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from bots.stream import CUT_WRITE_SECONDS
from core.texts import counted

log = logging.getLogger(__name__)


class Background:
    """Tasks in flight: tracked, so they can be awaited, stopped and logged."""

    def __init__(self, what: str) -> None:
        self.what = what  # for the log: "Slack", "Discord"
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self.track(asyncio.create_task(work, name=name))

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a task started elsewhere (discord.py runs each event handler in its own)."""
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task %s failed", self.what, task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until no work is left (work may start more work)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def stop(self, grace: float) -> None:
        """Let the work finish for `grace` seconds; then cancel what is left, which ends
        each reply with a note (bots/stream.py `cut_note`), and wait for those notes."""
        # asyncio.wait, not asyncio.timeout: this runs in a task being cancelled (SIGTERM),
        # and before 3.12 a timeout there raises CancelledError instead of TimeoutError.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)  # work may start more work
        if not self._tasks:
            return
        still = len(self)
        running = counted(still, f"{self.what} task")
        log.warning("%s running after %.1f s: cutting them off", running, grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.wait(set(self._tasks), timeout=CUT_WRITE_SECONDS + 1)
