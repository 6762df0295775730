"""The request-forgery guard in the running service: refused on create and update, and at connect time."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests import seed
from tests.helpers import LOCALHOST_REFUSED, WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.databases import Databases
from tests.support.receiver import Receiver, Reply
from tests.support.running import LOOPBACK, RunningServer, settings_in
from webhook_service.dispatch.settings import DispatchSettings
from webhooks.v1 import delivery_pb2, webhook_pb2
from webhooks_client import field_violations

Start = Callable[..., RunningServer]
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
STACK = "organizations/acme/projects/p/stacks/s"

BLOCKED_LITERALS = [
    ("127.0.0.1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "100.64.0.0/10"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "240.0.0.0/4"),
    ("255.255.255.255", "255.255.255.255"),
    ("0.0.0.0", "0.0.0.0/8"),
    ("[::1]", "loopback"),
    ("[::]", "::"),
    ("[fe80::1]", "link-local"),
    ("[fc00::1]", "fc00::/7"),
    ("[ff02::1]", "multicast"),
    ("[::ffff:127.0.0.1]", "maps to 127.0.0.1"),
    ("[::ffff:169.254.169.254]", "maps to 169.254.169.254"),
    ("[64:ff9b::10.0.0.1]", "10.0.0.1"),
    ("2130706433", "loopback"),
    ("0x7f000001", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("0x7f.1", "loopback"),
    ("localhost", "loopback"),
    ("api.localhost", "loopback"),
]


@pytest.fixture
def guarded(start_server: Start) -> RunningServer:
    return start_server(allow_network=())


@pytest.mark.parametrize(("host", "words"), BLOCKED_LITERALS, ids=[h for h, _ in BLOCKED_LITERALS])
def test_create_refuses_blocked_literal_addresses(guarded: RunningServer, host: str, words: str) -> None:
    with guarded.client() as client:
        error = rpc_error(
            client.webhooks.CreateWebhook,
            WS.CreateWebhookRequest(
                parent="organizations/acme",
                webhook=webhook_pb2.Webhook(display_name="x", payload_url=f"http://{host}:8080/hook"),
            ),
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        [(field, description)] = field_violations(error).items()
        assert field == "webhook.payload_url"
        assert words in description
        assert "--allow-network" in description
        assert list(client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme")).webhooks) == []


def test_update_refuses_them_too_and_changes_nothing(guarded: RunningServer) -> None:
    with guarded.client() as client:
        hook = make_webhook(client, "organizations/acme", "https://hooks.example.com/ok")
        error = rpc_error(
            client.webhooks.UpdateWebhook,
            WS.UpdateWebhookRequest(
                webhook=webhook_pb2.Webhook(name=hook.name, payload_url="http://169.254.169.254/latest/meta-data")
            ),
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "link-local" in field_violations(error)["webhook.payload_url"]
        assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name)) == hook


def test_public_addresses_and_names_are_accepted(guarded: RunningServer) -> None:
    with guarded.client() as client:
        for url in ("https://93.184.216.34/x", "https://[2606:4700::1111]/x", "https://hooks.slack.com/services/x"):
            make_webhook(client, "organizations/acme", url)


def reopened_without_loopback(tmp_path: Path, databases: Databases, url: str) -> RunningServer:
    """A server whose webhook to `url` was saved while loopback was allowed, restarted with it closed."""
    database = databases.new(tmp_path)
    opened = RunningServer(settings_in(tmp_path, database, DispatchSettings(allow_network=LOOPBACK)))
    with opened.client() as client:
        make_webhook(client, "organizations/acme", url)
    opened.stop()
    # The operator closes the range on purpose: the new settings replace the ones the database holds.
    closing = DispatchSettings(allow_network=(), retry_schedule=(0.0,))
    return RunningServer(settings_in(tmp_path, database, closing, take_over_settings=True))


def test_a_name_resolving_to_loopback_is_refused_when_connecting(
    tmp_path: Path, databases: Databases, receiver: Receiver
) -> None:
    closed = reopened_without_loopback(tmp_path, databases, receiver.url("/via-name").replace("127.0.0.1", "localhost"))
    try:
        with closed.client() as client:
            [hook] = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme")).webhooks
            ping = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
            [name] = publish(client, seed.update_event(stack=STACK)).deliveries
            delivery = wait_for_delivery(client, name, FAILED)
        for failed in (ping, delivery):
            assert failed.state == FAILED
            assert failed.response_code == 0
            assert re.search(LOCALHOST_REFUSED, failed.error), failed.error
            assert "--allow-network" in failed.error
        assert receiver.received("/via-name") == []
    finally:
        closed.stop()


def test_a_stored_literal_is_refused_once_the_range_is_closed(
    tmp_path: Path, databases: Databases, receiver: Receiver
) -> None:
    closed = reopened_without_loopback(tmp_path, databases, receiver.url("/closed-later"))
    try:
        with closed.client() as client:
            [name] = publish(client, seed.update_event(stack=STACK)).deliveries
            delivery = wait_for_delivery(client, name, FAILED)
        assert delivery.error.startswith("BlockedAddress: refusing to connect: 127.0.0.1 is in 127.0.0.0/8 (loopback)")
        assert receiver.received("/closed-later") == []
    finally:
        closed.stop()


def test_a_redirect_toward_a_blocked_address_is_not_followed(start_server: Start, receiver: Receiver) -> None:
    running = start_server(retry_schedule=(0.0,))
    receiver.script("/to-metadata", [Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})])
    with running.client() as client:
        make_webhook(client, "organizations/acme", receiver.url("/to-metadata"))
        [name] = publish(client, seed.update_event(stack=STACK)).deliveries
        delivery = wait_for_delivery(client, name, FAILED)
    assert delivery.response_code == 302
    assert delivery.attempt_count == 1
