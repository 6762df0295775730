"""Ordered delivery per stack (`ordering: ORDERING_PER_STACK`): a webhook's deliveries of one stack go out one at
a time, in publish order; one being retried holds back only the later ones of its stack and webhook, and one that
finally fails releases the next. A dispatcher killed with SIGKILL, and two dispatchers on PostgreSQL, keep it.

Each event carries a label (`a1`, `b3`: stack and publish position) in its update URL, so the receiver's log says
what arrived in which order, whichever delivery IDs the service drew.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg2
from playhouse.db_url import connect as connect_url

from tests import seed
from tests import test_cluster as cluster
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support import sql
from tests.support.databases import Databases
from tests.support.postgres import PostgresCluster
from tests.support.process import ServiceProcess, serving
from tests.support.receiver import Received, Receiver, Reply
from tests.support.running import RunningServer, settings_in
from tests.support.tokens import create_key
from tests.support.waiting import eventually
from webhook_service.store import schema
from webhook_service.store.models import bound_to
from webhooks.v1 import delivery_pb2, event_pb2, webhook_pb2
from webhooks_client import Client, field_violations

PER_STACK = webhook_pb2.ORDERING_PER_STACK
UNORDERED = webhook_pb2.ORDERING_UNSPECIFIED
SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
PENDING = delivery_pb2.WEBHOOK_DELIVERY_STATE_PENDING
Start = Callable[..., RunningServer]


def stack_of(org: str, label: str) -> str:
    """Stack `a` for label `a2`."""
    return f"organizations/{org}/projects/website/stacks/{label[0]}"


def event(org: str, label: str) -> event_pb2.Event:
    return seed.update_event(stack=stack_of(org, label), url=f"https://example.com/updates/{label}")


def label_of(body: bytes) -> str:
    """The event's label; `ping` for a ping, which has none."""
    label: str = json.loads(body).get("updateUrl", "/ping").rsplit("/", 1)[1]
    return label


def publish_in_order(client: Client, org: str, labels: list[str]) -> dict[str, list[str]]:
    """Publishes one event per label, each after the last was answered: that is the publish order.
    Returns the delivery names of each label."""
    return {label: list(publish(client, event(org, label)).deliveries) for label in labels}


def interleaved(stacks: str, count: int) -> list[str]:
    """`a1 b1 a2 b2 ...`: the stacks' events published turn about."""
    return [f"{stack}{number}" for number in range(1, count + 1) for stack in stacks]


def arrivals(receiver: Receiver, path: str, stack: str = "") -> list[Received]:
    """What reached `path`, in arrival order; of one stack's events only, given `stack`."""
    return [r for r in receiver.received(path) if label_of(r.body).startswith(stack)]


def labels(received: list[Received]) -> list[str]:
    return [label_of(r.body) for r in received]


def without_repeats(sequence: list[str]) -> list[str]:
    """The sequence with each run of one label kept once: a delivery sent again right after itself."""
    return [label for index, label in enumerate(sequence) if index == 0 or sequence[index - 1] != label]


def assert_one_at_a_time(received: list[Received], answer_takes: float) -> None:
    """Each request of a stack arrived after the one before it was answered (which took `answer_takes`)."""
    for earlier, later in itertools.pairwise(received):
        if not earlier.refused:
            assert later.at >= earlier.at + answer_takes, (labels(received), later.at - earlier.at)


def refuse(label: str, times: int) -> Callable[[dict[str, str], bytes], None]:
    """A receiver check refusing (401) the first `times` requests of the event labelled `label`."""
    refused = [0]

    def check(headers: dict[str, str], body: bytes) -> None:
        if label_of(body) == label and refused[0] < times:
            refused[0] += 1
            raise ValueError(f"{label} refused, {refused[0]} of {times}")

    return check


# --- the field --------------------------------------------------------------------------------------


