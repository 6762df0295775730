"""Token buckets: a steady rate with room for bursts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Bucket:
    rate: float
    burst: float
    level: float
    updated: float

    def wait(self, now: float) -> float:
        """0 when one may be taken now; otherwise the seconds until one may."""
        self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.level >= 1 else (1 - self.level) / self.rate

    def take(self, now: float) -> float:
        """Takes one if it may; returns `wait`'s answer."""
        wait = self.wait(now)
        if wait == 0:
            self.level -= 1
        return wait


class RateLimiter:
    """One bucket per key, `rate` requests a second with bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, Bucket] = {}

    def wait_needed(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(self.rate, max(1.0, self.rate), max(1.0, self.rate), now)
        return bucket.take(now)
