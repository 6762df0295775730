"""EventService: stack events from internal services, translated onto the application."""

from __future__ import annotations

from typing import Any

import grpc

from webhook_service.api.grpc.calls import caller
from webhook_service.api.grpc.convert import event_from_proto, match_to_proto
from webhook_service.app.events import Events
from webhook_service.domain.errors import InvalidArgument, Reason, Violations
from webhook_service.domain.model import Event
from webhooks.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc


def _read_event(
    request: event_service_pb2.PublishEventRequest | event_service_pb2.TestEventMatchRequest,
) -> tuple[Event | None, event_pb2.Event, Violations]:
    """The request's event as the domain has it (None when unreadable), as it came, and what was wrong with it."""
    if not request.HasField("event"):
        raise InvalidArgument("event", "is required", Reason.FIELD_REQUIRED)
    rejected = Violations()
    return rejected.check(event_from_proto, request.event), request.event, rejected


class EventService(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, events: Events) -> None:
        self.events = events

    async def PublishEvent(
        self, request: event_service_pb2.PublishEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_service_pb2.PublishEventResponse:
        event, sent, rejected = _read_event(request)
        published = await self.events.publish(caller(), event, sent.ByteSize(), request.request_id, rejected.found)
        return event_service_pb2.PublishEventResponse(
            event_id=published.event_id, deliveries=list(published.deliveries)
        )

    async def TestEventMatch(
        self, request: event_service_pb2.TestEventMatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_service_pb2.TestEventMatchResponse:
        event, sent, rejected = _read_event(request)
        report = await self.events.test_match(caller(), event, sent.ByteSize(), rejected.found)
        return event_service_pb2.TestEventMatchResponse(
            matches=[match_to_proto(webhook, found) for webhook, found in report.matches],
            other_stacks_truncated=report.other_stacks_truncated,
        )