def test_ordering_is_set_on_create_changed_by_update_and_returned(client: Client, org: str) -> None:
    parent = f"organizations/{org}"
    created = make_webhook(client, parent, "https://example.com/hook", ordering=PER_STACK)
    assert created.ordering == PER_STACK
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=created.name)).ordering == PER_STACK
    [listed] = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=parent)).webhooks
    assert listed.ordering == PER_STACK
    assert make_webhook(client, parent, "https://example.com/other").ordering == UNORDERED

    # Another field's update leaves it; the mask path `ordering` changes it.
    renamed = client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(
            webhook=webhook_pb2.Webhook(name=created.name, display_name="renamed"),
            update_mask={"paths": ["display_name"]},
        )
    )
    assert (renamed.display_name, renamed.ordering) == ("renamed", PER_STACK)
    unordered = client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=created.name), update_mask={"paths": ["ordering"]})
    )
    assert (unordered.display_name, unordered.ordering) == ("renamed", UNORDERED)
    # An empty mask takes the fields the message sets.
    ordered = client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=created.name, ordering=PER_STACK))
    )
    assert ordered.ordering == PER_STACK

    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(
            webhook=webhook_pb2.Webhook(name=created.name, ordering=7), update_mask={"paths": ["ordering"]}
        ),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["webhook.ordering"]
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=created.name)).ordering == PER_STACK
    error = rpc_error(
        client.webhooks.CreateWebhook,
        WS.CreateWebhookRequest(
            parent=parent, webhook=webhook_pb2.Webhook(display_name="x", payload_url="https://example.com", ordering=9)
        ),
    )
    assert list(field_violations(error)) == ["webhook.ordering"]


# --- order under failures ---------------------------------------------------------------------------


def test_a_retried_delivery_holds_back_only_the_later_ones_of_its_stack_and_webhook(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    # a2 is refused three times: retried after about 1 s each (±20 %), it is held for 2.4 s at least.
    client = start_server(retry_schedule=(0.0, 1.0, 1.0, 1.0, 1.0)).client()
    ordered, unordered, stack_hook = (f"/{kind}-{org}" for kind in ("ordered", "unordered", "stack"))
    answer_takes = 0.05
    for path in (ordered, unordered, stack_hook):
        receiver.script(path, [Reply(delay=answer_takes)])
    receiver.check(ordered, refuse("a2", 3))
    make_webhook(client, f"organizations/{org}", receiver.url(ordered), ordering=PER_STACK)
    make_webhook(client, f"organizations/{org}", receiver.url(unordered))
    make_webhook(client, stack_of(org, "a"), receiver.url(stack_hook), ordering=PER_STACK)

    names = publish_in_order(client, org, interleaved("ab", 5))
    receiver.wait_for(ordered, 10 + 3, timeout=30)
    for deliveries in names.values():
        for name in deliveries:
            wait_for_delivery(client, name)

    a, b = arrivals(receiver, ordered, "a"), arrivals(receiver, ordered, "b")
    assert labels(a) == ["a1", "a2", "a2", "a2", "a2", "a3", "a4", "a5"]
    assert [r.refused != "" for r in a] == [False, True, True, True, False, False, False, False]
    assert labels(b) == ["b1", "b2", "b3", "b4", "b5"]
    assert_one_at_a_time(a, answer_takes)
    assert_one_at_a_time(b, answer_takes)
    a2_succeeded = a[4].at
    # Meanwhile stack b went on, and so did the stack's other webhook and the unordered one.
    assert b[-1].at < a2_succeeded
    assert labels(arrivals(receiver, stack_hook)) == ["a1", "a2", "a3", "a4", "a5"]
    assert arrivals(receiver, stack_hook)[-1].at < a2_succeeded
    assert {"a3", "a4", "a5"} <= set(labels([r for r in arrivals(receiver, unordered) if r.at < a2_succeeded]))


def test_a_delivery_that_finally_fails_releases_the_next(start_server: Start, receiver: Receiver, org: str) -> None:
    client = start_server(retry_schedule=(0.0, 0.3)).client()
    path = f"/gives-up-{org}"
    receiver.check(path, refuse("a1", 1000))
    make_webhook(client, f"organizations/{org}", receiver.url(path), ordering=PER_STACK)

    names = publish_in_order(client, org, ["a1", "a2", "a3"])
    failed = wait_for_delivery(client, names["a1"][0], FAILED)
    for label in ("a2", "a3"):
        wait_for_delivery(client, names[label][0])

    assert failed.attempt_count == 2
    received = arrivals(receiver, path)
    assert labels(received) == ["a1", "a1", "a2", "a3"]
    assert [r.refused != "" for r in received] == [True, True, False, False]


def test_recovered_deliveries_go_out_in_publish_order_one_at_a_time(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    client = start_server(retry_schedule=(0.0,)).client()
    path = f"/recovered-{org}"
    receiver.script(path, [Reply(503)])
    # Unordered while its deliveries fail: they are put in order when recovered.
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
    began = time.time()
    names = publish_in_order(client, org, ["a1", "a2", "a3", "a4"])
    for deliveries in names.values():
        wait_for_delivery(client, deliveries[0], FAILED)
    client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=hook.name, ordering=PER_STACK))
    )

    answer_takes = 0.1
    receiver.script(path, [Reply(delay=answer_takes)])
    request = WS.RecoverWebhookDeliveriesRequest(parent=hook.name)
    request.since.FromNanoseconds(int(began * 1e9))
    assert client.webhooks.RecoverWebhookDeliveries(request).recovered_count == 4
    receiver.wait_for(path, 8)
    for deliveries in names.values():
        wait_for_delivery(client, deliveries[0])

    recovered = arrivals(receiver, path)[4:]
    assert labels(recovered) == ["a1", "a2", "a3", "a4"]
    assert_one_at_a_time(recovered, answer_takes)


