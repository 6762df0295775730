"""Versioned schema: a database of every earlier version upgrades in place with its data intact,
and a database newer than this release is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from playhouse.db_url import connect

from tests import seed
from tests.helpers import WS, wait_for_delivery
from tests.support.databases import Databases
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver
from tests.support.running import RunningServer, settings_in
from tests.support.tokens import create_key
from webhook_service.store import schema
from webhook_service.store.models import bound_to
from webhooks.v1 import delivery_pb2, event_service_pb2, webhook_pb2

ES = event_service_pb2
LEGACY_DELIVERY = "organizations/acme/webhooks/legacy/deliveries/dlv-1"


def build_at(url: str, version: int, payload_url: str) -> None:
    """A database at `version`, filled through plain SQL as that release wrote it."""
    db = connect(url)
    try:
        with bound_to(db), db.connection_context():
            schema.migrate(db, target=version)
            now = time.time()
            # Before secrets were encrypted at rest, they were stored as typed.
            db.execute_sql(
                "INSERT INTO webhook (organization, project, stack, webhook_id, display_name, payload_url, secret,"
                " active, format, filters, groups, disabled_reason, create_time, update_time)"
                " VALUES ('acme', '', '', 'legacy', 'Legacy', %s, 'old-secret', TRUE, 'raw', 'update_failed',"
                " 'deployments', '', %s, %s)".replace("%s", "?" if url.startswith("sqlite") else "%s"),
                (payload_url, now, now),
            )
            [(webhook_row,)] = db.execute_sql("SELECT id FROM webhook").fetchall()
            placeholder = "?" if url.startswith("sqlite") else "%s"
            db.execute_sql(
                "INSERT INTO event (event_id, organization, project, stack, kind, create_time)"
                f" VALUES ('evt-1', 'acme', 'p', 's', 'stack_update', {placeholder})",
                (now,),
            )
            [(event_row,)] = db.execute_sql("SELECT id FROM event").fetchall()
            db.execute_sql(
                "INSERT INTO delivery (delivery_id, webhook_id, event_id, kind, payload, state, attempt_count,"
                f" next_attempt_time, create_time) VALUES ('dlv-1', {placeholder}, {placeholder}, 'stack_update',"
                f" {placeholder}, 'succeeded', 1, NULL, {placeholder})",
                (webhook_row, event_row, b'{"kind":"update"}', now),
            )
            [(delivery_row,)] = db.execute_sql("SELECT id FROM delivery").fetchall()
            db.execute_sql(
                "INSERT INTO delivery_attempt (delivery_id, attempt_number, start_time, request_url, request_headers,"
                " response_code, response_headers, response_body, duration, error) VALUES"
                f" ({placeholder}, 1, {placeholder}, 'http://x', '{{}}', 200, '{{}}', 'ok', 0.01, '')",
                (delivery_row, now),
            )
            # Before request_id keys were per organization, a key was the method and the request_id alone.
            db.execute_sql(
                "INSERT INTO idempotency_key (scope, request_id, response, create_time) VALUES"
                f" ('CreateWebhook', 'legacy-create', 'organizations/acme/webhooks/legacy', {placeholder}),"
                f" ('PublishEvent', 'legacy-publish', {placeholder}, {placeholder})",
                (now, json.dumps({"event_id": "evt-1", "deliveries": [LEGACY_DELIVERY]}), now),
            )
    finally:
        db.close()


@pytest.mark.parametrize("version", range(1, schema.LATEST))
def test_an_older_database_upgrades_in_place_with_its_data(
    tmp_path: Path, databases: Databases, receiver: Receiver, version: int
) -> None:
    url = databases.new(tmp_path)
    path = f"/legacy-{databases.engine}-{version}"
    build_at(url, version, receiver.url(path))

    settings = settings_in(tmp_path, url)
    # A database with webhooks gets no key made for it unasked; one written before encryption at rest never had one.
    create_key(settings.secret_key_file)
    running = RunningServer(settings)
    try:
        with running.client() as client:
            name = "organizations/acme/webhooks/legacy"
            webhook = client.webhooks.GetWebhook(WS.GetWebhookRequest(name=name))
            assert webhook.display_name == "Legacy"
            assert webhook.has_secret
            assert list(webhook.groups) == [2]
            # Health counts from the upgrade on: the delivery made before it is not counted.
            assert not webhook.HasField("last_success_time") and not webhook.HasField("failing_since")
            assert (webhook.pending_deliveries, webhook.succeeded_attempts_24h, webhook.failed_attempts_24h) == (
                0,
                0,
                0,
            )
            # Webhooks from before etags get one, which a later change replaces.
            same = webhook_pb2.Webhook(name=name, display_name="Legacy", etag=webhook.etag)
            renamed = client.webhooks.UpdateWebhook(WS.UpdateWebhookRequest(webhook=same))
            assert webhook.etag and renamed.etag != webhook.etag
            delivery = client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=f"{name}/deliveries/dlv-1"))
            assert delivery.state == delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
            assert delivery.event_id == "evt-1"
            assert json.loads(delivery.payload) == {"kind": "update"}
            assert [a.response_body for a in delivery.attempts] == ["ok"]
            # The old secret still signs, now that it is stored encrypted.
            client.webhooks.PingWebhook(WS.PingWebhookRequest(name=name))
            # Keys stored without an organization match no request again.
            created = client.webhooks.CreateWebhook(
                WS.CreateWebhookRequest(
                    parent="organizations/acme",
                    webhook=webhook_pb2.Webhook(display_name="New", payload_url=receiver.url("/new")),
                    request_id="legacy-create",
                )
            )
            assert created.name != name and created.display_name == "New"
            # A refresh that succeeded: the legacy webhook's filters leave it out, so its receiver sees the ping alone.
            event = seed.update_event(stack="organizations/acme/projects/p/stacks/s")
            published = client.events.PublishEvent(ES.PublishEventRequest(event=event, request_id="legacy-publish"))
            assert published.event_id != "evt-1"
            assert LEGACY_DELIVERY not in published.deliveries
            # ... and the new webhook, which takes every event, counts its first attempt.
            [fresh] = [d for d in published.deliveries if d.startswith(created.name)]
            wait_for_delivery(client, fresh)
            counted = client.webhooks.GetWebhook(WS.GetWebhookRequest(name=created.name))
            assert (counted.succeeded_attempts_24h, counted.HasField("last_success_time")) == (1, True)
            # Upgraded rows rotate like new ones: the old secret keeps Pulumi's header through the overlap.
            rotated = client.webhooks.RotateWebhookSecret(WS.RotateWebhookSecretRequest(name=name, secret="new"))
            assert rotated.webhook.HasField("previous_secret_expire_time")
            client.webhooks.PingWebhook(WS.PingWebhookRequest(name=name))
        [ping, during_rotation] = receiver.received(path)
        for request in (ping, during_rotation):
            expected = hmac.new(b"old-secret", request.body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(request.headers["Pulumi-Webhook-Signature"], expected)
        assert len(during_rotation.headers["webhook-signature"].split()) == 2
        assert b"old-secret" not in databases.stored_bytes(url, with_log=False)
    finally:
        running.stop()
    db = connect(url)
    with db.connection_context():
        assert schema.current_version(db) == schema.LATEST


def test_a_database_newer_than_this_release_is_refused(tmp_path: Path, databases: Databases) -> None:
    url = databases.new(tmp_path)
    db = connect(url)
    with bound_to(db), db.connection_context():
        schema.migrate(db)
        schema.SchemaVersionRow.insert(version=schema.LATEST + 1).execute()
    refused = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", url], cwd=tmp_path, wait_for_port=False)
    assert refused.process.wait(30) == 1
    refused._reader.join(5)
    assert f"schema version {schema.LATEST + 1}, newer than this release's {schema.LATEST}" in refused.log
