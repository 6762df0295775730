"""WebhookService: registration and the delivery log, each RPC a thin call into the store."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import empty_pb2

from webhook_service.api.convert import (
    delivery_to_proto,
    delivery_view,
    fields_set,
    webhook_from_proto,
    webhook_to_proto,
)
from webhook_service.api.requests import check_request_id
from webhook_service.dispatch import direct
from webhook_service.dispatch.sender import Sender
from webhook_service.domain import access, pages
from webhook_service.domain.errors import InvalidArgument
from webhook_service.domain.idempotency import create_key
from webhook_service.domain.model import Webhook
from webhook_service.domain.names import check_webhook_id, parse_delivery_name, parse_parent, parse_webhook_name
from webhook_service.domain.webhooks import apply_update, check_update_mask, new_webhook_id, validate_webhook
from webhook_service.store import deliveries, webhooks
from webhook_service.store.database import Executor
from webhooks.v1 import delivery_pb2, webhook_pb2, webhook_service_pb2, webhook_service_pb2_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


class WebhookService(webhook_service_pb2_grpc.WebhookServiceServicer):
    """Every RPC checks the caller may touch the organization named before reading anything."""

    def __init__(self, store: Executor, sender: Sender) -> None:
        self.store = store
        self.sender = sender
        self.allowed = sender.allowed

    async def CreateWebhook(
        self, request: webhook_service_pb2.CreateWebhookRequest, context: Context
    ) -> webhook_pb2.Webhook:
        parent = parse_parent(request.parent, "parent")
        principal = access.check_organization(parent.organization)
        requested_id = check_webhook_id(request.webhook_id, "webhook_id") if request.webhook_id else ""
        if not request.HasField("webhook"):
            raise InvalidArgument("webhook", "is required")
        webhook = validate_webhook(
            webhook_from_proto(parent, requested_id or new_webhook_id(), request.webhook), self.allowed
        )
        key = create_key(check_request_id(request.request_id), webhook, requested_id)
        created = await self.store.admit(webhooks.create, webhook, key)
        log.info("token %s created webhook %s", principal.token_id, created.name)
        return webhook_to_proto(created)

    async def GetWebhook(self, request: webhook_service_pb2.GetWebhookRequest, context: Context) -> webhook_pb2.Webhook:
        name = parse_webhook_name(request.name, "name")
        access.check_organization(name.parent.organization)
        return webhook_to_proto(await self.store.admit(webhooks.get, name))

    async def ListWebhooks(
        self, request: webhook_service_pb2.ListWebhooksRequest, context: Context
    ) -> webhook_service_pb2.ListWebhooksResponse:
        parent = parse_parent(request.parent, "parent")
        access.check_organization(parent.organization)
        size = pages.page_size(request.page_size)
        cursor = pages.decode_token(request.page_token, str(parent)) or 0
        found, next_cursor = await self.store.admit(webhooks.list_page, parent, cursor, size)
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
        principal = access.check_organization(name.parent.organization)
        paths = list(request.update_mask.paths)
        fields = check_update_mask(paths) if paths else fields_set(request.webhook)
        patch = webhook_from_proto(name.parent, name.webhook_id, request.webhook)

        def change(current: Webhook) -> Webhook:
            return apply_update(current, patch, fields, self.allowed)

        updated = await self.store.admit(webhooks.update, name, fields, change)
        log.info("token %s updated %s of webhook %s", principal.token_id, ",".join(fields) or "nothing", name)
        return webhook_to_proto(updated)

    async def DeleteWebhook(
        self, request: webhook_service_pb2.DeleteWebhookRequest, context: Context
    ) -> empty_pb2.Empty:
        name = parse_webhook_name(request.name, "name")
        principal = access.check_organization(name.parent.organization)
        await self.store.admit(webhooks.delete, name)
        log.info("token %s deleted webhook %s", principal.token_id, name)
        return empty_pb2.Empty()

    async def PingWebhook(
        self, request: webhook_service_pb2.PingWebhookRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        name = parse_webhook_name(request.name, "name")
        principal = access.check_organization(name.parent.organization)
        delivery = await direct.ping(self.store, self.sender, name)
        log.info("token %s pinged webhook %s", principal.token_id, name)
        return delivery_to_proto(delivery, full=True)

    async def ListWebhookDeliveries(
        self, request: webhook_service_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> webhook_service_pb2.ListWebhookDeliveriesResponse:
        webhook = parse_webhook_name(request.parent, "parent")
        access.check_organization(webhook.parent.organization)
        size = pages.page_size(request.page_size)
        cursor = pages.decode_token(request.page_token, str(webhook))
        full = delivery_view(request.view, "view", unspecified_is_full=False)
        found, next_cursor = await self.store.admit(deliveries.list_page, webhook, cursor, size, full)
        return webhook_service_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_to_proto(d, full) for d in found],
            next_page_token="" if next_cursor is None else pages.encode_token(str(webhook), next_cursor),
        )

    async def GetWebhookDelivery(
        self, request: webhook_service_pb2.GetWebhookDeliveryRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        name = parse_delivery_name(request.name, "name")
        access.check_organization(name.webhook.parent.organization)
        full = delivery_view(request.view, "view", unspecified_is_full=True)
        return delivery_to_proto(await self.store.admit(deliveries.get, name), full)

    async def RedeliverWebhookDelivery(
        self, request: webhook_service_pb2.RedeliverWebhookDeliveryRequest, context: Context
    ) -> delivery_pb2.WebhookDelivery:
        name = parse_delivery_name(request.name, "name")
        principal = access.check_organization(name.webhook.parent.organization)
        delivery = await direct.redeliver(self.store, self.sender, name)
        log.info("token %s redelivered %s", principal.token_id, name)
        return delivery_to_proto(delivery, full=True)