def test_ping_and_redelivery_go_out_at_once_beside_the_order(start_server: Start, receiver: Receiver, org: str) -> None:
    client = start_server(retry_schedule=(0.0, 60.0)).client()
    path = f"/beside-{org}"
    receiver.check(path, refuse("a1", 1))
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path), ordering=PER_STACK)
    names = publish_in_order(client, org, ["a1", "a2"])
    eventually(
        lambda: (
            client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=names["a1"][0])).attempt_count == 1
        ),
        15,
        "a1's first attempt is recorded",
        every=0.05,
    )
    # a1 waits a minute for its retry, and a2 behind it.
    time.sleep(1)
    assert labels(arrivals(receiver, path)) == ["a1"]

    pinged = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
    assert pinged.state == SUCCEEDED
    redelivered = client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=names["a2"][0]))
    assert redelivered.state == SUCCEEDED
    assert labels(arrivals(receiver, path)) == ["a1", "ping", "a2"]
    held = client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=names["a1"][0]))
    assert (held.state, held.attempt_count) == (PENDING, 1)


# --- an upgraded database ---------------------------------------------------------------------------


def test_deliveries_queued_before_the_upgrade_keep_to_their_stacks(
    tmp_path: Path, databases: Databases, receiver: Receiver
) -> None:
    """Deliveries queued by the release before ordering existed are ordered by their own stacks once their
    webhook keeps order: a failing one of stack a holds back a's next, not b's."""
    org, path = "legacy", "/legacy-queue"
    hook = f"organizations/{org}/webhooks/legacy"
    url = databases.new(tmp_path)
    _queue_before_ordering(url, org, receiver.url(path), ["a1", "b1", "a2"])
    receiver.check(path, refuse("a1", 1))

    settings = settings_in(tmp_path, url)
    create_key(settings.secret_key_file)
    running = RunningServer(settings)
    try:
        with running.client() as client:
            client.webhooks.UpdateWebhook(
                WS.UpdateWebhookRequest(
                    webhook=webhook_pb2.Webhook(name=hook, active=True, ordering=PER_STACK),
                    update_mask={"paths": ["active", "ordering"]},
                )
            )
            received = receiver.wait_for(path, 4, timeout=30)
    finally:
        running.stop()
    a = [r for r in received if label_of(r.body).startswith("a")]
    assert labels(a) == ["a1", "a1", "a2"]
    [b1] = [r for r in received if label_of(r.body) == "b1"]
    assert b1.at < a[1].at


