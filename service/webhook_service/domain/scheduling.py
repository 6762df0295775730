"""Which due deliveries a dispatcher takes when it cannot take them all: a fair share for everyone.

Slots go round-robin, one at a time, to organizations and within each to its webhooks, those with the
fewest requests in flight first. So a webhook or an organization whose receivers hang holds at most its
own bound, and whatever capacity is left is shared evenly by the rest instead of going to the biggest
backlog.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Capacity:
    """What one dispatcher may still start: `free` requests in all, within its per-webhook and
    per-organization bounds given what it already has in flight."""

    free: int
    per_webhook: int
    per_organization: int
    busy_webhooks: Mapping[int, int] = field(default_factory=dict)
    busy_organizations: Mapping[str, int] = field(default_factory=dict)

    def room(self, webhook: int, organization: str) -> int:
        """The most a webhook could be given now, before sharing with others."""
        return max(
            0,
            min(
                self.free,
                self.per_webhook - self.busy_webhooks.get(webhook, 0),
                self.per_organization - self.busy_organizations.get(organization, 0),
            ),
        )


@dataclass(frozen=True)
class Candidates:
    """A webhook's due deliveries, oldest first."""

    webhook: int
    organization: str
    deliveries: Sequence[int]


def share(capacity: Capacity, candidates: Sequence[Candidates]) -> list[int]:
    """The deliveries to start now, at most `capacity.free`: each round gives one to every organization
    that can take one, from its webhooks in turn."""
    webhooks = Counter(capacity.busy_webhooks)
    organizations = Counter(capacity.busy_organizations)
    grouped: dict[str, list[Candidates]] = {}
    for found in candidates:
        if found.deliveries:
            grouped.setdefault(found.organization, []).append(found)
    turns = {
        organization: deque(sorted(hooks, key=lambda c: webhooks[c.webhook]))
        for organization, hooks in sorted(grouped.items(), key=lambda item: organizations[item[0]])
    }
    taken: Counter[int] = Counter()
    chosen: list[int] = []
    while turns:
        for organization in list(turns):
            if len(chosen) == capacity.free:
                return chosen
            hooks = turns[organization]
            while hooks and organizations[organization] < capacity.per_organization:
                hook = hooks.popleft()
                if taken[hook.webhook] < len(hook.deliveries) and webhooks[hook.webhook] < capacity.per_webhook:
                    chosen.append(hook.deliveries[taken[hook.webhook]])
                    taken[hook.webhook] += 1
                    webhooks[hook.webhook] += 1
                    organizations[organization] += 1
                    hooks.append(hook)
                    break
            else:
                del turns[organization]
    return chosen
