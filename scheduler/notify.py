"""How the scheduler reaches users: the Notifier port, the registry, and retried delivery.

The adapters implement `Notifier` (Slack: a DM through the Web API; Discord: a DM through
REST), so no gateway connection is needed to notify. The composition root builds a
`Notifiers` registry from the configured platforms and hands it to the scheduler; a user on a
platform without a notifier (the console) is skipped with a log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from core.config import Settings
from core.models import Platform, User
from core.texts import counted

log = logging.getLogger(__name__)

# Waits between the quick tries of one send (NOTIFY_RETRY_SECONDS): 4 tries over about 36
# seconds, enough to ride out a platform blip or a rate limit; the outbox tries again later.
RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0)
# One try of a platform call: long enough for a slow API, short enough to bound a send.
TRY_TIMEOUT_SECONDS = 30.0

Sleep = Callable[[float], Awaitable[None]]


class Notifier(Protocol):
    async def notify(self, user: User, text: str, *, key: str | None = None) -> None:
        """Send `text` to the user on their platform (a direct message).

        Raise on any failure (platform down, DMs closed, rate limited): the caller retries and
        logs. `text` is plain text with light Markdown (`*bold*`, bullets), at most ~2,000
        characters. `key` is the same for every try of one notice: a platform that can refuse
        a duplicate by it (Discord's message nonce) should pass it on.
        """
        ...


# An adapter's factory: the Web API notifier for these settings, None when not configured.
NotifierFactory = Callable[[Settings], "Notifier | None"]


class Notifiers:
    """Platform -> Notifier. An adapter plugs in with `register(Platform.SLACK, notifier)`,
    or the composition root builds the lot with `from_factories`.

    A notifier may also have `async def aclose()`; `aclose()` here calls it on shutdown. And
    `async def verify()`, which checks its credentials and raises when they cannot work;
    `verify()` here calls each in turn at start, and lets the first failure through.
    """

    def __init__(self, notifiers: Mapping[Platform, Notifier] | None = None) -> None:
        self._by_platform: dict[Platform, Notifier] = dict(notifiers or {})

    @classmethod
    def from_factories(
        cls, settings: Settings, factories: Mapping[Platform, NotifierFactory]
    ) -> Notifiers:
        """One notifier per configured platform; a factory that fails is logged and skipped."""
        notifiers = cls()
        for platform, factory in factories.items():
            try:
                notifier = factory(settings)
            except Exception:
                log.exception("building the %s notifier failed", platform.value)
                continue
            if notifier is not None:
                notifiers.register(platform, notifier)
        return notifiers

    def register(self, platform: Platform, notifier: Notifier) -> None:
        self._by_platform[platform] = notifier

    def get(self, platform: Platform) -> Notifier | None:
        return self._by_platform.get(platform)

    def __iter__(self) -> Iterator[Platform]:
        return iter(self._by_platform)

    def __len__(self) -> int:
        return len(self._by_platform)

    def describe(self) -> str:
        """One line for the startup log: who can be notified and who cannot."""
        on = [p.value for p in Platform if p in self._by_platform]
        off = [p.value for p in Platform if p not in self._by_platform]
        if not on:
            return "no platform to send window messages through (users see windows in /access)"
        return f"notifying users on {', '.join(on)}; no notifier for {', '.join(off) or 'none'}" + (
            " (users there get no window messages)" if off else ""
        )

    async def verify(self) -> None:
        for notifier in self._by_platform.values():
            verify = getattr(notifier, "verify", None)
            if verify is not None:
                await verify()

    async def aclose(self) -> None:
        for platform, notifier in self._by_platform.items():
            close = getattr(notifier, "aclose", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.exception("closing the %s notifier failed", platform.value)


class Sent(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # the platform refused every quick try: worth trying again later
    UNREACHABLE = "unreachable"  # no notifier for the user's platform in this process


@dataclass(frozen=True)
class Outcome:
    sent: Sent
    error: str | None = None  # the last failure, for the log and the outbox


class Delivery:
    """Sends one notification with a few quick tries; never raises.

    The quick tries ride out a blip or a rate limit within seconds; what still fails is the
    outbox's to try again later (scheduler.outbox), from any process, across restarts. Each
    try is bounded by `try_timeout`, so a send never takes longer than `longest_send`: the
    outbox's claim on a notice outlasts it. Each scheduler job awaits its own delivery, so a
    slow platform delays only that job, never other users' messages.
    """

    def __init__(
        self,
        notifiers: Notifiers,
        *,
        delays: Sequence[float] = RETRY_DELAYS,
        try_timeout: float = TRY_TIMEOUT_SECONDS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.notifiers = notifiers
        self._delays = tuple(delays)
        self._try_timeout = try_timeout
        self.sleep = sleep

    @property
    def longest_send(self) -> timedelta:
        """The most one `send` can take: every try timing out, plus the waits between."""
        tries = len(self._delays) + 1
        return timedelta(seconds=sum(self._delays) + tries * self._try_timeout)

    async def send(self, user: User, text: str, *, key: str | None = None) -> Outcome:
        """Try to send `text`; `key` names the notice for platforms that dedupe on it."""
        platform = user.identity.platform
        notifier = self.notifiers.get(platform)
        if notifier is None:
            log.info(
                "no %s notifier: user %s not notified (%s)",
                platform.value,
                user.id,
                text.splitlines()[0][:60],
            )
            return Outcome(Sent.UNREACHABLE, f"no {platform.value} notifier")
        tries = len(self._delays) + 1
        for attempt in range(1, tries + 1):
            try:
                async with asyncio.timeout(self._try_timeout):
                    await notifier.notify(user, text, key=key)
                return Outcome(Sent.DELIVERED)
            except Exception as error:
                if attempt == tries:
                    log.warning(
                        "notifying user %s on %s failed %s in a row: %r",
                        user.id,
                        platform.value,
                        counted(tries, "time"),
                        error,
                    )
                    return Outcome(Sent.FAILED, repr(error)[:500])
                delay = self._delays[attempt - 1]
                log.warning(
                    "notifying user %s on %s failed (try %d of %d), retrying in %ss: %r",
                    user.id,
                    platform.value,
                    attempt,
                    tries,
                    delay,
                    error,
                )
                await self.sleep(delay)
        raise AssertionError("unreachable: the loop always returns")  # pragma: no cover
