"""Secret rotation without downtime: the replaced secret keeps signing through the overlap, the new one signs
from the first moment, and once the overlap ends the old one signs nothing and is erased."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable

import grpc
import psycopg2
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support import sql
from tests.support.databases import Databases
from tests.support.receiver import Received, Receiver
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer
from tests.support.standard import signatures, verifier
from tests.support.waiting import eventually
from webhook_service.domain.idempotency import create_key
from webhook_service.domain.model import Webhook
from webhook_service.domain.names import Parent
from webhook_service.store import webhooks
from webhooks.v1 import webhook_pb2, webhook_service_pb2
from webhooks_client import Client, field_violations

OLD, NEW = "old-s3cr3t", "new-s3cr3t"
Start = Callable[..., RunningServer]


def rotate(
    client: Client, name: str, secret: str = "", overlap: float | None = None
) -> webhook_service_pb2.RotateWebhookSecretResponse:
    request = WS.RotateWebhookSecretRequest(name=name, secret=secret)
    if overlap is not None:
        request.overlap.CopyFrom(duration_pb2.Duration(seconds=int(overlap), nanos=round(overlap % 1 * 1e9)))
    return client.webhooks.RotateWebhookSecret(request)


def pulumi_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verifies(secret: str, request: Received) -> bool:
    try:
        verifier(secret).verify(request.body, request.headers)
    except Exception:
        return False
    return True


def pinged(client: Client, receiver: Receiver, path: str, name: str) -> Received:
    """The request of a ping, as the receiver got it."""
    before = len(receiver.received(path))
    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=name))
    return receiver.wait_for(path, before + 1)[-1]


def test_rotation_end_to_end(start_server: Start, databases: Databases, receiver: Receiver) -> None:
    server = start_server(erase_interval=0.2)
    client = server.client()
    path = f"/rotation/{databases.engine}"
    stack = "organizations/acme/projects/p/stacks/s"
    hook = make_webhook(client, "organizations/acme", receiver.url(path), secret=OLD)
    [before] = publish(client, seed.update_event(stack=stack)).deliveries
    wait_for_delivery(client, before)
    [first] = receiver.received(path)
    assert first.headers["Pulumi-Webhook-Signature"] == pulumi_signature(OLD, first.body)
    assert verifies(OLD, first) and not verifies(NEW, first)

    before = time.time()
    rotated = rotate(client, hook.name, NEW, overlap=5.0)
    assert rotated.secret == ""
    assert rotated.webhook.has_secret
    expires = rotated.webhook.previous_secret_expire_time.ToNanoseconds() / 1e9
    assert before + 5.0 - 0.01 <= expires <= time.time() + 5.0 + 0.01
    got = client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name))
    assert got.previous_secret_expire_time == rotated.webhook.previous_secret_expire_time
    [sealed] = sql.execute(server.settings.database, "SELECT previous_secret FROM webhook")[0]
    assert sealed.startswith("fernet:") and OLD not in sealed

    # During the overlap: a receiver still on the old secret checks Pulumi's header as before, and one that
    # switched verifies the Standard Webhooks header with the new secret from the first delivery on.
    [during] = publish(client, seed.update_event(stack=stack)).deliveries
    wait_for_delivery(client, during)
    request = receiver.received(path)[-1]
    assert request.at < expires, "this machine took longer than the overlap to deliver"
    assert request.headers["Pulumi-Webhook-Signature"] == pulumi_signature(OLD, request.body)
    assert len(signatures(request.headers)) == 2
    assert verifies(NEW, request) and verifies(OLD, request)

    # Once the overlap ends, the old secret signs nothing.
    eventually(
        lambda: (
            not client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name)).HasField("previous_secret_expire_time")
        ),
        30,
        "the overlap ends",
    )
    assert time.time() >= expires
    [after] = publish(client, seed.update_event(stack=stack)).deliveries
    wait_for_delivery(client, after)
    request = receiver.received(path)[-1]
    assert request.headers["Pulumi-Webhook-Signature"] == pulumi_signature(NEW, request.body)
    assert len(signatures(request.headers)) == 1
    assert verifies(NEW, request) and not verifies(OLD, request)

    # And it is erased: the column is overwritten and no copy of the sealed value stays in the files.
    eventually(
        lambda: sql.execute(server.settings.database, "SELECT previous_secret FROM webhook") == [("",)],
        30,
        "the replaced secret is erased",
    )
    # The scrub of the freed space (a vacuum on PostgreSQL) follows the erasing commit: wait for it.
    eventually(
        lambda: sealed.encode() not in databases.stored_bytes(server.settings.database, with_log=False),
        30,
        "no copy of the replaced secret stays in the database files",
        every=0.2,
    )


def test_a_generated_secret_is_returned_once_and_signs(
    server: RunningServer, client: Client, receiver: Receiver, org: str
) -> None:
    path = f"/generated/{org}"
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path), secret=OLD)
    rotated = rotate(client, hook.name, overlap=0)
    secret = rotated.secret
    assert len(secret) >= 43
    assert not rotated.webhook.HasField("previous_secret_expire_time")

    request = pinged(client, receiver, path, hook.name)
    assert request.headers["Pulumi-Webhook-Signature"] == pulumi_signature(secret, request.body)
    assert verifies(secret, request) and not verifies(OLD, request)
    got = client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name))
    listed = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}"))
    deliveries = client.webhooks.ListWebhookDeliveries(
        WS.ListWebhookDeliveriesRequest(parent=hook.name, view=2)  # FULL
    )
    for answer in (got, listed, deliveries):
        assert secret.encode() not in answer.SerializeToString()
    # Another rotation generates another secret.
    assert rotate(client, hook.name, overlap=0).secret not in ("", secret)


def test_rotating_during_an_overlap_keeps_the_secret_receivers_had(
    client: Client, receiver: Receiver, org: str
) -> None:
    path = f"/again/{org}"
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path), secret=OLD)
    rotate(client, hook.name, NEW)
    # A retry whose answer was lost, or a second thought: the old secret is still the one that stays.
    third = rotate(client, hook.name, overlap=3600).secret
    request = pinged(client, receiver, path, hook.name)
    assert request.headers["Pulumi-Webhook-Signature"] == pulumi_signature(OLD, request.body)
    assert verifies(third, request) and verifies(OLD, request) and not verifies(NEW, request)

    # Rotating to the current secret changes nothing but the overlap: 0s ends it early.
    again = rotate(client, hook.name, third, overlap=0)
    assert not again.webhook.HasField("previous_secret_expire_time")
    request = pinged(client, receiver, path, hook.name)
    assert request.headers["Pulumi-Webhook-Signature"] == pulumi_signature(third, request.body)
    assert len(signatures(request.headers)) == 1


def test_setting_the_secret_by_update_ends_an_overlap_unless_it_is_the_same(
    client: Client, receiver: Receiver, org: str
) -> None:
    path = f"/update/{org}"
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path), secret=OLD)
    rotate(client, hook.name, NEW)
    mask = field_mask_pb2.FieldMask(paths=["display_name", "secret"])
    # The same secret, as Pulumi's provider sends with every change: the overlap goes on.
    same = webhook_pb2.Webhook(name=hook.name, display_name="renamed", secret=NEW)
    kept = client.webhooks.UpdateWebhook(WS.UpdateWebhookRequest(webhook=same, update_mask=mask))
    assert kept.HasField("previous_secret_expire_time")
    assert verifies(OLD, pinged(client, receiver, path, hook.name))
    # Another secret takes over at once.
    other = webhook_pb2.Webhook(name=hook.name, display_name="renamed", secret="third")
    replaced = client.webhooks.UpdateWebhook(WS.UpdateWebhookRequest(webhook=other, update_mask=mask))
    assert not replaced.HasField("previous_secret_expire_time")
    request = pinged(client, receiver, path, hook.name)
    assert request.headers["Pulumi-Webhook-Signature"] == pulumi_signature("third", request.body)
    assert verifies("third", request) and not verifies(OLD, request) and not verifies(NEW, request)


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"overlap": 7 * 86400 + 1}, grpc.StatusCode.INVALID_ARGUMENT, "overlap"),
        ({"overlap": -1}, grpc.StatusCode.INVALID_ARGUMENT, "overlap"),
        ({"secret": "x" * 513}, grpc.StatusCode.INVALID_ARGUMENT, "secret"),
        ({"name": "organizations/acme/hooks/x"}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"name": "organizations/nobody/webhooks/x"}, grpc.StatusCode.NOT_FOUND, ""),
    ],
)
def test_bad_rotations_are_refused_and_change_nothing(
    client: Client, receiver: Receiver, org: str, change: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/refused/{org}"), secret=OLD)
    request = WS.RotateWebhookSecretRequest(
        name=str(change.get("name", hook.name)), secret=str(change.get("secret", ""))
    )
    if "overlap" in change:
        request.overlap.seconds = int(str(change["overlap"]))
    error = rpc_error(client.webhooks.RotateWebhookSecret, request)
    assert error.code() == code, error.details()
    assert list(field_violations(error)) == ([field] if field else [])
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name)) == hook


def test_rotations_are_logged_without_the_secrets(
    client: Client, receiver: Receiver, org: str, caplog: pytest.LogCaptureFixture
) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/logged/{org}"), secret=OLD)
    with caplog.at_level(logging.INFO):
        rotate(client, hook.name, NEW)
        generated = rotate(client, hook.name).secret
    assert f"rotated the secret of webhook {hook.name}; the one it replaced signs until" in caplog.text
    for secret in (OLD, NEW, generated):
        assert secret not in caplog.text


def test_rotation_through_the_rest_api(server: RunningServer, receiver: Receiver, org: str) -> None:
    rest = Rest(server, token_auth(server.admin_token))
    rest.ok("POST", f"/orgs/{org}/hooks", {"name": "h", "displayName": "H", "payloadUrl": receiver.url("/r")})
    named = rest.ok("POST", f"/orgs/{org}/hooks/h/rotate-secret", {"secret": NEW, "overlap": "1h"})
    assert set(named) == {"webhook"}
    assert named["webhook"]["hasSecret"] is True
    # It had no secret, so there is nothing to overlap with.
    assert "previousSecretExpireTime" not in named["webhook"]
    generated = rest.ok("POST", f"/orgs/{org}/hooks/h/rotate-secret")
    assert len(generated["secret"]) >= 43
    assert abs(generated["webhook"]["previousSecretExpireTime"] - (time.time() + 86400)) < 60
    # A webhook as GET returns it can be sent back.
    back = {k: v for k, v in rest.ok("GET", f"/orgs/{org}/hooks/h").items() if k != "organizationName"}
    rest.ok("PATCH", f"/orgs/{org}/hooks/h", back)
    refused = rest.call("POST", f"/orgs/{org}/hooks/h/rotate-secret", {"overlap": "forever"})
    assert refused.status == 400 and refused.json["message"].startswith("overlap: ")
    refused = rest.call("POST", f"/orgs/{org}/hooks/h/rotate-secret", {"secrets": "x"})
    assert refused.status == 400 and refused.json["message"].startswith("secrets: ")
    assert rest.call("POST", f"/orgs/{org}/hooks/nope/rotate-secret").status == 404


def test_a_create_reads_for_its_request_id_as_before_rotations_existed() -> None:
    """A request_id remembered by the release before this one still matches the repeat of its create."""
    webhook = Webhook(Parent("acme"), "w", "W", "https://example.com/", secret="s")
    key = create_key("request-1", webhook, "w")
    assert key is not None
    assert json.loads(key.request) == {
        "parent": {"organization": "acme", "project": "", "stack": ""},
        "webhook_id": "w",
        "display_name": "W",
        "payload_url": "https://example.com/",
        "secret": "s",
        "active": True,
        "format": "raw",
        "filters": [],
        "groups": [],
        "disabled_reason": "",
        "create_time": None,
        "update_time": None,
    }


def test_a_transaction_open_at_the_erasure_does_not_keep_the_replaced_secret_on_disk(
    start_server: Start, databases: Databases
) -> None:
    """PostgreSQL's vacuum keeps a row version a running snapshot may still read, copying it into the new file: the
    scrub waits for the transactions open when it began (an autovacuum's analyze, a report) before it runs."""
    if databases.engine != "postgresql":
        pytest.skip("SQLite's scrub is a checkpoint, which a reader holding the log cannot complete; not this case")
    server = start_server(erase_interval=3600.0)  # erased below, by hand
    client = server.client()
    url = server.settings.database
    hook = make_webhook(client, "organizations/acme", "https://example.com/hook", secret=OLD)
    rotate(client, hook.name, secret=NEW, overlap=0.5)
    [(sealed,)] = sql.execute(url, "SELECT previous_secret FROM webhook")
    assert sealed

    # A transaction whose snapshot still sees the row version holding the replaced secret, without a lock on the
    # webhooks that would hold the vacuum back anyway.
    reader = psycopg2.connect(url)
    try:
        reader.set_session(isolation_level="REPEATABLE READ")
        with reader.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM event")
        time.sleep(0.6)  # the overlap ends
        store = server.server.store
        assert store is not None
        erasing = threading.Thread(target=lambda: server.run(store.run(webhooks.erase_expired_secrets)))
        erasing.start()
        erasing.join(1.0)
        assert erasing.is_alive(), "the scrub waits for the reader"
    finally:
        reader.rollback()
        reader.close()
    erasing.join(30)
    assert not erasing.is_alive()
    assert sql.execute(url, "SELECT previous_secret FROM webhook") == [("",)]
    assert sealed.encode() not in databases.stored_bytes(url, with_log=False)
