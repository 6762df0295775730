"""EventService: stack events from internal services, translated onto the application."""

from __future__ import annotations

from typing import Any

import grpc

from webhook_service.api.grpc.calls import caller
from webhook_service.api.grpc.convert import event_from_proto
from webhook_service.app.events import Events
from webhook_service.domain.errors import InvalidArgument, Reason, Violations
from webhooks.v1 import event_service_pb2, event_service_pb2_grpc


class EventService(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, events: Events) -> None:
        self.events = events

    async def PublishEvent(
        self, request: event_service_pb2.PublishEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_service_pb2.PublishEventResponse:
        if not request.HasField("event"):
            raise InvalidArgument("event", "is required", Reason.FIELD_REQUIRED)
        rejected = Violations()
        event = rejected.check(event_from_proto, request.event)
        published = await self.events.publish(
            caller(), event, request.event.ByteSize(), request.request_id, rejected.found
        )
        return event_service_pb2.PublishEventResponse(
            event_id=published.event_id, deliveries=list(published.deliveries)
        )
