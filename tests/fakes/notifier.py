"""A test double of the platform side of the scheduler's Notifier port.

`RecordingNotifier` keeps every (user id, text) it is asked to send; it can be told to fail a
number of times first (as a platform that is down would) or to block until released.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from core.models import User


class PlatformDown(Exception):
    """What a notifier raises when the platform refuses a message."""


@dataclass
class RecordingNotifier:
    failures: int = 0  # fail this many calls before succeeding
    gate: asyncio.Event | None = None  # when set, each call waits for the event first
    sent: list[tuple[str, str]] = field(default_factory=list)
    attempts: int = 0
    keys: list[str | None] = field(default_factory=list)  # the notice key of each call

    async def notify(self, user: User, text: str, *, key: str | None = None) -> None:
        self.attempts += 1
        self.keys.append(key)
        if self.gate is not None:
            await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise PlatformDown("platform unavailable (503)")
        self.sent.append((user.id, text))

    def texts(self, user_id: str | None = None) -> list[str]:
        return [text for uid, text in self.sent if user_id is None or uid == user_id]
