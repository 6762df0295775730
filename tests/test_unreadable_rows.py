"""A row this release cannot read fails that webhook or that delivery, never the others."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests import seed
from tests.helpers import get_delivery, make_webhook, publish, wait_for_delivery
from tests.support.receiver import Receiver
from tests.support.running import RunningServer, settings_in
from tests.support.sql import execute
from tests.support.tokens import create_key
from webhook_service.store.secrets import PREFIX
from webhooks.v1 import delivery_pb2, webhook_service_pb2

Start = Callable[..., RunningServer]
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED


def test_unreadable_webhooks_fail_alone(start_server: Start, receiver: Receiver, org: str) -> None:
    server = start_server(retry_schedule=(2.0,))
    url = server.settings.database
    parent = f"organizations/{org}"
    with server.client() as client:
        good = make_webhook(client, parent, receiver.url(f"/{org}/good"), webhook_id="good")
        other_key = make_webhook(client, parent, receiver.url(f"/{org}/other-key"), webhook_id="other-key", secret="s")
        newer = make_webhook(client, parent, receiver.url(f"/{org}/newer"), webhook_id="newer")
        # Queued now, sent in two seconds: by then one secret is sealed by another key.
        names = publish(client, seed.update_event(stack=f"{parent}/projects/p/stacks/s")).deliveries
        sealed_elsewhere = PREFIX + Fernet(Fernet.generate_key()).encrypt(b"s").decode()
        execute(url, "UPDATE webhook SET secret = %s WHERE webhook_id = %s", (sealed_elsewhere, "other-key"))
        execute(url, "UPDATE webhook SET format = %s WHERE webhook_id = %s", ("carrier_pigeon", "newer"))

        by_webhook = {name.split("/deliveries/")[0]: name for name in names}
        assert wait_for_delivery(client, by_webhook[good.name]).response_code == 200
        failed = wait_for_delivery(client, by_webhook[other_key.name], FAILED)
        assert "cannot be decrypted" in failed.attempts[0].error
        assert receiver.received(f"/{org}/other-key") == []

        listed = client.webhooks.ListWebhooks(webhook_service_pb2.ListWebhooksRequest(parent=parent)).webhooks
        shown = {w.name: w for w in listed}
        for broken in (other_key, newer):
            assert not shown[broken.name].active
            assert "cannot be read" in shown[broken.name].disabled_reason
        assert "carrier_pigeon" in shown[newer.name].disabled_reason
        assert shown[good.name].active
        assert client.webhooks.GetWebhook(webhook_service_pb2.GetWebhookRequest(name=newer.name)).active is False

        # Publishing goes on, to the webhooks that can be read.
        again = publish(client, seed.update_event(stack=f"{parent}/projects/p/stacks/s")).deliveries
        assert [name.split("/deliveries/")[0] for name in again] == [good.name]
        assert get_delivery(client, again[0]).state != FAILED


def test_a_database_sealed_with_another_key_is_refused_naming_the_key_file(
    start_server: Start, tmp_path: Path, org: str
) -> None:
    first = start_server()
    with first.client() as client:
        make_webhook(client, f"organizations/{org}", "https://example.com/hook", secret="s3cr3t")
    other_folder = tmp_path / "elsewhere"
    settings = settings_in(other_folder, first.settings.database)
    create_key(settings.secret_key_file)
    with pytest.raises(RuntimeError) as refused:
        RunningServer(settings)
    message = str(refused.value)
    assert str(settings.secret_key_file) in message
    assert "another key" in message
    assert "s3cr3t" not in message


def test_attempts_stored_before_answers_were_escaped_still_read(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    """An attempt row holding undecodable bytes and unbounded headers, as the earlier release wrote
    them, reads back escaped and capped instead of failing the delivery log."""
    server = start_server()
    url = server.settings.database
    with server.client() as client:
        hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}"))
        ping = client.webhooks.PingWebhook(webhook_service_pb2.PingWebhookRequest(name=hook.name))
        headers = '{"X-Bad": "\\udcff\\udcfe", "X-Big": "' + "a" * 100_000 + '"}'
        execute(url, "UPDATE delivery_attempt SET response_headers = %s", (headers,))

        for read in (
            lambda: get_delivery(client, ping.name),
            lambda: client.webhooks.ListWebhookDeliveries(
                webhook_service_pb2.ListWebhookDeliveriesRequest(
                    parent=hook.name, view=delivery_pb2.WEBHOOK_DELIVERY_VIEW_FULL
                )
            ).deliveries[0],
        ):
            delivery = read()
            assert delivery.response_headers["X-Bad"] == "\\xff\\xfe"
            assert "X-Big" not in delivery.response_headers
            assert sum(len(k) + len(v) for k, v in delivery.response_headers.items()) <= 16 * 1024
