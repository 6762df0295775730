"""RecoverWebhookDeliveries: after a receiver's outage, one call queues every FAILED delivery again, with the
same delivery IDs and a fresh retry schedule."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import timestamp_pb2

from tests import seed
from tests.helpers import WS, delivery_id, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support import sql
from tests.support.receiver import Receiver, Reply
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer
from tests.support.waiting import eventually
from webhooks.v1 import delivery_pb2, webhook_pb2, webhook_service_pb2
from webhooks_client import Client, field_violations

SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
STACK = "organizations/acme/projects/website/stacks/prod"
Start = Callable[..., RunningServer]


def since(moment: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(moment * 1e9))
    return stamp


def recover(client: Client, parent: str, after: float, request_id: str = "") -> int:
    request = WS.RecoverWebhookDeliveriesRequest(parent=parent, since=since(after), request_id=request_id)
    answer: webhook_service_pb2.RecoverWebhookDeliveriesResponse = client.webhooks.RecoverWebhookDeliveries(request)
    return answer.recovered_count


def states(client: Client, hook: str) -> dict[str, int]:
    page = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook, page_size=1000))
    return {delivery_id(d.name): d.state for d in page.deliveries}


def wait_for_states(client: Client, hook: str, state: int, count: int, timeout: float = 60) -> dict[str, int]:
    return eventually(
        lambda: found if len(found := states(client, hook)) == count and set(found.values()) == {state} else None,
        timeout,
        lambda: f"{count} deliveries of {hook} in state {state}: {states(client, hook)}",
    )


def outage(client: Client, receiver: Receiver, path: str, parent: str, count: int) -> tuple[str, dict[str, int]]:
    """A webhook whose receiver answers 503 until `count` deliveries have FAILED: (webhook, their states)."""
    receiver.script(path, [Reply(503)])
    hook = make_webhook(client, parent, receiver.url(path)).name
    for _ in range(count):
        publish(client, seed.update_event(stack=STACK))
    return hook, wait_for_states(client, hook, FAILED, count)


def test_recover_after_a_receiver_outage(start_server: Start, receiver: Receiver) -> None:
    client = start_server(retry_schedule=(0.0,)).client()
    path = f"/outage/{time.monotonic_ns()}"
    started = time.time()
    hook, failed = outage(client, receiver, path, "organizations/acme", 50)
    assert len(receiver.received(path)) == 50

    receiver.script(path, [Reply(200)])
    assert recover(client, hook, started) == 50

    arrived = receiver.wait_for(path, 100, timeout=60)[50:]
    assert sorted(r.headers["Pulumi-Webhook-ID"] for r in arrived) == sorted(failed)
    assert sorted(r.headers["webhook-id"] for r in arrived) == sorted(failed)
    wait_for_states(client, hook, SUCCEEDED, 50)
    delivery = client.webhooks.GetWebhookDelivery(
        WS.GetWebhookDeliveryRequest(name=f"{hook}/deliveries/{arrived[0].headers['webhook-id']}")
    )
    assert [(a.attempt_number, a.response_code) for a in delivery.attempts] == [(1, 503), (2, 200)]
    # Nothing is left to recover.
    assert recover(client, hook, started) == 0


def test_a_recovered_delivery_starts_the_schedule_afresh(start_server: Start, receiver: Receiver) -> None:
    client = start_server(retry_schedule=(0.0, 0.2)).client()
    path = f"/afresh/{time.monotonic_ns()}"
    started = time.time()
    hook, failed = outage(client, receiver, path, "organizations/acme", 1)
    [name] = [f"{hook}/deliveries/{d}" for d in failed]
    assert get(client, name).attempt_count == 2

    assert recover(client, hook, started) == 1
    # Both attempts of the schedule again, numbered after the first two.
    receiver.wait_for(path, 4)
    delivery = wait_for_delivery(client, name, FAILED)
    assert [a.attempt_number for a in delivery.attempts] == [1, 2, 3, 4]
    time.sleep(0.5)
    assert get(client, name).attempt_count == 4


def get(client: Client, name: str) -> delivery_pb2.WebhookDelivery:
    return client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=name))


def test_a_repeat_under_the_same_request_id_queues_nothing_new(start_server: Start, receiver: Receiver) -> None:
    client = start_server(retry_schedule=(0.0,)).client()
    path = f"/repeat/{time.monotonic_ns()}"
    started = time.time()
    hook, _ = outage(client, receiver, path, "organizations/acme", 3)
    assert recover(client, hook, started, "recover-1") == 3
    # Still down: they fail again.
    receiver.wait_for(path, 6)
    wait_for_states(client, hook, FAILED, 3)

    assert recover(client, hook, started, "recover-1") == 3
    time.sleep(0.5)
    assert len(receiver.received(path)) == 6
    assert set(states(client, hook).values()) == {FAILED}
    # The same request_id for another request is refused; a new one recovers again.
    error = rpc_error(
        client.webhooks.RecoverWebhookDeliveries,
        WS.RecoverWebhookDeliveriesRequest(parent=hook, since=since(started + 1), request_id="recover-1"),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["request_id"]
    assert recover(client, hook, started, "recover-2") == 3


def test_an_inactive_webhook_is_refused_and_skipped_under_a_parent(start_server: Start, receiver: Receiver) -> None:
    client = start_server(retry_schedule=(0.0,)).client()
    path = f"/inactive/{time.monotonic_ns()}"
    started = time.time()
    hook, failed = outage(client, receiver, path, "organizations/acme", 2)
    client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=hook, active=False), update_mask={"paths": ["active"]})
    )
    error = rpc_error(
        client.webhooks.RecoverWebhookDeliveries, WS.RecoverWebhookDeliveriesRequest(parent=hook, since=since(started))
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "inactive" in error.details()
    assert recover(client, "organizations/acme", started) == 0
    assert states(client, hook) == failed


def test_the_parent_and_since_choose_the_deliveries(start_server: Start, receiver: Receiver) -> None:
    client = start_server(retry_schedule=(0.0,)).client()
    receiver.script("/scope/org", [Reply(503)])
    receiver.script("/scope/stack", [Reply(503)])
    receiver.script("/scope/other", [Reply(503)])
    org_hook = make_webhook(client, "organizations/acme", receiver.url("/scope/org")).name
    stack_hook = make_webhook(client, STACK, receiver.url("/scope/stack")).name
    other_stack = "organizations/acme/projects/website/stacks/dev"
    other_hook = make_webhook(client, other_stack, receiver.url("/scope/other")).name
    publish(client, seed.update_event(stack=STACK))
    publish(client, seed.update_event(stack=other_stack))
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    publish(client, seed.update_event(stack=STACK))
    publish(client, seed.update_event(stack=other_stack))
    wait_for_states(client, org_hook, FAILED, 4)
    wait_for_states(client, stack_hook, FAILED, 2)
    wait_for_states(client, other_hook, FAILED, 2)
    for path in ("/scope/org", "/scope/stack", "/scope/other"):
        receiver.script(path, [Reply(200)])

    # Each delivery is recovered once, by the first call that covers it.
    # Only those created at or after `since`; a stack's webhooks only.
    assert recover(client, STACK, middle) == 1
    assert recover(client, "organizations/elsewhere", 0) == 0
    # The organization covers its stacks' webhooks too.
    assert recover(client, "organizations/acme", middle) == 3
    assert recover(client, "organizations/acme", 0) == 4
    assert recover(client, other_hook, 0) == 0


def test_more_than_a_batch_in_one_call(start_server: Start, receiver: Receiver) -> None:
    server = start_server(retry_schedule=(0.0,))
    client = server.client()
    path = f"/many/{time.monotonic_ns()}"
    hook = make_webhook(client, "organizations/acme", receiver.url(path)).name
    [(webhook_row,)] = sql.execute(server.settings.database, "SELECT id FROM webhook")
    moment = time.time()
    sql.execute_many(
        server.settings.database,
        "INSERT INTO delivery (delivery_id, webhook_id, kind, payload, state, attempt_count, create_time)"
        " VALUES (%s, %s, 'ping', %s, 'failed', 1, %s)",
        [(f"many-{i}", webhook_row, b"{}", moment) for i in range(2500)],
    )
    assert recover(client, hook, moment) == 2500
    received = receiver.wait_for(path, 2500, timeout=120)
    assert len({r.headers["webhook-id"] for r in received}) == 2500
    by_state = "SELECT state, COUNT(*) FROM delivery GROUP BY state"
    eventually(
        lambda: sql.execute(server.settings.database, by_state) == [("succeeded", 2500)],
        60,
        lambda: f"all 2500 succeeded: {sql.execute(server.settings.database, by_state)}",
        every=0.2,
    )


@pytest.mark.parametrize(
    ("parent", "stamp", "request_id", "field"),
    [
        ("organizations/acme/hooks/x", since(0), "", "parent"),
        ("organizations/acme", None, "", "since"),
        ("organizations/acme", timestamp_pb2.Timestamp(seconds=-62_135_596_801), "", "since"),
        ("organizations/acme", timestamp_pb2.Timestamp(seconds=0, nanos=-1), "", "since"),
        ("organizations/acme", since(0), "r" * 129, "request_id"),
    ],
)
def test_bad_recoveries_name_the_field(
    client: Client, parent: str, stamp: timestamp_pb2.Timestamp | None, request_id: str, field: str
) -> None:
    request = WS.RecoverWebhookDeliveriesRequest(parent=parent, request_id=request_id)
    if stamp is not None:
        request.since.CopyFrom(stamp)
    error = rpc_error(client.webhooks.RecoverWebhookDeliveries, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [field]


def test_a_missing_webhook_is_not_found(client: Client, org: str) -> None:
    error = rpc_error(
        client.webhooks.RecoverWebhookDeliveries,
        WS.RecoverWebhookDeliveriesRequest(parent=f"organizations/{org}/webhooks/nope", since=since(0)),
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_recovery_through_the_rest_api(server: RunningServer, client: Client, receiver: Receiver, org: str) -> None:
    rest = Rest(server, token_auth(server.admin_token))
    rest.ok("POST", f"/orgs/{org}/hooks", {"name": "h", "displayName": "H", "payloadUrl": receiver.url("/rest")})
    stack = f"/stacks/{org}/p/s"
    for route in (
        f"/orgs/{org}/hooks/h/deliveries/recover",
        f"/orgs/{org}/deliveries/recover",
        f"{stack}/deliveries/recover",
    ):
        assert rest.ok("POST", route, {"since": 0}) == {"recoveredCount": 0}
    assert rest.ok("POST", f"/orgs/{org}/deliveries/recover", {"since": "2024-05-01T12:00:00Z", "requestId": "r"}) == {
        "recoveredCount": 0
    }
    for body, field in (
        ({}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-05-01T12:00:00"}, "since"),
        ({"since": 0, "other": 1}, "other"),
    ):
        answer = rest.call("POST", f"/orgs/{org}/deliveries/recover", body)
        assert answer.status == 400 and answer.json["message"].startswith(f"{field}: "), answer.json
    rest.ok("PATCH", f"/orgs/{org}/hooks/h", {"active": False})
    answer = rest.call("POST", f"/orgs/{org}/hooks/h/deliveries/recover", {"since": 0})
    assert (answer.status, answer.json["code"]) == (409, 409)
    assert "inactive" in answer.json["message"]
