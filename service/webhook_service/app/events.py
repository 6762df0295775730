"""Publishing: an internal service's stack event, stored with a delivery for every webhook it matches; and
its dry run."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from webhook_service.app.requests import check_request_id
from webhook_service.domain.access import Principal, check_operation, check_reach
from webhook_service.domain.errors import Reason, Violation, Violations
from webhook_service.domain.filters import Match, match
from webhook_service.domain.idempotency import publish_key
from webhook_service.domain.limits import MAX_EVENT_BYTES
from webhook_service.domain.model import Event, Webhook
from webhook_service.domain.payloads import event_kind
from webhook_service.domain.routing import route
from webhook_service.metrics import Metrics
from webhook_service.store import events, webhooks
from webhook_service.store.database import Executor, Group
from webhook_service.store.events import Publication, Published

# The most webhooks of other stacks than the event's a dry run lists: an organization's stacks are not
# bounded as the webhooks of one stack are, and these only ever answer OTHER_STACK.
MAX_OTHER_STACK_WEBHOOKS = 1000
# The most publishes committed together: enough that a store busy with one group gathers all that arrive
# meanwhile at thousands a second, few enough that one group's transaction stays short.
MAX_PUBLISH_GROUP = 128


@dataclass(frozen=True)
class MatchReport:
    """Each webhook a dry run looked at, by name, with whether it would get the event."""

    matches: list[tuple[Webhook, Match]]
    # Webhooks of other stacks were left out past MAX_OTHER_STACK_WEBHOOKS.
    other_stacks_truncated: bool


def _checked_event(
    caller: Principal, event: Event | None, encoded_size: int, rejected: Sequence[Violation], request_id: str = ""
) -> Event:
    """The event a publish, or its dry run, takes: in reach of the caller, within the size limit, with a
    valid request_id. `rejected` are the violations the door found reading the event, reported with every
    other one; `event` is None when they left nothing to publish."""
    if event is not None:
        check_reach(caller, event.organization_name)
    found = Violations(rejected)
    if encoded_size > MAX_EVENT_BYTES:
        found.add("event", f"must be at most {MAX_EVENT_BYTES} bytes", Reason.FIELD_TOO_LARGE)
    found.check(check_request_id, request_id)
    found.raise_any()
    assert event is not None, "an event the door could not read comes with violations"
    return event


class Events:
    def __init__(self, store: Executor, first_delay: float, delivered: Callable[[], None], metrics: Metrics) -> None:
        self._store = store
        self._first_delay = first_delay
        # Tells this process's dispatcher that deliveries are due, rather than letting it find them at its next poll.
        self._delivered = delivered
        self._metrics = metrics
        self._publishing = Group(store, events.publish_all, MAX_PUBLISH_GROUP)

    async def publish(
        self,
        caller: Principal,
        event: Event | None,
        encoded_size: int,
        request_id: str = "",
        rejected: Sequence[Violation] = (),
    ) -> Published:
        """Answers only once the event and its deliveries are committed, with those of the publishes
        that came meanwhile. `encoded_size` is the event's size as its door received it."""
        check_operation(caller, "PublishEvent")
        event = _checked_event(caller, event, encoded_size, rejected, request_id)
        kind = event_kind(event)
        published = await self._publishing.submit(
            Publication(event, kind, functools.partial(route, event), self._first_delay, publish_key(request_id, event))
        )
        if not published.replayed:
            self._metrics.published(kind)
        if published.deliveries:
            self._delivered()
        return published

    async def test_match(
        self, caller: Principal, event: Event | None, encoded_size: int, rejected: Sequence[Violation] = ()
    ) -> MatchReport:
        """A dry run of `publish`, which stores and sends nothing: every webhook of the event's organization
        and of its stacks, by name, with whether publishing would give it the event, by the rule publishing
        routes by. It shows what ListWebhooks shows, so the roles that may list may call it."""
        check_operation(caller, "TestEventMatch")
        event = _checked_event(caller, event, encoded_size, rejected)
        found, truncated = await self._store.admit(webhooks.of_organization, event.parent, MAX_OTHER_STACK_WEBHOOKS)
        ordered = sorted(found, key=lambda webhook: webhook.name)
        return MatchReport([(webhook, match(webhook, event)) for webhook in ordered], truncated)
