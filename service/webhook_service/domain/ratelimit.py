"""Token buckets: a steady rate with room for bursts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Bucket:
    rate: float
    burst: float
    level: float
    updated: float

    def take(self, now: float) -> float:
        """0 when a request may go now; otherwise the seconds until one may."""
        self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


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
