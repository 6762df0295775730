"""First start, transport security, secrets at rest and limits on hostile input."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.certs import Authority
from tests.support.databases import Databases
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.tokens import create_key, create_token
from webhook_service.domain.limits import MAX_WEBHOOKS_PER_ORGANIZATION, MAX_WEBHOOKS_PER_STACK
from webhook_service.process import TlsSettings
from webhooks.v1 import event_service_pb2, webhook_pb2, webhook_service_pb2_grpc
from webhooks_client import Client, field_violations

Start = Callable[..., RunningServer]


def test_first_start_writes_an_admin_token_readable_by_its_owner_only(tmp_path: Path) -> None:
    service = ServiceProcess(["serve", "--listen", "127.0.0.1:0"], cwd=tmp_path)
    try:
        token_file = tmp_path / "data" / "admin-token"
        key_file = tmp_path / "data" / "secret.key"
        assert f"created the first admin token; it is in {token_file}" in service.log
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert token not in service.log
        with Client(service.target, token=token) as client:
            client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme"))
    finally:
        assert service.terminate() == 0
    again = ServiceProcess(["serve", "--listen", "127.0.0.1:0"], cwd=tmp_path)
    try:
        assert "created the first admin token" not in again.log
        # A later start says again where the token is.
        assert f"the admin token made at the first start is in {token_file}" in again.log
        assert token_file.read_text().strip() == token
    finally:
        again.terminate()
    # Not when the file holds another database's token.
    other_database = f"sqlite:///{tmp_path / 'other.db'}"
    create_token(other_database, "admin", "*")
    other = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", other_database], cwd=tmp_path)
    try:
        assert "the admin token made at the first start" not in other.log
        assert "data/admin-token holds no valid token of this database" in other.log
    finally:
        other.terminate()


def test_insecure_no_auth_must_be_asked_for_and_warns(tmp_path: Path) -> None:
    service = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth"], cwd=tmp_path)
    try:
        assert "WITHOUT authentication" in service.log
        assert not (tmp_path / "data" / "admin-token").exists()
        with Client(service.target) as client:
            client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme"))
    finally:
        service.terminate()


def test_the_database_holds_no_secret_in_clear_text(
    start_server: Start, receiver: Receiver, databases: Databases
) -> None:
    running = start_server()
    secret = "a-very-distinctive-secret-4711"
    with running.client() as client:
        hook = make_webhook(client, "organizations/acme", receiver.url("/at-rest"), secret=secret)
        [name] = publish(client, seed.update_event(stack="organizations/acme/projects/p/stacks/s")).deliveries
        delivery = wait_for_delivery(client, name)
        client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
        client.webhooks.UpdateWebhook(
            WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=hook.name, secret=secret + "-2"))
        )
    assert secret not in str(delivery)
    stored = databases.stored_bytes(running.settings.database)
    assert b"webhook" in stored
    assert secret.encode() not in stored
    assert b"fernet:" in stored


def test_a_database_copy_without_the_key_reveals_nothing_and_the_wrong_key_is_refused(
    start_server: Start, receiver: Receiver, tmp_path: Path
) -> None:
    running = start_server()
    with running.client() as client:
        make_webhook(client, "organizations/acme", receiver.url("/key"), secret="keyed")
    running.stop()
    key_file = tmp_path / "data" / "secret.key"
    without_key = refused_copy(running.settings.database, tmp_path)
    assert f"the key file {key_file.relative_to(tmp_path)} does not exist" in without_key
    # Refused before a key is made: a new key could open nothing sealed with the old one.
    assert not key_file.exists()
    create_key(key_file)
    assert "cannot be decrypted with this --secret-key-file" in refused_copy(running.settings.database, tmp_path)


def refused_copy(database: str, cwd: Path) -> str:
    """The log of a `webhooks serve` in `cwd` on `database` that must refuse to start."""
    copy = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", database], cwd=cwd, wait_for_port=False)
    assert copy.process.wait(30) == 1
    copy._reader.join(5)
    assert "keyed" not in copy.log
    return copy.log


def _certificates(tmp_path: Path) -> tuple[Authority, Authority]:
    return Authority(tmp_path, "server CA"), Authority(tmp_path, "client CA")


def _health(channel: grpc.Channel) -> int:
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(response.status)


def test_tls(start_server: Start, tmp_path: Path) -> None:
    server_ca, _ = _certificates(tmp_path)
    server_pem = server_ca.issue("server", server=True)
    running = start_server(tls=TlsSettings(server_pem.cert, server_pem.key))
    trusted = grpc.ssl_channel_credentials(server_ca.pem.cert.read_bytes())

    with Client(running.target, token=running.admin_token, credentials=trusted) as client:
        client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme"))
    with grpc.insecure_channel(running.target) as plaintext, pytest.raises(grpc.RpcError) as caught:
        _health(plaintext)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    other_ca = Authority(tmp_path, "unrelated CA")
    untrusted = grpc.ssl_channel_credentials(other_ca.pem.cert.read_bytes())
    with grpc.secure_channel(running.target, untrusted) as wrong, pytest.raises(grpc.RpcError) as caught:
        _health(wrong)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_ca(start_server: Start, tmp_path: Path) -> None:
    server_ca, client_ca = _certificates(tmp_path)
    server_pem = server_ca.issue("server", server=True)
    running = start_server(tls=TlsSettings(server_pem.cert, server_pem.key, client_ca.pem.cert))
    root = server_ca.pem.cert.read_bytes()
    good = client_ca.issue("good-client", server=False)
    rogue = server_ca.issue("rogue-client", server=False)

    with grpc.secure_channel(running.target, grpc.ssl_channel_credentials(root)) as anonymous:
        with pytest.raises(grpc.RpcError) as caught:
            _health(anonymous)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    rogue_credentials = grpc.ssl_channel_credentials(root, rogue.key.read_bytes(), rogue.cert.read_bytes())
    with grpc.secure_channel(running.target, rogue_credentials) as channel, pytest.raises(grpc.RpcError):
        _health(channel)
    credentials = grpc.ssl_channel_credentials(root, good.key.read_bytes(), good.cert.read_bytes())
    with Client(running.target, token=running.admin_token, credentials=credentials) as client:
        client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme"))


def test_webhooks_per_stack_and_organization_are_bounded(client: Client, receiver: Receiver, org: str) -> None:
    stack = f"organizations/{org}/projects/p/stacks/s"
    for _ in range(MAX_WEBHOOKS_PER_STACK):
        make_webhook(client, stack, receiver.url("/many"))
    error = rpc_error(
        client.webhooks.CreateWebhook,
        WS.CreateWebhookRequest(parent=stack, webhook=webhook_pb2.Webhook(display_name="x", payload_url=URL)),
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"already has {MAX_WEBHOOKS_PER_STACK} webhooks" in (error.details() or "")
    listed = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=stack, page_size=100))
    assert len(listed.webhooks) == MAX_WEBHOOKS_PER_STACK


URL = "https://hooks.example.com/x"


def test_too_many_filter_entries_is_invalid(client: Client, org: str) -> None:
    request = WS.CreateWebhookRequest(
        parent=f"organizations/{org}",
        webhook=webhook_pb2.Webhook(
            display_name="x", payload_url=URL, filters=[webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED] * 65
        ),
    )
    error = rpc_error(client.webhooks.CreateWebhook, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"webhook.filters": "must have at most 64 entries"}


def test_oversized_events_and_requests_are_refused(client: Client, server: RunningServer, org: str) -> None:
    event = seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")
    for i in range(100):
        event.update_event.resource_changes[f"op-{i}-" + "x" * 50] = i
    event.user.name = "u" * 1000
    event.organization.name = "o" * 1000
    for i in range(60):
        event.update_event.resource_changes[f"more-{i}-" + "y" * 40] = 1
    error = rpc_error(client.events.PublishEvent, event_service_pb2.PublishEventRequest(event=event))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    huge = WS.CreateWebhookRequest(
        parent=f"organizations/{org}", webhook=webhook_pb2.Webhook(display_name="x" * 2_000_000, payload_url=URL)
    )
    with grpc.insecure_channel(server.target) as channel:
        stub = webhook_service_pb2_grpc.WebhookServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateWebhook(huge, metadata=[("authorization", f"Bearer {server.admin_token}")])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_webhooks_per_organization_are_bounded(client: Client, org: str) -> None:
    parent = f"organizations/{org}"
    for i in range(MAX_WEBHOOKS_PER_ORGANIZATION):
        client.webhooks.CreateWebhook(
            WS.CreateWebhookRequest(
                parent=parent, webhook_id=f"h{i}", webhook=webhook_pb2.Webhook(display_name="x", payload_url=URL)
            )
        )
    error = rpc_error(
        client.webhooks.CreateWebhook,
        WS.CreateWebhookRequest(parent=parent, webhook=webhook_pb2.Webhook(display_name="x", payload_url=URL)),
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"already has {MAX_WEBHOOKS_PER_ORGANIZATION} webhooks" in (error.details() or "")
    # A stack of the organization keeps its own allowance.
    make_webhook(client, f"{parent}/projects/p/stacks/s", URL)
