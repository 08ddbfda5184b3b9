"""How many requests one token may make: a token bucket, pure, on the caller's clock."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Bucket:
    capacity: float
    per_second: float
    level: float = field(default=-1.0)  # -1: full, at the first take
    at: float = 0.0

    def take(self, now: float) -> float:
        """Take one request: 0 if allowed, else the seconds until one would be."""
        if self.level < 0:
            self.level, self.at = self.capacity, now
        self.level = min(self.capacity, self.level + (now - self.at) * self.per_second)
        self.at = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.per_second


class Limits:
    """One bucket per key (a token's digest); buckets full again are forgotten."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.capacity, self.per_second = float(burst), per_minute / 60
        self._buckets: dict[str, Bucket] = {}

    def take(self, key: str, now: float) -> float:
        bucket = self._buckets.setdefault(key, Bucket(self.capacity, self.per_second))
        wait = bucket.take(now)
        if len(self._buckets) > 10_000:  # bound memory: drop those that have refilled
            self._forget_full(now)
        return wait

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.level + (now - bucket.at) * bucket.per_second >= bucket.capacity:
                del self._buckets[key]