def _queue_before_ordering(url: str, org: str, payload_url: str, queued: list[str]) -> None:
    """A database at the schema before ordering, with an inactive webhook and a due delivery for each label."""
    db = connect_url(url)
    placeholder = "?" if url.startswith("sqlite") else "%s"
    try:
        with bound_to(db), db.connection_context():
            schema.migrate(db, target=schema.LATEST - 1)
            moment = time.time()
            db.execute_sql(
                "INSERT INTO webhook (organization, project, stack, webhook_id, display_name, payload_url, secret,"
                " active, format, filters, groups, disabled_reason, create_time, update_time) VALUES"
                f" ({placeholder}, '', '', 'legacy', 'Legacy', {placeholder}, '', FALSE, 'raw', '', '', '',"
                f" {placeholder}, {placeholder})",
                (org, payload_url, moment, moment),
            )
            [(webhook_row,)] = db.execute_sql("SELECT id FROM webhook").fetchall()
            cursor = db.cursor()
            for label in queued:
                _insert_queued(cursor, webhook_row, org, label, moment, placeholder)
    finally:
        db.close()


def _insert_queued(cursor: Any, webhook_row: int, org: str, label: str, moment: float, placeholder: str = "%s") -> None:
    """An event labelled `label` and its delivery to the webhook, due now and naming no sequence."""
    cursor.execute(
        "INSERT INTO event (event_id, organization, project, stack, kind, create_time) VALUES"
        f" ({placeholder}, {placeholder}, 'website', {placeholder}, 'update', {placeholder})",
        (f"evt-{label}", org, label[0], moment),
    )
    cursor.execute(f"SELECT id FROM event WHERE event_id = {placeholder}", (f"evt-{label}",))
    [(event_row,)] = cursor.fetchall()
    body = json.dumps({"updateUrl": f"https://example.com/updates/{label}"}).encode()
    cursor.execute(
        "INSERT INTO delivery (delivery_id, webhook_id, event_id, kind, payload, state, attempt_count,"
        f" next_attempt_time, create_time) VALUES ({placeholder}, {placeholder}, {placeholder}, 'update',"
        f" {placeholder}, 'pending', 0, {placeholder}, {placeholder})",
        (f"dlv-{label}", webhook_row, event_row, body, moment, moment),
    )


def test_switching_ordering_on_waits_for_a_publish_under_way(
    tmp_path: Path, postgres_cluster: PostgresCluster, receiver: Receiver
) -> None:
    """A publish that read the webhook as unordered queues its delivery unnumbered: the switch waits for it
    to commit, so the queue it numbers includes that delivery, which then goes out. PostgreSQL only: on
    SQLite a publish holds the one write lock."""
    url = postgres_cluster.new_database()
    path = "/switched"
    running = RunningServer(settings_in(tmp_path, url))
    try:
        with running.client() as client:
            hook = make_webhook(client, "organizations/acme", receiver.url(path))
            publishing = psycopg2.connect(url)
            try:
                # As store/events.py publishes: the webhook's key locked as it is read, then the rows.
                with publishing.cursor() as cursor:
                    webhook_id = hook.name.rsplit("/", 1)[1]
                    cursor.execute("SELECT id FROM webhook WHERE webhook_id = %s FOR KEY SHARE", (webhook_id,))
                    [(webhook_row,)] = cursor.fetchall()
                    _insert_queued(cursor, webhook_row, "acme", "a1", time.time())
                switch = client.webhooks.UpdateWebhook.future(
                    WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=hook.name, ordering=PER_STACK)), timeout=30
                )
                time.sleep(1)
                assert not switch.done(), "the switch did not wait for the publish under way"
                publishing.commit()
            finally:
                publishing.close()
            assert switch.result().ordering == PER_STACK
            [received] = receiver.wait_for(path, 1, timeout=15)
            assert label_of(received.body) == "a1"
    finally:
        running.stop()


# --- processes --------------------------------------------------------------------------------------


def connect(service: ServiceProcess) -> Client:
    return Client(service.target, token=service.admin_token)


