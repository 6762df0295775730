"""Delivery views (AIP-157): List is BASIC unless asked, Get is FULL unless asked."""

from __future__ import annotations

import grpc

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.receiver import Receiver, Reply
from webhooks.v1 import delivery_pb2
from webhooks_client import Client, field_violations

BASIC = delivery_pb2.WEBHOOK_DELIVERY_VIEW_BASIC
FULL = delivery_pb2.WEBHOOK_DELIVERY_VIEW_FULL
SUMMARY_FIELDS = {"name", "kind", "state", "attempt_count", "create_time", "event_id", "response_code", "duration"}


def delivered(client: Client, receiver: Receiver, org: str) -> tuple[str, delivery_pb2.WebhookDelivery]:
    """A webhook with one delivered event whose receiver answered with a header and a body."""
    path = f"/views/{org}"
    receiver.script(path, [Reply(200, headers={"X-Receipt": "r-1"}, body="receipt")])
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
    [name] = publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")).deliveries
    return hook.name, wait_for_delivery(client, name)


def present(delivery: delivery_pb2.WebhookDelivery) -> set[str]:
    return {field.name for field, _ in delivery.ListFields()}


def listed(client: Client, hook: str, view: int = 0) -> delivery_pb2.WebhookDelivery:
    [only] = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook, view=view)).deliveries
    return only


def test_list_is_basic_unless_full_is_asked_for(client: Client, receiver: Receiver, org: str) -> None:
    hook, full = delivered(client, receiver, org)
    assert full.payload and full.attempts and full.response_body == "receipt"

    for view in (0, BASIC):
        basic = listed(client, hook, view)
        assert present(basic) == SUMMARY_FIELDS, basic
        assert basic.name == full.name and basic.state == full.state and basic.response_code == 200
        assert basic.duration == full.duration

    assert listed(client, hook, FULL) == full


def test_get_is_full_unless_basic_is_asked_for(client: Client, receiver: Receiver, org: str) -> None:
    hook, full = delivered(client, receiver, org)
    for view in (0, FULL):
        assert client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=full.name, view=view)) == full
    basic = client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=full.name, view=BASIC))
    assert basic == listed(client, hook)


def test_an_unknown_view_is_an_invalid_argument(client: Client, receiver: Receiver, org: str) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/views/{org}"))
    for call, request in [
        (client.webhooks.ListWebhookDeliveries, WS.ListWebhookDeliveriesRequest(parent=hook.name, view=7)),
        (client.webhooks.GetWebhookDelivery, WS.GetWebhookDeliveryRequest(name=f"{hook.name}/deliveries/x", view=7)),
    ]:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(field_violations(error)) == ["view"]
