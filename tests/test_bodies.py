"""An event's deliveries of one format share one stored body: each receiver still gets its format's exact
bytes, every view and redelivery shows them, deliveries stored before keep their own, and bodies go when
nothing sends them any more."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from playhouse.db_url import connect

from tests import seed
from tests.helpers import WS, delivery_id, get_delivery, make_webhook, publish, wait_for_delivery
from tests.support.databases import Databases
from tests.support.receiver import Receiver
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer, settings_in
from tests.support.sql import execute
from tests.support.tokens import create_key
from tests.support.waiting import eventually
from webhook_service.store import schema
from webhook_service.store.models import bound_to
from webhooks.v1 import delivery_pb2, webhook_pb2
from webhooks_client import Client

Start = Callable[..., RunningServer]
SLACK = webhook_pb2.WEBHOOK_FORMAT_SLACK
FULL = delivery_pb2.WEBHOOK_DELIVERY_VIEW_FULL


def stack_of(org: str) -> str:
    return f"organizations/{org}/projects/website/stacks/website-prod"


def bodies_of(url: str, org: str) -> int:
    """The bodies stored for the organization's events."""
    [(count,)] = execute(
        url, "SELECT COUNT(*) FROM body b JOIN event e ON e.id = b.event_id WHERE e.organization = %s", (org,)
    )
    return int(count)


def inline_bytes(url: str, event_id: str) -> int:
    """The bytes the event's deliveries hold in their own rows."""
    [(total,)] = execute(
        url,
        "SELECT COALESCE(SUM(LENGTH(d.payload)), 0) FROM delivery d JOIN event e ON e.id = d.event_id"
        " WHERE e.event_id = %s",
        (event_id,),
    )
    return int(total)


def hooks(client: Client, receiver: Receiver, org: str, names: list[str], **fields: object) -> dict[str, str]:
    """Organization webhooks posting to the receiver at /`org`/`name`; their names by short name."""
    return {
        name: make_webhook(
            client, f"organizations/{org}", receiver.url(f"/{org}/{name}"), webhook_id=name, **fields
        ).name
        for name in names
    }


def test_an_events_deliveries_of_one_format_share_a_body_and_each_receiver_gets_its_exact_bytes(
    server: RunningServer, client: Client, receiver: Receiver, org: str
) -> None:
    url = server.settings.database
    event = seed.update_event(stack=stack_of(org))
    # One webhook of each format: each delivery keeps its body in its own row, as every delivery did before.
    made = {**hooks(client, receiver, org, ["raw-1"]), **hooks(client, receiver, org, ["slack-1"], format=SLACK)}
    alone = publish(client, event)
    expected = {
        "raw": receiver.wait_for(f"/{org}/raw-1", 1)[0].body,
        "slack": receiver.wait_for(f"/{org}/slack-1", 1)[0].body,
    }
    assert bodies_of(url, org) == 0 and inline_bytes(url, alone.event_id) > 0

    made |= hooks(client, receiver, org, ["raw-2", "raw-3"]) | hooks(client, receiver, org, ["slack-2"], format=SLACK)
    shared = publish(client, event)
    assert len(shared.deliveries) == 5
    assert bodies_of(url, org) == 2
    assert inline_bytes(url, shared.event_id) == 0
    for name, hook in made.items():
        sent = expected[name.split("-")[0]]
        received = receiver.wait_for(f"/{org}/{name}", 2 if name.endswith("-1") else 1)
        assert received[-1].body == sent, name
        [delivery] = [d for d in shared.deliveries if d.startswith(hook + "/")]
        assert wait_for_delivery(client, delivery).payload.encode() == sent, name

    listed = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=made["raw-2"], view=FULL))
    assert [d.payload.encode() for d in listed.deliveries] == [expected["raw"]]
    rest = Rest(server, token_auth(server.admin_token)).call("GET", f"/orgs/{org}/hooks/raw-2/deliveries")
    assert [d["payload"].encode() for d in rest.json] == [expected["raw"]]

    [delivery] = listed.deliveries
    again = client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=delivery.name))
    assert again.payload.encode() == expected["raw"]
    assert [r.body for r in receiver.wait_for(f"/{org}/raw-2", 2)] == [expected["raw"]] * 2


