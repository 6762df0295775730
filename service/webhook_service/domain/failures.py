"""A bound on failed authentications per peer, so a flood of made-up tokens costs the service little."""

from __future__ import annotations

from collections import OrderedDict

from webhook_service.domain.ratelimit import Bucket

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
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def wait(self, peer: str, now: float) -> float:
        """Seconds until `peer` may try again; 0 when it may now."""
        bucket = self._buckets.get(peer)
        return 0.0 if bucket is None else bucket.wait(now)

    def failed(self, peer: str, now: float) -> None:
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = Bucket(self.rate, self._burst, self._burst, now)
        bucket.wait(now)  # refills it to now
        # A failure counts even when less than one is left: the bucket empties.
        bucket.level = max(0.0, bucket.level - 1)
        self._buckets.move_to_end(peer)
        if len(self._buckets) > self._peers:
            self._buckets.popitem(last=False)
