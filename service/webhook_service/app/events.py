"""Publishing: an internal service's stack event, stored with a delivery for every webhook it matches."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from webhook_service.app.requests import check_request_id
from webhook_service.domain.access import Principal, check_operation, check_reach
from webhook_service.domain.errors import Reason, Violation, Violations
from webhook_service.domain.idempotency import publish_key
from webhook_service.domain.limits import MAX_EVENT_BYTES
from webhook_service.domain.model import Event
from webhook_service.domain.payloads import event_kind
from webhook_service.domain.routing import route
from webhook_service.metrics import Metrics
from webhook_service.store import events
from webhook_service.store.database import Executor
from webhook_service.store.events import Published


class Events:
    def __init__(self, store: Executor, first_delay: float, delivered: Callable[[], None], metrics: Metrics) -> None:
        self._store = store
        self._first_delay = first_delay
        # Tells this process's dispatcher that deliveries are due, rather than letting it find them at its next poll.
        self._delivered = delivered
        self._metrics = metrics

    async def publish(
        self,
        caller: Principal,
        event: Event | None,
        encoded_size: int,
        request_id: str = "",
        rejected: Sequence[Violation] = (),
    ) -> Published:
        """Answers only once the event and its deliveries are committed. `encoded_size` is the event's size
        as its door received it. `rejected` are the violations the door found reading the event, reported
        with every other one; `event` is None when they left nothing to publish."""
        check_operation(caller, "PublishEvent")
        if event is not None:
            check_reach(caller, event.organization_name)
        found = Violations(rejected)
        if encoded_size > MAX_EVENT_BYTES:
            found.add("event", f"must be at most {MAX_EVENT_BYTES} bytes", Reason.FIELD_TOO_LARGE)
        found.check(check_request_id, request_id)
        found.raise_any()
        assert event is not None, "an event the door could not read comes with violations"
        kind = event_kind(event)
        published = await self._store.admit(
            events.publish,
            event,
            kind,
            functools.partial(route, event),
            self._first_delay,
            publish_key(request_id, event),
        )
        if not published.replayed:
            self._metrics.published(kind)
        if published.deliveries:
            self._delivered()
        return published
