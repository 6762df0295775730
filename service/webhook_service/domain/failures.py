"""A bound on failed authentications per peer, so a flood of made-up tokens costs the service little."""

from __future__ import annotations

from collections import OrderedDict

# Per peer: enough for a person mistyping, or a client with a revoked token retrying a few times.
FAILURES_PER_SECOND = 10.0
FAILURE_BURST = 20.0
# Peers remembered at once; the least recently failing are forgotten first, so memory stays bounded.
MAX_PEERS = 10_000


class FailureLimit:
    """Each peer has a bucket of `burst` failures refilling at `rate` a second; an empty bucket refuses the
    peer's next calls before their tokens are even looked up."""

    def __init__(self, rate: float = FAILURES_PER_SECOND, burst: float = FAILURE_BURST, peers: int = MAX_PEERS) -> None:
        self.rate = rate
        self._burst = burst
        self._peers = peers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, peer: str, now: float) -> float:
        """Seconds until `peer` may try again; 0 when it may now."""
        level = self._level(peer, now)
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def failed(self, peer: str, now: float) -> None:
        self._buckets[peer] = (max(0.0, self._level(peer, now) - 1), now)
        self._buckets.move_to_end(peer)
        if len(self._buckets) > self._peers:
            self._buckets.popitem(last=False)

    def _level(self, peer: str, now: float) -> float:
        held = self._buckets.get(peer)
        if held is None:
            return self._burst
        level, updated = held
        return min(self._burst, level + (now - updated) * self.rate)
