"""Durability of accepted events: `webhooks serve` killed with SIGKILL mid-dispatch, and stopped with SIGTERM.

The service runs as a child process (the installed console script) against a database file; the receiver
is a real HTTP server in this process that records every request with its `Pulumi-Webhook-ID`.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.databases import Databases
from tests.support.process import ServiceProcess, serving
from tests.support.receiver import Received, Receiver, Reply
from tests.support.waiting import eventually
from webhooks.v1 import delivery_pb2, event_pb2, event_service_pb2, webhook_pb2, webhook_service_pb2
from webhooks_client import Client

SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING
# Where the service leaves its first admin token, relative to its working directory.
ADMIN_TOKEN_FILE = "data/admin-token"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service runs in the test's directory, so files it keeps beside its working directory stay there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def connect(service: ServiceProcess) -> Client:
    """A client of `service`, with the admin token the service wrote on its first start."""
    return Client(service.target, token=Path(ADMIN_TOKEN_FILE).read_text().strip())


def webhook_id_of(received: Received) -> str:
    """The `Pulumi-Webhook-ID` header, whatever case the request spelled it in."""
    found = [value for key, value in received.headers.items() if key.lower() == "pulumi-webhook-id"]
    assert len(found) == 1, received.headers
    return found[0]


def delivery_id_of(name: str) -> str:
    """`{webhook}/deliveries/{delivery}` → `{delivery}`, which is what `Pulumi-Webhook-ID` carries."""
    return name.rsplit("/", 1)[-1]


def ids_received(receiver: Receiver, path: str) -> Counter[str]:
    return Counter(webhook_id_of(request) for request in receiver.received(path))


def create_org_webhook(client: Client, org: str, url: str) -> webhook_pb2.Webhook:
    return client.webhooks.CreateWebhook(
        webhook_service_pb2.CreateWebhookRequest(
            parent=f"organizations/{org}",
            webhook=webhook_pb2.Webhook(display_name="crash test", payload_url=url),
        ),
        timeout=10,
    )


def publish_request(org: str, request_id: str) -> event_service_pb2.PublishEventRequest:
    return event_service_pb2.PublishEventRequest(
        event=event_pb2.Event(
            stack=f"organizations/{org}/projects/website/stacks/prod",
            stack_event=event_pb2.StackEvent(action=event_pb2.STACK_ACTION_CREATED),
        ),
        request_id=request_id,
    )


def publish(client: Client, org: str, count: int, window: int = 16) -> list[str]:
    """Publishes `count` stack events, `window` calls at a time; returns every delivery name they queued."""
    names: list[str] = []
    for start in range(0, count, window):
        calls = [
            client.events.PublishEvent.future(publish_request(org, str(uuid.uuid4())), timeout=30)
            for _ in range(min(window, count - start))
        ]
        for call in calls:
            answer = call.result()
            assert len(answer.deliveries) == 1, answer
            names.extend(answer.deliveries)
    assert len(set(names)) == count
    return names


def get_delivery(client: Client, name: str) -> delivery_pb2.WebhookDelivery:
    return client.webhooks.GetWebhookDelivery(webhook_service_pb2.GetWebhookDeliveryRequest(name=name), timeout=10)


def unfinished(client: Client, webhook: str, expected: int) -> list[str] | None:
    """None when the delivery log lists `expected` deliveries of `webhook`, every one SUCCEEDED; else what is not."""
    listed: list[delivery_pb2.WebhookDelivery] = []
    token = ""
    while True:
        page = client.webhooks.ListWebhookDeliveries(
            webhook_service_pb2.ListWebhookDeliveriesRequest(parent=webhook, page_size=1000, page_token=token),
            timeout=10,
        )
        listed.extend(page.deliveries)
        token = page.next_page_token
        if not token:
            break
    left = [
        f"{delivery_id_of(d.name)} {delivery_pb2.WebhookDeliveryState.Name(d.state)} after {d.attempt_count} attempts"
        for d in listed
        if d.state != SUCCEEDED
    ]
    if len(listed) != expected:
        left.append(f"{len(listed)} deliveries listed, not {expected}")
    return left or None


def wait_all_succeeded(client: Client, webhook: str, expected: int, timeout: float) -> None:
    def still() -> str:
        left = unfinished(client, webhook, expected) or []
        return f"{len(left)} not SUCCEEDED, e.g. {left[:5]}"

    eventually(lambda: unfinished(client, webhook, expected) is None, timeout, still, every=0.2)


# --- stopped mid-dispatch ---------------------------------------------------------------------------

EVENTS = 400
DISPATCH_CONCURRENCY = 16
# Deliveries a killed process can have sent without recording the result: those in flight plus those finished
# but not yet written, which is at most one more dispatcher's worth being written and one being gathered.
UNRECORDED_AT_MOST = 3 * DISPATCH_CONCURRENCY
# Stop once more than that have arrived, so a service that recorded nothing would fail the duplicate bound.
STOP_AFTER = 2 * UNRECORDED_AT_MOST
SLOW = "/slow"
CONCURRENCY_FLAGS = (
    *("--dispatch-concurrency", str(DISPATCH_CONCURRENCY)),
    *("--webhook-concurrency", str(DISPATCH_CONCURRENCY)),
)


def dispatch_many_then_stop(
    database: str,
    flags: tuple[str, ...],
    receiver: Receiver,
    stop: Callable[[ServiceProcess], None],
    replies: list[Reply],
    events: int = EVENTS,
) -> tuple[str, list[str], Counter[str], ServiceProcess]:
    """Publishes `events` events to one organization webhook, whose receiver answers with `replies`, and stops
    the service with `stop` part way through dispatching them; returns the webhook, the delivery names and
    what had arrived by the time the service was gone."""
    receiver.script(SLOW, replies)
    org = f"org-{uuid.uuid4().hex[:10]}"
    with serving(database, *flags) as service:
        with connect(service) as client:
            webhook = create_org_webhook(client, org, receiver.url(SLOW))
            names = publish(client, org, events)
        eventually(
            lambda: len(ids_received(receiver, SLOW)) >= STOP_AFTER,
            60,
            f"{STOP_AFTER} deliveries arrive before the stop",
            every=0.01,
        )
        at_stop = len(ids_received(receiver, SLOW))
        stop(service)
    assert at_stop < events, f"all {events} deliveries arrived before the stop"
    arrived = ids_received(receiver, SLOW)
    assert set(arrived) <= {delivery_id_of(name) for name in names}
    return webhook.name, names, arrived, service


def finish_after_restart(
    database: str,
    flags: tuple[str, ...],
    receiver: Receiver,
    webhook: str,
    names: list[str],
    within: float,
) -> tuple[dict[str, delivery_pb2.WebhookDelivery], float]:
    """Restarts on the same database; within `within` seconds every delivery arrives and is SUCCEEDED.

    Returns each delivery, with its attempts, by ID, and when the restart began (time.time())."""
    restarted_at = time.time()
    published = {delivery_id_of(name) for name in names}
    with serving(database, *flags) as service:
        eventually(
            lambda: set(ids_received(receiver, SLOW)) >= published,
            within,
            "every published delivery arrives after the restart",
        )
        with connect(service) as client:
            wait_all_succeeded(client, webhook, len(names), max(0.0, within - (time.time() - restarted_at)))
            deliveries = {delivery_id_of(name): get_delivery(client, name) for name in names}
        assert service.terminate() == 0
    assert set(ids_received(receiver, SLOW)) == published
    for delivery_id, delivery in deliveries.items():
        assert delivery.state == SUCCEEDED, delivery
        assert delivery.attempts and delivery.attempts[-1].response_code == 200, delivery
        assert delivery.attempt_count == len(delivery.attempts), delivery
        assert delivery.attempts[-1].request_headers["Pulumi-Webhook-ID"] == delivery_id
    return deliveries, restarted_at


def unrecorded_sends(receiver: Receiver, deliveries: dict[str, delivery_pb2.WebhookDelivery]) -> dict[str, int]:
    """Requests the receiver got beyond the attempts in the delivery log, by delivery ID.

    Only a process that stopped between sending a request and writing its result down leaves such a request,
    and only one per delivery: a delivery is never sent twice at once."""
    received = ids_received(receiver, SLOW)
    extra = {i: received[i] - len(delivery.attempts) for i, delivery in deliveries.items()}
    extra = {i: count for i, count in extra.items() if count > 0}
    assert all(count == 1 for count in extra.values()), extra
    return extra


def test_sigkill_mid_dispatch_loses_nothing(tmp_path: Path, receiver: Receiver, databases: Databases) -> None:
    database = databases.new(tmp_path)
    # A 1 s timeout makes the lease of the killed process 2 * 1 s + 5 s = 7 s.
    flags = ("--delivery-timeout", "1s", "--retry-schedule", "0s,1s,1s,1s,1s", *CONCURRENCY_FLAGS)

    # At most 16 / 0.2 s = 80 deliveries a second, which 400 publishes outrun even on a busy machine.
    replies = [Reply(delay=0.2)]
    webhook, names, before, _ = dispatch_many_then_stop(database, flags, receiver, ServiceProcess.kill, replies)
    assert len(before) < EVENTS, f"all {EVENTS} deliveries arrived before the kill"
    deliveries, restarted_at = finish_after_restart(database, flags, receiver, webhook, names, within=60)

    duplicated = unrecorded_sends(receiver, deliveries)
    assert len(duplicated) <= UNRECORDED_AT_MOST, f"{len(duplicated)} duplicated: {sorted(duplicated)}"
    # Each duplicate is a delivery the killed process had sent: its first copy came before the restart, and
    # the copies are the same delivery, with the same Pulumi-Webhook-ID (by construction of ids_received)
    # and the same body.
    requests = receiver.received(SLOW)
    for delivery_id in duplicated:
        copies = [r for r in requests if webhook_id_of(r) == delivery_id]
        assert min(r.at for r in copies) < restarted_at, delivery_id
        assert len({r.body for r in copies}) == 1, delivery_id
    print(f"{len(before)} of {EVENTS} arrived before the kill; {len(duplicated)} were sent again after the restart")


def test_sigterm_mid_dispatch_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, receiver: Receiver, databases: Databases
) -> None:
    database = databases.new(tmp_path)
    # The lease is 2 * 20 s + 5 s = 45 s; a graceful stop must leave nothing to wait for it.
    flags = ("--delivery-timeout", "20s", "--grace", "5s", *CONCURRENCY_FLAGS)

    # A quick receiver keeps the dispatcher busy claiming and recording when the signal comes; twice the
    # events, and at most 16 / 0.1 s = 160 deliveries a second, keep some undelivered at the stop even when a
    # loaded machine publishes slowly (at 0.05 s, five test runs at once saw all 800 arrive first).
    def sigterm(service: ServiceProcess) -> None:
        assert service.terminate(20) == 0

    webhook, names, before, first = dispatch_many_then_stop(
        database, flags, receiver, sigterm, [Reply(delay=0.1)], events=2 * EVENTS
    )
    released = int(re.findall(r"(\d+) unfinished deliveries released", first.log)[-1])
    deliveries, _ = finish_after_restart(database, flags, receiver, webhook, names, within=20)

    # Every request in flight at the SIGTERM had 5 s to be answered (in 0.1 s) and recorded: no copies
    # beyond the deliveries the log says were released unfinished.
    duplicated = unrecorded_sends(receiver, deliveries)
    assert len(duplicated) <= released, f"{len(duplicated)} sent twice, {released} released: {sorted(duplicated)}"
    print(f"{len(before)} of {len(names)} arrived before the SIGTERM; {len(duplicated)} were sent again")


# --- SIGTERM ---------------------------------------------------------------------------------------


def watch_health(channel: grpc.Channel) -> Iterator[health_pb2.HealthCheckResponse]:
    stream: Iterator[health_pb2.HealthCheckResponse] = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service="webhooks.v1.EventService"), timeout=60
    )
    return stream


def sigterm_and_check_refusal(service: ServiceProcess, grace: float) -> float:
    """SIGTERM; health goes NOT_SERVING, a new call is refused, and the process exits 0 within the grace."""
    with grpc.insecure_channel(service.target) as channel, connect(service) as client:
        health = watch_health(channel)
        assert next(health).status == SERVING
        assert refusal(client) is None  # connected and answered, as a caller already talking to the service
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        assert next(health).status == NOT_SERVING
        health.cancel()  # type: ignore[attr-defined]
        # From NOT_SERVING on, a call made now fails rather than hangs: the service refuses it while it finishes
        # its work (tests/test_shutdown.py), gRPC once it has stopped.
        refused = eventually(lambda: refusal(client), 5, "a call after SIGTERM is refused", every=0.05)
        assert refused in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), refused
    assert service.process.wait(grace + 15) == 0
    stopped_after = time.monotonic() - signalled
    assert stopped_after < grace + 5, f"stopped {stopped_after:.1f}s after SIGTERM with a {grace:g}s grace"
    service._reader.join(5)
    assert "shutting down" in service.log
    return stopped_after


def refusal(client: Client) -> grpc.StatusCode | None:
    """The status of a new call that failed, or None when the server answered it."""
    try:
        client.webhooks.ListWebhooks(webhook_service_pb2.ListWebhooksRequest(parent="organizations/late"), timeout=5)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED, "a call after SIGTERM hung"
        return code
    return None


def test_sigterm_finishes_in_flight_and_refuses_new_calls(
    tmp_path: Path, receiver: Receiver, databases: Databases
) -> None:
    database = databases.new(tmp_path)
    grace, delay, count = 5.0, 2.0, 4
    path = "/slow"
    receiver.script(path, [Reply(delay=delay)])
    org = f"org-{uuid.uuid4().hex[:10]}"

    with serving(database, "--grace", f"{grace:g}s") as first:
        with connect(first) as client:
            webhook = create_org_webhook(client, org, receiver.url(path))
            names = publish(client, org, count)
        requests = receiver.wait_for(path, count)
        sent_at = time.time()
        stopped_after = sigterm_and_check_refusal(first, grace)
    # Every request was still waiting for its answer when the signal went.
    assert all(request.at + delay > sent_at for request in requests), [sent_at - r.at for r in requests]
    assert "0 unfinished deliveries released" in first.log, first.log

    published = {delivery_id_of(name) for name in names}
    assert ids_received(receiver, path) == dict.fromkeys(published, 1)
    with serving(database) as second, connect(second) as client:
        for name in names:
            delivery = get_delivery(client, name)
            assert delivery.state == SUCCEEDED, delivery
            assert delivery.attempt_count == 1, delivery
            assert [attempt.response_code for attempt in delivery.attempts] == [200], delivery
        # A later event on the same webhook arrives, so the restarted dispatcher has looked at the queue:
        # nothing finished before the stop is sent again.
        receiver.script(path, [Reply()])
        sentinel = delivery_id_of(publish(client, org, 1)[0])
        eventually(lambda: sentinel in ids_received(receiver, path), 15, "the later event arrives")
        wait_all_succeeded(client, webhook.name, count + 1, 10)
        assert ids_received(receiver, path) == {**dict.fromkeys(published, 1), sentinel: 1}
        assert second.terminate() == 0
    print(f"stopped {stopped_after:.2f}s after SIGTERM")


def test_sigterm_releases_deliveries_unfinished_after_the_grace(
    tmp_path: Path, receiver: Receiver, databases: Databases
) -> None:
    database = databases.new(tmp_path)
    # A 20 s timeout makes the lease 2 * 20 s + 5 s = 45 s: only a released delivery is sent again soon.
    flags = ("--delivery-timeout", "20s")
    grace, delay, count = 1.0, 5.0, 4
    path = "/slower-than-the-grace"
    receiver.script(path, [*[Reply(delay=delay)] * count, Reply()])
    org = f"org-{uuid.uuid4().hex[:10]}"

    with serving(database, "--grace", f"{grace:g}s", *flags) as first:
        with connect(first) as client:
            webhook = create_org_webhook(client, org, receiver.url(path))
            names = publish(client, org, count)
        receiver.wait_for(path, count)
        sigterm_and_check_refusal(first, grace)
    assert f"{count} unfinished deliveries released" in first.log, first.log
    published = {delivery_id_of(name) for name in names}
    assert ids_received(receiver, path) == dict.fromkeys(published, 1)

    restarted = time.monotonic()
    with serving(database, "--grace", f"{grace:g}s", *flags) as second:
        eventually(
            lambda: ids_received(receiver, path) == dict.fromkeys(published, 2),
            10,
            "the released deliveries are sent again, well before their 45 s leases would expire",
        )
        redelivered_after = time.monotonic() - restarted
        with connect(second) as client:
            wait_all_succeeded(client, webhook.name, count, 10)
            for name in names:
                delivery = get_delivery(client, name)
                assert delivery.state == SUCCEEDED, delivery
                assert delivery.attempts[-1].response_code == 200, delivery
        assert second.terminate() == 0
    print(f"redelivered {redelivered_after:.2f}s after the restart")
