"""Standard Webhooks headers on every delivery, checked by a receiver that uses the `standardwebhooks` package
as it is, which also refuses captured requests replayed later."""

from __future__ import annotations

import time

from google.protobuf import json_format

from tests import seed
from tests.helpers import WS, delivery_id, make_webhook, publish, wait_for_delivery
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer
from tests.support.standard import check_with, post, signatures
from webhook_service.domain.requests import delivery_headers
from webhooks_client import Client

SECRET = "standard-s3cr3t"


def test_a_receiver_verifies_real_deliveries_with_the_standardwebhooks_package(
    server: RunningServer, client: Client, receiver: Receiver, org: str
) -> None:
    path = f"/standard/{org}"
    receiver.check(path, check_with(SECRET))
    # The first attempt of the event is refused after it verified, so a retry shows its own timestamp.
    receiver.script(path, [Reply(503), Reply(200)])
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path), secret=SECRET)
    [name] = publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")).deliveries
    delivered = wait_for_delivery(client, name, timeout=30)
    ping = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))

    requests = receiver.received(path)
    assert [r.refused for r in requests] == ["", "", ""]
    assert [a.response_code for a in delivered.attempts] == [503, 200]
    assert ping.response_code == 200
    for request, expected_id in zip(requests, [delivery_id(name)] * 2 + [delivery_id(ping.name)], strict=True):
        assert request.headers["webhook-id"] == request.headers["Pulumi-Webhook-ID"] == expected_id
        assert abs(int(request.headers["webhook-timestamp"]) - request.at) < 5
        assert len(signatures(request.headers)) == 1
    # Each attempt carries the time it was made, as its own headers in the delivery log show.
    for attempt in delivered.attempts:
        assert attempt.request_headers["webhook-timestamp"] == str(attempt.start_time.seconds)
        assert attempt.request_headers["webhook-id"] == delivery_id(name)


def test_replays_are_refused_by_the_package(client: Client, receiver: Receiver, org: str) -> None:
    path = f"/replay/{org}"
    receiver.check(path, check_with(SECRET))
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path), secret=SECRET)
    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
    [captured] = receiver.received(path)
    assert captured.refused == ""
    sent = {key: value for key, value in captured.headers.items() if key.lower() not in ("host", "content-length")}

    # A request as the service signed it ten minutes ago, signature and all, is too old to be taken.
    old = int(time.time()) - 600
    aged = delivery_headers(captured.headers["webhook-id"], "ping", captured.body, SECRET, old)
    assert post(receiver.url(path), aged, captured.body) == (401, "WebhookVerificationError: Message timestamp too old")
    # The captured request with a later timestamp: the signature covers the timestamp, so it no longer matches.
    freshened = {**sent, "webhook-timestamp": str(int(captured.headers["webhook-timestamp"]) + 60)}
    assert post(receiver.url(path), freshened, captured.body) == (
        401,
        "WebhookVerificationError: No matching signature found",
    )
    # The body cannot be swapped either.
    assert post(receiver.url(path), sent, b'{"forged": true}')[0] == 401


def test_a_webhook_without_a_secret_gets_the_id_and_timestamp_unsigned(
    client: Client, receiver: Receiver, org: str
) -> None:
    path = f"/unsigned/{org}"
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
    ping = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
    [request] = receiver.received(path)
    assert request.headers["webhook-id"] == delivery_id(ping.name)
    assert request.headers["webhook-timestamp"].isdigit()
    assert "webhook-signature" not in request.headers
    assert "Pulumi-Webhook-Signature" not in request.headers
    # The delivery log shows the headers as sent.
    shown = json_format.MessageToDict(ping)["requestHeaders"]
    assert shown["webhook-id"] == delivery_id(ping.name)
