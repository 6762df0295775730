"""How the dispatcher behaves; the command line fills these in."""

from __future__ import annotations

from dataclasses import dataclass

from webhook_service.domain.durations import parse_schedule
from webhook_service.domain.network import Network

DEFAULT_RETRY_SCHEDULE = "0s,5s,5m,30m,2h,5h,10h,10h"


@dataclass(frozen=True)
class DispatchSettings:
    # Requests in flight cost a socket and a few kilobytes, so the global bound sits far above what the
    # per-webhook and per-organization bounds let a few hung receivers hold.
    concurrency: int = 512
    per_webhook: int = 16
    per_organization: int = 128
    delivery_timeout: float = 15.0
    retry_schedule: tuple[float, ...] = parse_schedule(DEFAULT_RETRY_SCHEDULE)
    disable_after: float = 5 * 86400.0
    retention: float = 30 * 86400.0
    # How often an idle dispatcher looks for due deliveries it was not told about.
    poll_interval: float = 0.25
    # How long finished attempts wait to be written together.
    flush_interval: float = 0.01
    prune_interval: float = 3600.0
    # How often the secrets rotations replaced are looked for, to be erased once their overlap ended.
    erase_interval: float = 60.0
    # Ranges the request-forgery guard lets deliveries reach although they are not public.
    allow_network: tuple[Network, ...] = ()

    @property
    def lease(self) -> float:
        return lease_for(self.delivery_timeout)


def lease_for(delivery_timeout: float) -> float:
    """A claim outlives the request it covers by a wide margin, so a slow receiver never gets a duplicate."""
    return 2 * delivery_timeout + 5.0