def test_deleting_a_webhook_keeps_the_body_another_webhooks_delivery_sends(
    server: RunningServer, client: Client, receiver: Receiver, org: str
) -> None:
    url = server.settings.database
    made = hooks(client, receiver, org, ["raw-1", "raw-2"]) | hooks(client, receiver, org, ["s-1", "s-2"], format=SLACK)
    published = publish(client, seed.update_event(stack=stack_of(org)))
    for delivery in published.deliveries:
        wait_for_delivery(client, delivery)
    sent = receiver.wait_for(f"/{org}/raw-2", 1)[0].body
    assert bodies_of(url, org) == 2

    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=made["raw-1"]))
    assert bodies_of(url, org) == 2
    [kept] = [d for d in published.deliveries if d.startswith(made["raw-2"] + "/")]
    assert get_delivery(client, kept).payload.encode() == sent
    client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=kept))
    assert [r.body for r in receiver.wait_for(f"/{org}/raw-2", 2)] == [sent, sent]

    # The last webhooks of a format to go take its body with them.
    for name in ("s-1", "s-2"):
        client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=made[name]))
    assert bodies_of(url, org) == 1
    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=made["raw-2"]))
    assert bodies_of(url, org) == 0


def test_retention_takes_old_events_bodies_with_them_and_keeps_the_recent(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    server = start_server(retention=3600.0, prune_interval=0.2)
    url = server.settings.database
    with server.client() as client:
        hooks(client, receiver, org, ["a", "b"])
        old, recent = (publish(client, seed.update_event(stack=stack_of(org))) for _ in range(2))
        for delivery in (*old.deliveries, *recent.deliveries):
            wait_for_delivery(client, delivery)
    assert bodies_of(url, org) == 2
    # The old event and its deliveries are made two hours old, as if published then.
    execute(
        url,
        "UPDATE delivery SET create_time = create_time - 7200"
        " WHERE event_id = (SELECT id FROM event WHERE event_id = %s)",
        (old.event_id,),
    )
    execute(url, "UPDATE event SET create_time = create_time - 7200 WHERE event_id = %s", (old.event_id,))

    def left() -> list[tuple[object, ...]]:
        return execute(url, "SELECT e.event_id FROM body b JOIN event e ON e.id = b.event_id", ())

    eventually(
        lambda: left() == [(recent.event_id,)], 30, lambda: f"the old event's body goes; left {left()}", every=0.2
    )
    [(deliveries,)] = execute(url, "SELECT COUNT(*) FROM delivery", ())
    assert deliveries == 2


def test_deliveries_stored_before_shared_bodies_still_go_out_and_show_their_payload(
    tmp_path: Path, databases: Databases, receiver: Receiver
) -> None:
    """A delivery queued by the release before keeps its body in its own row through the upgrade."""
    url = databases.new(tmp_path)
    path = f"/queued-before-{databases.engine}"
    legacy = b'{"queued": "before the upgrade"}'
    db = connect(url)
    with bound_to(db), db.connection_context():
        schema.migrate(db, target=schema.LATEST - 1)
        mark = "?" if url.startswith("sqlite") else "%s"
        moment = time.time()
        db.execute_sql(
            "INSERT INTO webhook (organization, project, stack, webhook_id, display_name, payload_url, secret, active,"
            " format, filters, groups, disabled_reason, create_time, update_time)"
            f" VALUES ('acme', '', '', 'old', 'Old', {mark}, '', TRUE, 'raw', '', '', '', {mark}, {mark})",
            (receiver.url(path), moment, moment),
        )
        db.execute_sql(
            "INSERT INTO event (event_id, organization, project, stack, kind, create_time)"
            f" VALUES ('evt-old', 'acme', 'p', 's', 'stack_update', {mark})",
            (moment,),
        )
        db.execute_sql(
            "INSERT INTO delivery (delivery_id, webhook_id, event_id, kind, payload, state, attempt_count,"
            " next_attempt_time, create_time) SELECT 'dlv-old', w.id, e.id, 'stack_update',"
            f" {mark}, 'pending', 0, {mark}, {mark} FROM webhook w, event e",
            (legacy, moment, moment),
        )
    db.close()

    settings = settings_in(tmp_path, url)
    create_key(settings.secret_key_file)
    running = RunningServer(settings)
    try:
        with running.client() as client:
            name = "organizations/acme/webhooks/old/deliveries/dlv-old"
            assert [r.body for r in receiver.wait_for(path, 1)] == [legacy]
            assert wait_for_delivery(client, name).payload.encode() == legacy
            listed = client.webhooks.ListWebhookDeliveries(
                WS.ListWebhookDeliveriesRequest(parent="organizations/acme/webhooks/old", view=FULL)
            )
            assert [(delivery_id(d.name), d.payload.encode()) for d in listed.deliveries] == [("dlv-old", legacy)]
    finally:
        running.stop()