def test_sigkill_mid_flight_then_restart_keeps_the_order(
    tmp_path: Path, receiver: Receiver, databases: Databases
) -> None:
    database = databases.new(tmp_path / "data")
    # Leases last 2 * 3 s + 5 s = 11 s: the restarted service waits that long for the killed one's claims.
    flags = ("--delivery-timeout", "3s", "--retry-schedule", "0s,1s")
    org, path = f"org-{uuid.uuid4().hex[:10]}", f"/killed-{uuid.uuid4().hex[:8]}"
    answer_takes = 0.6
    receiver.script(path, [Reply(delay=answer_takes)])
    order = interleaved("ab", 4)

    with serving(database, *flags, cwd=tmp_path) as first:
        with connect(first) as client:
            hook = make_webhook(client, f"organizations/{org}", receiver.url(path), ordering=PER_STACK)
            names = publish_in_order(client, org, order)
        # Killed just after a request arrived, while the receiver takes its time answering it.
        seen = len(receiver.wait_for(path, 2))
        eventually(lambda: len(receiver.received(path)) > seen, 30, "another request arrives", every=0.05)
        first.kill()
    killed_at = len(receiver.received(path))
    stranded = sql.execute(database, "SELECT delivery_id FROM delivery WHERE lease_owner IS NOT NULL")
    assert stranded, "the service was killed holding no claims: nothing was tested"

    with serving(database, *flags, cwd=tmp_path) as second, connect(second) as client:
        for deliveries in names.values():
            wait_for_delivery(client, deliveries[0], timeout=90)
        page = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook.name))
        assert {d.state for d in page.deliveries} == {SUCCEEDED}
        assert second.terminate() == 0

    for stack in "ab":
        received = arrivals(receiver, path, stack)
        assert without_repeats(labels(received)) == [label for label in order if label.startswith(stack)]
    again = len(receiver.received(path)) - len(order)
    print(f"killed after {killed_at} requests holding {len(stranded)} claims; {again} sent again after the restart")


def test_two_dispatchers_on_postgresql_keep_each_stacks_order(
    tmp_path: Path, postgres_cluster: PostgresCluster, receiver: Receiver
) -> None:
    url = postgres_cluster.new_database()
    token = cluster.new_deployment(url, tmp_path)
    path = f"/two-{uuid.uuid4().hex[:8]}"
    answer_takes = 0.03
    receiver.script(path, [Reply(delay=answer_takes)])
    org = "two-dispatchers"
    order = interleaved("abcd", 15)
    started: list[ServiceProcess] = []
    owners_seen: set[str] = set()
    done = threading.Event()

    def watch_sequences() -> None:
        while not done.is_set():
            owners_seen.update(owner for (owner,) in cluster.sql(url, "SELECT lease_owner FROM sequence_lease"))
            time.sleep(0.01)

    try:
        started.append(cluster.start_server(url, tmp_path, "--dispatch-concurrency", "0"))
        owners = {}
        for _ in range(2):
            # One request out (and one held) each: neither can take every stack's turn, so both must work.
            process, owner = cluster.start_dispatcher(url, tmp_path, "--webhook-concurrency", "1")
            started.append(process)
            owners[owner] = process
        watcher = threading.Thread(target=watch_sequences, daemon=True)
        watcher.start()
        with Client(started[0].target, token=token) as client:
            make_webhook(client, f"organizations/{org}", receiver.url(path), ordering=PER_STACK)
            names = publish_in_order(client, org, order)
            receiver.wait_for(path, len(order), timeout=60)
            for deliveries in names.values():
                wait_for_delivery(client, deliveries[0], timeout=30)
        done.set()
        watcher.join(10)
    finally:
        done.set()
        cluster.stop_all(started)

    for stack in "abcd":
        received = arrivals(receiver, path, stack)
        assert labels(received) == [label for label in order if label.startswith(stack)]
        assert_one_at_a_time(received, answer_takes)
    assert owners_seen <= owners.keys()
    assert len(owners_seen) == 2, f"one dispatcher did all the work: {owners_seen}"
    for process in started:
        assert "Traceback" not in process.log, process.log
