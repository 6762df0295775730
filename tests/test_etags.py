"""Updates without traps: an etag on every webhook that a stale update is refused on (ABORTED), and a `*` mask
that keeps the secret it cannot see."""

from __future__ import annotations

import hashlib
import hmac

import grpc
from google.protobuf import field_mask_pb2

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.receiver import Receiver, Reply
from webhooks.v1 import delivery_pb2, webhook_pb2
from webhooks_client import Client, error_reason, field_violations

Webhook = webhook_pb2.Webhook


def update(client: Client, webhook: Webhook, *paths: str) -> Webhook:
    return client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook, update_mask=field_mask_pb2.FieldMask(paths=list(paths)))
    )


def get(client: Client, name: str) -> Webhook:
    return client.webhooks.GetWebhook(WS.GetWebhookRequest(name=name))


def test_every_webhook_carries_an_etag_that_changes_with_it(client: Client, org: str) -> None:
    made = make_webhook(client, f"organizations/{org}", "https://example.com/h")
    assert made.etag
    assert get(client, made.name).etag == made.etag
    [listed] = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}")).webhooks
    assert listed.etag == made.etag

    renamed = update(client, Webhook(name=made.name, display_name="Renamed", etag=made.etag), "display_name")

    assert renamed.display_name == "Renamed"
    assert renamed.etag not in ("", made.etag)
    assert get(client, made.name).etag == renamed.etag


def test_an_update_with_a_stale_etag_is_aborted_and_changes_nothing(client: Client, org: str) -> None:
    """Two editors read the same webhook; the second to write loses instead of silently undoing the first."""
    read = make_webhook(client, f"organizations/{org}", "https://example.com/h")
    first = update(client, Webhook(name=read.name, display_name="First", etag=read.etag), "display_name")

    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(
            webhook=Webhook(name=read.name, payload_url="https://example.com/second", etag=read.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["payload_url"]),
        ),
    )

    assert error.code() == grpc.StatusCode.ABORTED
    assert error_reason(error) == "ETAG_MISMATCH"
    assert get(client, read.name) == first
    # Without an etag there is no check, as before.
    assert update(client, Webhook(name=read.name, display_name="Anyone"), "display_name").display_name == "Anyone"


def test_a_webhook_deleted_and_made_again_does_not_take_the_old_etag(client: Client, org: str) -> None:
    old = make_webhook(client, f"organizations/{org}", "https://example.com/h", webhook_id="again")
    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=old.name))
    new = make_webhook(client, f"organizations/{org}", "https://example.com/h", webhook_id="again")

    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(webhook=Webhook(name=new.name, display_name="x", etag=old.etag)),
    )

    assert error.code() == grpc.StatusCode.ABORTED


def test_the_service_deactivating_a_webhook_changes_its_etag(client: Client, receiver: Receiver, org: str) -> None:
    path = f"/gone/{org}"
    receiver.script(path, [Reply(410)])
    read = make_webhook(client, f"organizations/{org}", receiver.url(path))
    [name] = publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")).deliveries
    wait_for_delivery(client, name, delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED)

    gone = get(client, read.name)
    assert not gone.active
    assert gone.etag != read.etag
    # An editor who read it before cannot turn it back on without seeing why it was turned off.
    stale = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(webhook=Webhook(name=read.name, active=True, etag=read.etag)),
    )
    assert stale.code() == grpc.StatusCode.ABORTED


def test_etag_in_the_mask_is_refused(client: Client, org: str) -> None:
    made = make_webhook(client, f"organizations/{org}", "https://example.com/h")
    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(
            webhook=Webhook(name=made.name, etag="x"), update_mask=field_mask_pb2.FieldMask(paths=["etag"])
        ),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["update_mask"]
    assert error_reason(error) == "INVALID_UPDATE_MASK"


def signed_with(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_star_mask_keeps_the_secret_a_get_never_shows(client: Client, receiver: Receiver, org: str) -> None:
    """Get, change, send back with `*`: the secret, which the Get did not return, still signs deliveries."""
    path = f"/star/{org}"
    made = make_webhook(client, f"organizations/{org}", receiver.url(path), secret="s3cr3t")
    read = get(client, made.name)
    read.display_name = "Replaced"

    replaced = update(client, read, "*")

    assert replaced.display_name == "Replaced"
    assert replaced.has_secret
    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=made.name))
    [ping] = receiver.wait_for(path, 1)
    assert ping.headers["Pulumi-Webhook-Signature"] == signed_with("s3cr3t", ping.body)

    # A new secret given with `*` replaces it; only a mask that names `secret` clears it.
    update(client, Webhook(name=made.name, display_name="Again", payload_url=receiver.url(path), secret="new"), "*")
    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=made.name))
    second = receiver.wait_for(path, 2)[-1]
    assert second.headers["Pulumi-Webhook-Signature"] == signed_with("new", second.body)
    cleared = update(client, Webhook(name=made.name), "secret")
    assert not cleared.has_secret
    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=made.name))
    assert "Pulumi-Webhook-Signature" not in receiver.wait_for(path, 3)[-1].headers
