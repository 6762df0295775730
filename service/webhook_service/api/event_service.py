"""EventService: takes stack events from internal services."""

from __future__ import annotations

from typing import Any

import grpc

from webhook_service.domain.errors import Unimplemented
from webhooks.v1 import event_service_pb2, event_service_pb2_grpc


class EventService(event_service_pb2_grpc.EventServiceServicer):
    async def PublishEvent(
        self, request: event_service_pb2.PublishEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> event_service_pb2.PublishEventResponse:
        raise Unimplemented("PublishEvent arrives with event delivery")
