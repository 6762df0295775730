"""The delivery log and the operator's actions on it: list, get, ping, redeliver."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import grpc

from tests import seed
from tests.helpers import WS, delivery_id, get_delivery, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.receiver import Receiver, Reply
from webhooks.v1 import delivery_pb2, webhook_pb2
from webhooks_client import Client, field_violations

SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED


def stack_of(org: str) -> str:
    return f"organizations/{org}/projects/website/stacks/website-prod"


def test_ping_is_sent_at_once_and_recorded(client: Client, receiver: Receiver, org: str) -> None:
    path = f"/ping/{org}"
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path), secret="pong")
    before = int(time.time())

    delivery = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))

    [request] = receiver.received(path)
    body = json.loads(request.body)
    assert body == {"timestamp": body["timestamp"], "message": "🍹 Just a friendly ping from Pulumi 🍹"}
    assert before <= body["timestamp"] <= time.time()
    assert request.headers["Pulumi-Webhook-Kind"] == "ping"
    assert request.headers["Pulumi-Webhook-ID"] == delivery_id(delivery.name)
    expected = hmac.new(b"pong", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["Pulumi-Webhook-Signature"], expected)
    assert delivery.name.startswith(hook.name + "/deliveries/")
    assert delivery.kind == "ping"
    assert delivery.state == SUCCEEDED
    assert delivery.payload.encode() == request.body
    assert delivery.attempt_count == 1
    assert delivery.response_code == 200
    assert delivery.response_body == "ok"
    assert len(delivery.attempts) == 1
    assert get_delivery(client, delivery.name) == delivery


def test_ping_to_a_failing_receiver_records_the_failure(client: Client, receiver: Receiver, org: str) -> None:
    receiver.script(f"/ping-fail/{org}", [Reply(503, body="down for maintenance")])
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/ping-fail/{org}"))
    delivery = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
    assert delivery.state == FAILED
    assert delivery.response_code == 503
    assert delivery.response_body == "down for maintenance"
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name)).active


def test_ping_in_slack_format_is_a_slack_message(client: Client, receiver: Receiver, org: str) -> None:
    hook = make_webhook(
        client, f"organizations/{org}", receiver.url(f"/ping-slack/{org}"), format=webhook_pb2.WEBHOOK_FORMAT_SLACK
    )
    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
    [request] = receiver.received(f"/ping-slack/{org}")
    assert "friendly ping" in json.loads(request.body)["text"]


def test_redeliver_sends_the_same_payload_under_the_same_id(client: Client, receiver: Receiver, org: str) -> None:
    path = f"/again/{org}"
    make_webhook(client, f"organizations/{org}", receiver.url(path), secret="k")
    [name] = publish(client, seed.update_event(stack=stack_of(org))).deliveries
    first = wait_for_delivery(client, name)

    again = client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=name))

    requests = receiver.wait_for(path, 2)
    assert len(requests) == 2
    assert requests[0].body == requests[1].body
    assert requests[0].headers["Pulumi-Webhook-ID"] == requests[1].headers["Pulumi-Webhook-ID"] == delivery_id(name)
    assert requests[0].headers["Pulumi-Webhook-Signature"] == requests[1].headers["Pulumi-Webhook-Signature"]
    assert again.name == name
    assert again.payload == first.payload
    assert again.state == SUCCEEDED
    assert again.attempt_count == 2
    assert [a.attempt_number for a in again.attempts] == [1, 2]


def test_redeliver_of_a_failed_delivery_that_now_succeeds(client: Client, receiver: Receiver, org: str) -> None:
    path = f"/recovering/{org}"
    receiver.script(path, [Reply(410)])
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
    [name] = publish(client, seed.update_event(stack=stack_of(org))).deliveries
    assert wait_for_delivery(client, name, FAILED).response_code == 410
    receiver.script(path, [Reply(200)])

    again = client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=name))

    assert again.state == SUCCEEDED
    assert [a.response_code for a in again.attempts] == [410, 200]
    # A redelivery is the operator's own test: it does not turn the webhook back on.
    assert not client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name)).active


def test_get_shows_every_attempt_with_request_and_response(client: Client, receiver: Receiver, org: str) -> None:
    path = f"/detail/{org}"
    receiver.script(path, [Reply(200, headers={"X-Receipt": "r-1"}, body="x" * 40_000)])
    make_webhook(client, f"organizations/{org}", receiver.url(path), secret="hidden-value")
    [name] = publish(client, seed.deployment_event(stack=stack_of(org))).deliveries
    delivery = wait_for_delivery(client, name)

    [attempt] = delivery.attempts
    assert attempt.attempt_number == 1
    assert attempt.request_url == receiver.url(path)
    assert attempt.request_headers["Pulumi-Webhook-Kind"] == "deployment"
    assert attempt.request_headers["Pulumi-Webhook-ID"] == delivery_id(name)
    assert attempt.response_code == 200
    assert attempt.response_headers["X-Receipt"] == "r-1"
    assert attempt.response_body == "x" * 16 * 1024
    assert attempt.duration.ToTimedelta().total_seconds() > 0
    assert attempt.start_time.seconds > 0
    assert delivery.request_url == attempt.request_url
    assert delivery.response_code == 200
    assert delivery.response_body == attempt.response_body
    assert not delivery.HasField("next_attempt_time")
    assert "hidden-value" not in str(delivery)


def test_list_is_newest_first_and_pages(client: Client, receiver: Receiver, org: str) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/list/{org}"))
    names = [publish(client, seed.update_event(stack=stack_of(org))).deliveries[0] for _ in range(5)]
    receiver.wait_for(f"/list/{org}", 5)
    ping = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name)).name

    seen: list[str] = []
    token = ""
    while True:
        page = client.webhooks.ListWebhookDeliveries(
            WS.ListWebhookDeliveriesRequest(parent=hook.name, page_size=2, page_token=token)
        )
        assert len(page.deliveries) <= 2
        assert all(not d.attempts for d in page.deliveries)
        seen += [d.name for d in page.deliveries]
        token = page.next_page_token
        if not token:
            break
    assert seen == [ping, *reversed(names)]


def test_delivery_log_errors(client: Client, receiver: Receiver, org: str) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/errs/{org}"))
    missing_hook = f"organizations/{org}/webhooks/missing"
    cases = [
        (client.webhooks.ListWebhookDeliveries, WS.ListWebhookDeliveriesRequest(parent=missing_hook), "NOT_FOUND"),
        (
            client.webhooks.ListWebhookDeliveries,
            WS.ListWebhookDeliveriesRequest(parent=f"organizations/{org}"),
            "parent",
        ),
        (
            client.webhooks.ListWebhookDeliveries,
            WS.ListWebhookDeliveriesRequest(parent=hook.name, page_token="garbage"),
            "page_token",
        ),
        (
            client.webhooks.GetWebhookDelivery,
            WS.GetWebhookDeliveryRequest(name=f"{hook.name}/deliveries/nope"),
            "NOT_FOUND",
        ),
        (client.webhooks.GetWebhookDelivery, WS.GetWebhookDeliveryRequest(name=hook.name), "name"),
        (
            client.webhooks.RedeliverWebhookDelivery,
            WS.RedeliverWebhookDeliveryRequest(name=f"{missing_hook}/deliveries/x"),
            "NOT_FOUND",
        ),
        (client.webhooks.RedeliverWebhookDelivery, WS.RedeliverWebhookDeliveryRequest(name="x"), "name"),
        (client.webhooks.PingWebhook, WS.PingWebhookRequest(name=missing_hook), "NOT_FOUND"),
        (client.webhooks.PingWebhook, WS.PingWebhookRequest(name=f"organizations/{org}"), "name"),
    ]
    for call, request, expected in cases:
        error = rpc_error(call, request)
        if expected == "NOT_FOUND":
            assert error.code() == grpc.StatusCode.NOT_FOUND, request
        else:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, request
            assert list(field_violations(error)) == [expected]
    assert receiver.received(f"/errs/{org}") == []


def test_a_delivery_of_another_webhook_is_not_found_under_this_one(
    client: Client, receiver: Receiver, org: str
) -> None:
    mine = make_webhook(client, f"organizations/{org}", receiver.url(f"/mine/{org}"), webhook_id="mine")
    make_webhook(client, f"organizations/{org}", receiver.url(f"/theirs/{org}"), webhook_id="theirs")
    [name, _] = sorted(
        publish(client, seed.update_event(stack=stack_of(org))).deliveries, key=lambda n: "/mine/" not in n
    )
    wrong = name.replace("/webhooks/mine/", "/webhooks/theirs/")
    assert name.startswith(mine.name)
    assert rpc_error(client.webhooks.GetWebhookDelivery, WS.GetWebhookDeliveryRequest(name=wrong)).code() == (
        grpc.StatusCode.NOT_FOUND
    )


def test_deleting_a_webhook_deletes_its_log(client: Client, receiver: Receiver, org: str) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/deleted/{org}"), webhook_id="gone")
    [name] = publish(client, seed.update_event(stack=stack_of(org))).deliveries
    wait_for_delivery(client, name)
    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=hook.name))
    make_webhook(client, f"organizations/{org}", receiver.url(f"/deleted/{org}"), webhook_id="gone")
    listed = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook.name))
    assert list(listed.deliveries) == []
