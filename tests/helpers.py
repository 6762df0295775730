"""Small calls the end-to-end tests share."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.support.waiting import eventually
from webhooks.v1 import delivery_pb2, event_pb2, event_service_pb2, webhook_pb2, webhook_service_pb2
from webhooks_client import Client

WS = webhook_service_pb2


def make_webhook(client: Client, parent: str, url: str, webhook_id: str = "", **fields: Any) -> webhook_pb2.Webhook:
    fields.setdefault("display_name", "test hook")
    return client.webhooks.CreateWebhook(
        WS.CreateWebhookRequest(
            parent=parent, webhook_id=webhook_id, webhook=webhook_pb2.Webhook(payload_url=url, **fields)
        )
    )


def publish(client: Client, event: event_pb2.Event, request_id: str = "") -> event_service_pb2.PublishEventResponse:
    return client.events.PublishEvent(event_service_pb2.PublishEventRequest(event=event, request_id=request_id))


def get_delivery(client: Client, name: str) -> delivery_pb2.WebhookDelivery:
    return client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=name))


def wait_for_delivery(
    client: Client, name: str, state: int = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED, timeout: float = 15
) -> delivery_pb2.WebhookDelivery:
    """Polls until the delivery reaches `state` (attempts are written in batches, just after the request)."""

    def reached() -> delivery_pb2.WebhookDelivery | None:
        delivery = get_delivery(client, name)
        return delivery if delivery.state == state else None

    def instead() -> str:
        delivery = get_delivery(client, name)
        return f"{name} is {delivery.state}, not {state}:\n{delivery}"

    return eventually(reached, timeout, instead, every=0.05)


def rpc_error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    error: grpc.RpcError = caught.value
    return error


def delivery_id(name: str) -> str:
    return name.rsplit("/", 1)[1]


# How a refused `localhost` reads. Deliveries resolve with c-ares, which answers ::1 for it as well (RFC 6761)
# even where /etc/hosts names only 127.0.0.1, and the guard names the first blocked address of the answer.
LOCALHOST_REFUSED = (
    r"refusing to connect to localhost: (127\.0\.0\.1 is in 127\.0\.0\.0/8|::1 is in ::1/128) \(loopback\)"
)
