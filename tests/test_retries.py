"""Retries, back-off, giving up, deactivation and isolation, with short schedules and a scripted receiver."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests import seed
from tests.helpers import WS, delivery_id, get_delivery, make_webhook, publish, wait_for_delivery
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer
from tests.support.waiting import eventually
from webhooks.v1 import delivery_pb2, webhook_pb2
from webhooks_client import Client

SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
PENDING = delivery_pb2.WEBHOOK_DELIVERY_STATE_PENDING
STACK = "organizations/acme/projects/website/stacks/prod"

Start = Callable[..., RunningServer]


def connect(start_server: Start, **dispatch: Any) -> Client:
    return start_server(**dispatch).client()


def test_fails_twice_then_succeeds_on_the_schedule(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0, 0.5, 0.5))
    path = "/flaky"
    receiver.script(path, [Reply(500), Reply(502), Reply(200)])
    make_webhook(client, "organizations/acme", receiver.url(path))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries

    requests = receiver.wait_for(path, 3)
    delivery = wait_for_delivery(client, name)

    assert {r.headers["Pulumi-Webhook-ID"] for r in requests} == {delivery_id(name)}
    assert len({r.body for r in requests}) == 1
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    assert all(0.4 - 0.05 <= gap < 2.0 for gap in gaps), gaps
    assert delivery.attempt_count == 3
    assert [a.response_code for a in delivery.attempts] == [500, 502, 200]
    assert not delivery.HasField("next_attempt_time")


def test_gives_up_after_the_last_attempt(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0, 0.2))
    receiver.script("/down", [Reply(500)])
    hook = make_webhook(client, "organizations/acme", receiver.url("/down"))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries

    delivery = wait_for_delivery(client, name, FAILED)

    assert delivery.attempt_count == 2
    time.sleep(0.5)
    assert len(receiver.received("/down")) == 2
    refreshed = client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name))
    assert refreshed.active and refreshed.disabled_reason == ""


def test_pending_delivery_shows_when_it_is_tried_next(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0, 30.0))
    receiver.script("/later", [Reply(500)])
    make_webhook(client, "organizations/acme", receiver.url("/later"))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries
    receiver.wait_for("/later", 1)

    delivery = eventually(
        lambda: found if (found := get_delivery(client, name)).attempt_count >= 1 else None,
        10,
        "the first attempt is recorded",
        every=0.05,
    )
    assert delivery.state == PENDING
    wait = delivery.next_attempt_time.ToDatetime().timestamp() - time.time()
    assert 30 * 0.8 - 2 <= wait <= 30 * 1.2


def test_410_gone_deactivates_the_webhook_with_its_reason(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0, 0.1, 0.1))
    receiver.script("/gone", [Reply(410)])
    hook = make_webhook(client, "organizations/acme", receiver.url("/gone"))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries

    delivery = wait_for_delivery(client, name, FAILED)

    assert delivery.attempt_count == 1
    disabled = client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name))
    assert not disabled.active
    assert "410 Gone" in disabled.disabled_reason
    assert list(publish(client, seed.update_event(stack=STACK)).deliveries) == []

    enabled = client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=hook.name, active=True))
    )
    assert enabled.active and enabled.disabled_reason == ""


def test_continuous_failure_past_disable_after_deactivates(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0, 0.3, 0.3, 0.3, 0.3, 0.3), disable_after=0.5)
    receiver.script("/dead", [Reply(500)])
    hook = make_webhook(client, "organizations/acme", receiver.url("/dead"))
    publish(client, seed.update_event(stack=STACK))

    current = eventually(
        lambda: None if (found := client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name))).active else found,
        15,
        "the webhook is deactivated",
        every=0.05,
    )
    assert "failed since" in current.disabled_reason
    assert "--disable-after" in current.disabled_reason
    attempts = len(receiver.received("/dead"))
    time.sleep(0.8)
    assert len(receiver.received("/dead")) == attempts


def test_a_success_resets_the_failure_clock(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0, 0.4, 0.4, 0.4), disable_after=1.0)
    receiver.script("/wobbly", [Reply(500), Reply(500), Reply(200), Reply(500), Reply(500), Reply(200)])
    hook = make_webhook(client, "organizations/acme", receiver.url("/wobbly"))
    first = publish(client, seed.update_event(stack=STACK)).deliveries[0]
    wait_for_delivery(client, first)
    second = publish(client, seed.update_event(stack=STACK)).deliveries[0]
    wait_for_delivery(client, second)
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name)).active


@pytest.mark.parametrize(("status", "header"), [(429, "Retry-After"), (503, "Retry-After"), (429, "retry-after")])
def test_retry_after_is_honoured(start_server: Start, receiver: Receiver, status: int, header: str) -> None:
    client = connect(start_server, retry_schedule=(0.0, 0.05))
    path = f"/busy-{status}-{header}"
    receiver.script(path, [Reply(status, headers={header: "2"}), Reply(200)])
    make_webhook(client, "organizations/acme", receiver.url(path))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries

    first, second = receiver.wait_for(path, 2, timeout=10)

    assert second.at - first.at >= 1.9
    assert wait_for_delivery(client, name).attempt_count == 2


def test_redirects_are_failures_and_not_followed(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0,))
    receiver.script("/moved", [Reply(302, headers={"Location": receiver.url("/elsewhere")})])
    make_webhook(client, "organizations/acme", receiver.url("/moved"))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries

    delivery = wait_for_delivery(client, name, FAILED)

    assert delivery.response_code == 302
    assert receiver.received("/elsewhere") == []


def test_timeouts_and_refused_connections_are_recorded_as_errors(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retry_schedule=(0.0,), delivery_timeout=0.3)
    receiver.script("/sleepy", [Reply(delay=2)])
    make_webhook(client, "organizations/acme", receiver.url("/sleepy"))
    make_webhook(client, "organizations/acme", "http://127.0.0.1:9/closed")
    names = publish(client, seed.update_event(stack=STACK)).deliveries

    by_url = {d.request_url: d for d in (wait_for_delivery(client, n, FAILED) for n in names)}
    timed_out = by_url[receiver.url("/sleepy")]
    assert timed_out.response_code == 0
    assert "no response within 0.3s" in timed_out.error
    closed = by_url["http://127.0.0.1:9/closed"]
    assert closed.response_code == 0
    assert "Connect" in closed.error


def test_a_slow_receiver_does_not_hold_up_the_others(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, concurrency=8, per_webhook=2, delivery_timeout=10.0)
    receiver.script("/slow", [Reply(delay=3)])
    make_webhook(client, "organizations/acme", receiver.url("/slow"))
    make_webhook(client, "organizations/acme", receiver.url("/fast"))

    started = time.time()
    for _ in range(20):
        publish(client, seed.update_event(stack=STACK))
    fast = receiver.wait_for("/fast", 20, timeout=10)

    assert max(r.at for r in fast) - started < 2.0
    assert len(receiver.received("/slow")) <= 2


def test_retention_prunes_old_events_and_deliveries(start_server: Start, receiver: Receiver) -> None:
    client = connect(start_server, retention=1.0, prune_interval=0.2)
    hook = make_webhook(client, "organizations/acme", receiver.url("/kept-briefly"))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries
    wait_for_delivery(client, name)

    eventually(
        lambda: not client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook.name)).deliveries,
        10,
        "the delivery is pruned",
    )
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name)).active
