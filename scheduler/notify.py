"""How the scheduler reaches users: the Notifier port, the registry, and retried delivery.

The adapters implement `Notifier` (Slack: a DM through the Web API; Discord: a DM through
REST), so no gateway connection is needed to notify. The composition root builds a
`Notifiers` registry from the configured platforms and hands it to the scheduler; a user on a
platform without a notifier (the console) is skipped with a log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol

from core.config import Settings
from core.models import Platform, User

log = logging.getLogger(__name__)

# Waits between tries of one notification: 4 tries over about 36 seconds, enough to ride out
# a platform blip or a rate limit, short enough that the news is still news.
RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0)

Sleep = Callable[[float], Awaitable[None]]


class Notifier(Protocol):
    async def notify(self, user: User, text: str) -> None:
        """Send `text` to the user on their platform (a direct message).

        Raise on any failure (platform down, DMs closed, rate limited): the caller retries and
        logs. `text` is plain text with light Markdown (`*bold*`, bullets), at most ~2,000
        characters.
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
        told = ", ".join(on) if on else "nobody"
        return f"notifying users on {told}; no notifier for {', '.join(off) or 'none'}" + (
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


class Delivery:
    """Sends one notification with retries and backoff; never raises.

    Each scheduler job awaits its own delivery, so a slow retry delays only that job's next
    step, never other users' jobs. The window transition has already been claimed when this
    runs, so a notification that still fails after the last try is logged and dropped: a user
    is told at most once, never twice.
    """

    def __init__(
        self,
        notifiers: Notifiers,
        *,
        delays: tuple[float, ...] = RETRY_DELAYS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.notifiers = notifiers
        self._delays = delays
        self.sleep = sleep

    async def send(self, user: User, text: str) -> bool:
        """True when the platform accepted the message."""
        platform = user.identity.platform
        notifier = self.notifiers.get(platform)
        if notifier is None:
            log.info(
                "no %s notifier: user %s not notified (%s)",
                platform.value,
                user.id,
                text.splitlines()[0][:60],
            )
            return False
        tries = len(self._delays) + 1
        for attempt in range(1, tries + 1):
            try:
                await notifier.notify(user, text)
                return True
            except Exception as error:
                if attempt == tries:
                    log.error(
                        "notifying user %s on %s failed %d times, giving up: %r",
                        user.id,
                        platform.value,
                        tries,
                        error,
                    )
                    return False
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
        return False  # pragma: no cover - the loop always returns
