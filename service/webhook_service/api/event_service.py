"""EventService: takes stack events from internal services and queues their deliveries."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grpc

from webhook_service.api.convert import event_from_proto
from webhook_service.api.requests import check_request_id
from webhook_service.domain import access
from webhook_service.domain.errors import InvalidArgument
from webhook_service.domain.idempotency import publish_key
from webhook_service.domain.limits import MAX_EVENT_BYTES
from webhook_service.domain.payloads import event_kind
from webhook_service.domain.routing import route
from webhook_service.store import events
from webhook_service.store.database import Executor
from webhooks.v1 import event_service_pb2, event_service_pb2_grpc


class EventService(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, store: Executor, first_delay: float, delivered: Callable[[], None]) -> None:
        self.store = store
        self.first_delay = first_delay
        self.delivered = delivered

    async def PublishEvent(
        self, request: event_service_pb2.PublishEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_service_pb2.PublishEventResponse:
        """Answers only once the event and its deliveries are committed."""
        if not request.HasField("event"):
            raise InvalidArgument("event", "is required")
        if request.event.ByteSize() > MAX_EVENT_BYTES:
            raise InvalidArgument("event", f"must be at most {MAX_EVENT_BYTES} bytes")
        event = event_from_proto(request.event)
        access.check_organization(event.organization_name)
        published = await self.store.admit(
            events.publish,
            event,
            event_kind(event),
            functools.partial(route, event),
            self.first_delay,
            publish_key(check_request_id(request.request_id), event),
        )
        if published.deliveries:
            self.delivered()
        return event_service_pb2.PublishEventResponse(
            event_id=published.event_id, deliveries=list(published.deliveries)
        )
