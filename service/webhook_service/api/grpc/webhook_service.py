"""WebhookService: registration and the delivery log, each RPC translated onto the application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from webhook_service.api.grpc.calls import caller
from webhook_service.api.grpc.convert import (
    delivery_states,
    delivery_to_proto,
    delivery_view,
    fields_set,
    finished_to_proto,
    moment_from_proto,
    seconds_from_proto,
    webhook_fields,
    webhook_to_proto,
)
from webhook_service.app.deliveries import Deliveries
from webhook_service.app.webhooks import Webhooks
from webhook_service.domain.errors import InvalidArgument, Reason, Violations
from webhooks.v1 import delivery_pb2, webhook_pb2, webhook_service_pb2, webhook_service_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class WebhookService(webhook_service_pb2_grpc.WebhookServiceServicer):
    def __init__(self, webhooks: Webhooks, deliveries: Deliveries) -> None:
        self.webhooks = webhooks
        self.deliveries = deliveries

    async def CreateWebhook(
        self, request: webhook_service_pb2.CreateWebhookRequest, context: Context
    ) -> webhook_pb2.Webhook:
        if not request.HasField("webhook"):
            raise InvalidArgument("webhook", "is required", Reason.FIELD_REQUIRED)
        rejected = Violations()
        fields = webhook_fields(request.webhook, rejected)
        created = await self.webhooks.create(
            caller(), request.parent, request.webhook_id, fields, request.request_id, rejected.found
        )
        return webhook_to_proto(created)

    async def GetWebhook(self, request: webhook_service_pb2.GetWebhookRequest, context: Context) -> webhook_pb2.Webhook:
        return webhook_to_proto(await self.webhooks.get(caller(), request.name))

    async def ListWebhooks(
        self, request: webhook_service_pb2.ListWebhooksRequest, context: Context
    ) -> webhook_service_pb2.ListWebhooksResponse:
        page = await self.webhooks.list(caller(), request.parent, request.page_size, request.page_token)
        return webhook_service_pb2.ListWebhooksResponse(
            webhooks=[webhook_to_proto(w) for w in page.webhooks], next_page_token=page.next_page_token
        )

    async def UpdateWebhook(
        self, request: webhook_service_pb2.UpdateWebhookRequest, context: Context
    ) -> webhook_pb2.Webhook:
        if not request.HasField("webhook"):
            raise InvalidArgument("webhook", "is required", Reason.FIELD_REQUIRED)
        # An empty mask names the fields the caller set.
        paths = list(request.update_mask.paths) or list(fields_set(request.webhook))
        rejected = Violations()
        fields = webhook_fields(request.webhook, rejected)
        updated = await self.webhooks.update(
            caller(), request.webhook.name, fields, paths, request.webhook.etag, rejected.found
        )
        return webhook_to_proto(updated)

    async def DeleteWebhook(
        self, request: webhook_service_pb2.DeleteWebhookRequest, context: Context
    ) -> empty_pb2.Empty:
        await self.webhooks.delete(caller(), request.name)
        return empty_pb2.Empty()

    async def PingWebhook(
        self, request: webhook_service_pb2.PingWebhookRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        return delivery_to_proto(await self.webhooks.ping(caller(), request.name), full=True)

    async def ListWebhookDeliveries(
        self, request: webhook_service_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> webhook_service_pb2.ListWebhookDeliveriesResponse:
        rejected = Violations()
        full = bool(rejected.check(delivery_view, request.view, "view", False))
        page = await self.deliveries.list(
            caller(), request.parent, request.page_size, request.page_token, full, rejected.found
        )
        return webhook_service_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_to_proto(d, full) for d in page.deliveries], next_page_token=page.next_page_token
        )

    async def GetWebhookDelivery(
        self, request: webhook_service_pb2.GetWebhookDeliveryRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        rejected = Violations()
        full = bool(rejected.check(delivery_view, request.view, "view", True))
        delivery = await self.deliveries.get(caller(), request.name, rejected.found)
        return delivery_to_proto(delivery, full)

    async def RedeliverWebhookDelivery(
        self, request: webhook_service_pb2.RedeliverWebhookDeliveryRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        return delivery_to_proto(await self.deliveries.redeliver(caller(), request.name), full=True)

    async def RotateWebhookSecret(
        self, request: webhook_service_pb2.RotateWebhookSecretRequest, context: Context
    ) -> webhook_service_pb2.RotateWebhookSecretResponse:
        rejected = Violations()
        overlap = (
            rejected.check(seconds_from_proto, request.overlap, "overlap") if request.HasField("overlap") else None
        )
        rotated = await self.webhooks.rotate_secret(caller(), request.name, request.secret, overlap, rejected.found)
        return webhook_service_pb2.RotateWebhookSecretResponse(
            webhook=webhook_to_proto(rotated.webhook), secret=rotated.secret
        )

    async def RecoverWebhookDeliveries(
        self, request: webhook_service_pb2.RecoverWebhookDeliveriesRequest, context: Context
    ) -> webhook_service_pb2.RecoverWebhookDeliveriesResponse:
        rejected = Violations()
        since = rejected.check(moment_from_proto, request.since, "since") if request.HasField("since") else None
        count = await self.deliveries.recover(caller(), request.parent, since, request.request_id, rejected.found)
        return webhook_service_pb2.RecoverWebhookDeliveriesResponse(recovered_count=count)

    async def WatchWebhookDeliveries(
        self, request: webhook_service_pb2.WatchWebhookDeliveriesRequest, context: Context
    ) -> AsyncIterator[webhook_service_pb2.WatchWebhookDeliveriesResponse]:
        rejected = Violations()
        states = delivery_states(request.states, "states", rejected)
        async with self.deliveries.watch(caller(), request.parent, states, rejected.found) as mailbox:
            # Headers go out once the watch is in place: a caller that waits for them misses no attempt after.
            await context.send_initial_metadata(())
            async for watched in mailbox:
                yield finished_to_proto(watched.attempt, watched.dropped)
