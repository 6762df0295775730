"""WebhookService: registration and the delivery log, each RPC a thin call into the store."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from webhook_service.api.convert import fields_set, webhook_from_proto, webhook_to_proto
from webhook_service.domain import pages
from webhook_service.domain.errors import InvalidArgument, Unimplemented
from webhook_service.domain.model import Webhook
from webhook_service.domain.names import check_webhook_id, parse_parent, parse_webhook_name
from webhook_service.domain.webhooks import apply_update, check_update_mask, new_webhook_id, validate_webhook
from webhook_service.store import webhooks
from webhook_service.store.database import Executor
from webhooks.v1 import delivery_pb2, webhook_pb2, webhook_service_pb2, webhook_service_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
LATER = "arrives with event delivery"

MAX_REQUEST_ID = 128


def check_request_id(request_id: str) -> str:
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument("request_id", f"must be at most {MAX_REQUEST_ID} characters")
    return request_id


class WebhookService(webhook_service_pb2_grpc.WebhookServiceServicer):
    def __init__(self, store: Executor) -> None:
        self.store = store

    async def CreateWebhook(
        self, request: webhook_service_pb2.CreateWebhookRequest, context: Context
    ) -> webhook_pb2.Webhook:
        parent = parse_parent(request.parent, "parent")
        webhook_id = check_webhook_id(request.webhook_id, "webhook_id") if request.webhook_id else new_webhook_id()
        if not request.HasField("webhook"):
            raise InvalidArgument("webhook", "is required")
        webhook = validate_webhook(webhook_from_proto(parent, webhook_id, request.webhook))
        created = await self.store.run(webhooks.create, webhook, check_request_id(request.request_id))
        return webhook_to_proto(created)

    async def GetWebhook(self, request: webhook_service_pb2.GetWebhookRequest, context: Context) -> webhook_pb2.Webhook:
        name = parse_webhook_name(request.name, "name")
        return webhook_to_proto(await self.store.run(webhooks.get, name))

    async def ListWebhooks(
        self, request: webhook_service_pb2.ListWebhooksRequest, context: Context
    ) -> webhook_service_pb2.ListWebhooksResponse:
        parent = parse_parent(request.parent, "parent")
        size = pages.page_size(request.page_size)
        cursor = pages.decode_token(request.page_token, str(parent)) or 0
        found, next_cursor = await self.store.run(webhooks.list_page, parent, cursor, size)
        return webhook_service_pb2.ListWebhooksResponse(
            webhooks=[webhook_to_proto(w) for w in found],
            next_page_token="" if next_cursor is None else pages.encode_token(str(parent), next_cursor),
        )

    async def UpdateWebhook(
        self, request: webhook_service_pb2.UpdateWebhookRequest, context: Context
    ) -> webhook_pb2.Webhook:
        if not request.HasField("webhook"):
            raise InvalidArgument("webhook", "is required")
        name = parse_webhook_name(request.webhook.name, "webhook.name")
        paths = list(request.update_mask.paths)
        fields = check_update_mask(paths) if paths else fields_set(request.webhook)
        patch = webhook_from_proto(name.parent, name.webhook_id, request.webhook)

        def change(current: Webhook) -> Webhook:
            return apply_update(current, patch, fields)

        return webhook_to_proto(await self.store.run(webhooks.update, name, change))

    async def DeleteWebhook(
        self, request: webhook_service_pb2.DeleteWebhookRequest, context: Context
    ) -> empty_pb2.Empty:
        await self.store.run(webhooks.delete, parse_webhook_name(request.name, "name"))
        return empty_pb2.Empty()

    async def PingWebhook(
        self, request: webhook_service_pb2.PingWebhookRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        raise Unimplemented(f"PingWebhook {LATER}")

    async def ListWebhookDeliveries(
        self, request: webhook_service_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> webhook_service_pb2.ListWebhookDeliveriesResponse:
        raise Unimplemented(f"ListWebhookDeliveries {LATER}")

    async def GetWebhookDelivery(
        self, request: webhook_service_pb2.GetWebhookDeliveryRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        raise Unimplemented(f"GetWebhookDelivery {LATER}")

    async def RedeliverWebhookDelivery(
        self, request: webhook_service_pb2.RedeliverWebhookDeliveryRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        raise Unimplemented(f"RedeliverWebhookDelivery {LATER}")
