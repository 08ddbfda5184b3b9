"""Start-up checks shared by the platforms: credentials proven once, before serving, and the
network given a bounded number of tries.

A platform that rejects a token, or stays unreachable through every try, is a `SetupError`:
its message is one line that names the setting to check, and `momentum` prints it and exits 1.
Before, a bad token surfaced as an endless reconnect loop or a traceback, or (a bad Slack bot
token in HTTP mode) not at all until the first user wrote.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from core.config import Settings
from core.errors import SetupError
from core.texts import counted

log = logging.getLogger(__name__)

__all__ = ["NETWORK_ERRORS", "Retries", "SetupError", "describe", "reach"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

# Waits double from STARTUP_RETRY_SECONDS up to this, so the default five retries ride out
# about half a minute of network trouble at boot (a container whose network comes up late).
MAX_RETRY_SECONDS = 30.0
# What a network that is not there looks like from aiohttp (which every SDK here uses).
NETWORK_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True)
class Retries:
    """How often start-up tries to reach a platform, and how long it waits in between."""

    retries: int = 5
    first_delay: float = 1.0
    sleep: Sleep = asyncio.sleep

    @classmethod
    def from_settings(cls, settings: Settings) -> Retries:
        return cls(settings.startup_retries, settings.startup_retry_seconds)

    @property
    def tries(self) -> int:
        return self.retries + 1

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        for _ in range(self.retries):
            yield min(delay, MAX_RETRY_SECONDS)
            delay *= 2


def describe(error: BaseException) -> str:
    """An error in a few words for a log line (a TimeoutError's str() is empty)."""
    return str(error) or type(error).__name__


async def reach(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    hint: str,
    retries: Retries,
    passing: Callable[[Exception], bool] = lambda error: isinstance(error, NETWORK_ERRORS),
) -> T:
    """`call()`, tried again after each `passing` error (a log line each), up to `retries`;
    then a SetupError naming `what` could not be reached and `hint` (what to check).
    Other errors (a rejected token) propagate at once: trying again would not help."""
    delays = retries.delays()
    for attempt in range(1, retries.tries + 1):
        try:
            return await call()
        except Exception as error:
            if not passing(error):
                raise
            delay = next(delays, None)
            if delay is None:
                raise SetupError(
                    f"{what} is unreachable ({describe(error)}) after "
                    f"{counted(attempt, 'try', 'tries')}: {hint}."
                ) from error
            log.warning(
                "%s unreachable (try %d of %d): %s; trying again in %.1fs",
                what,
                attempt,
                retries.tries,
                describe(error),
                delay,
            )
            await retries.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
