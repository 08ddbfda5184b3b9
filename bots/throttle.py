"""When the next write may go: the write budgets of the platforms' rate limits.

One `EditBucket` per platform bucket (Discord: a channel, and the bot's global limit; Slack:
a workspace and method), shared by every reply in it, so twenty conversations in one channel
never out-write the platform together. `next_write_at` is the pure decision, tested
exhaustively; the buckets are its shell.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

ACTIVE_BUCKETS_KEPT = 1024  # idle buckets beyond this are kept only while someone holds them

Clock = Callable[[], float]  # monotonic seconds
Sleep = Callable[[float], Awaitable[None]]


def next_write_at(
    last_write: float | None, interval: float, now: float, blocked_until: float = -math.inf
) -> float:
    """The earliest time, not before `now`, for the next write of a bucket that spaces its
    writes `interval` apart and was told by the platform to wait until `blocked_until`.

    Even spacing (not bursts) keeps edits smooth and honours "N per T" in every window of T.
    """
    earliest = now if last_write is None else max(now, last_write + interval)
    return max(earliest, blocked_until)


class EditBucket:
    """The write budget of one platform rate-limit bucket, shared by every reply in it.

    `max_calls` per `per_seconds`, spaced evenly. With `burst` > 1, that many writes may go
    back to back after a quiet spell (GCRA: any `per_seconds` then holds at most about
    `max_calls + burst - 1`), for limits counted over a window rather than as a pace.
    Waiters are served first come, first served (asyncio.Lock is FIFO), and a waiter
    re-checks after sleeping, so a `penalize` from a 429 holds back everyone already queued.
    """

    def __init__(
        self,
        max_calls: int,
        per_seconds: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        burst: int = 1,
    ) -> None:
        if max_calls < 1 or per_seconds <= 0 or burst < 1:
            raise ValueError(f"need max_calls, burst >= 1, per_seconds > 0: {max_calls}, {burst}")
        self.interval = per_seconds / max_calls
        self.burst = burst
        self.clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last: float | None = None  # the latest write, as if all had been spaced evenly
        self._blocked_until = -math.inf
        self._waiting = 0

    def _free_at(self, now: float) -> float:
        last = None if self._last is None else self._last - (self.burst - 1) * self.interval
        return next_write_at(last, self.interval, now, self._blocked_until)

    def _take(self, now: float) -> None:
        self._last = now if self._last is None else max(self._last + self.interval, now)

    async def acquire(self) -> None:
        """Wait for this caller's turn and a free slot; the write should follow at once."""
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    now = self.clock()
                    at = self._free_at(now)
                    if at <= now:
                        self._take(now)
                        return
                    await self._sleep(at - now)
        finally:
            self._waiting -= 1

    def backlog(self) -> float:
        """About how long a write queued now would wait for its slot, in seconds."""
        now = self.clock()
        return self._free_at(now) - now + self._waiting * self.interval

    def try_acquire(self) -> bool:
        """Take a slot if one is free now and nobody is queued; never waits. For writers that
        keep reading while they may not write, so that their next write carries more text."""
        now = self.clock()
        if self._lock.locked() or self._free_at(now) > now:
            return False
        self._take(now)
        return True

    def crowded(self) -> bool:
        """Someone is queued for a slot: a write that may be skipped should let them go."""
        return self._lock.locked()

    def restamp(self) -> None:
        """The write of the slot just taken goes out only now (it waited for another
        budget): space the next write from now, as the platform will count it."""
        now = self.clock()
        self._last = now if self._last is None else max(self._last, now)

    def penalize(self, retry_after: float) -> None:
        """The platform still said 429: nobody in this bucket writes for `retry_after` s."""
        self._blocked_until = max(self._blocked_until, self.clock() + max(0.0, retry_after))

    def idle(self) -> bool:
        """True when this bucket behaves exactly like a new one (so it may be forgotten)."""
        now = self.clock()
        idle_since = None if self._last is None else self._last + self.interval
        return not self._lock.locked() and (idle_since is None or idle_since <= now) and (
            self._blocked_until <= now
        )


class Buckets:
    """The buckets of one platform limit, by bucket id (a channel id, a workspace id, ...).

    A bucket is created on first use. Past `ACTIVE_BUCKETS_KEPT`, idle buckets are held only
    weakly: a reply still holding one keeps it shared, and a forgotten one equals a new one.
    """

    def __init__(
        self,
        max_calls: int,
        per_seconds: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._make: Callable[[], EditBucket] = lambda: EditBucket(
            max_calls, per_seconds, clock=clock, sleep=sleep
        )
        self._active: dict[Hashable, EditBucket] = {}
        self._resting: weakref.WeakValueDictionary[Hashable, EditBucket] = (
            weakref.WeakValueDictionary()
        )

    def get(self, key: Hashable) -> EditBucket:
        bucket = self._active.get(key) or self._resting.pop(key, None) or self._make()
        self._active[key] = bucket
        if len(self._active) > ACTIVE_BUCKETS_KEPT:
            for idle in [k for k, b in self._active.items() if b.idle()]:
                self._resting[idle] = self._active.pop(idle)
        return bucket

    def __len__(self) -> int:
        return len(self._active) + len(self._resting)


class Budget(Protocol):
    """What `render` needs of a write budget: an `EditBucket`, or a chain of them."""

    clock: Clock

    async def acquire(self) -> None: ...
    def crowded(self) -> bool: ...
    def penalize(self, retry_after: float) -> None: ...


class Budgets:
    """A write that spends from several buckets: each in turn, narrowest first (the route's
    own, then the global one), so a write queues globally only once its route is free.

    A 429 (`penalize`) holds back the first bucket only: the wider ones are paced below the
    platform's limit, so a refusal means the route's own limit was met.
    """

    def __init__(self, first: EditBucket, *wider: EditBucket) -> None:
        self._buckets = (first, *wider)
        self.clock = first.clock

    async def acquire(self) -> None:
        for bucket in self._buckets:
            await bucket.acquire()
        for bucket in self._buckets[:-1]:
            bucket.restamp()  # it waited for the wider ones: keep its spacing as sent

    def crowded(self) -> bool:
        return any(bucket.crowded() for bucket in self._buckets)

    def penalize(self, retry_after: float) -> None:
        self._buckets[0].penalize(retry_after)
