"""Who may call what: tokens, roles, organizations, revocation, rate limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.tokens import create_token, tokens_command
from webhooks.v1 import event_service_pb2, webhook_pb2, webhook_service_pb2_grpc
from webhooks_client import Client

OWN, FOREIGN = "own-org", "foreign-org"
OK, DENIED = "ok", "denied"


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[Client]:
    with server.client() as connected:
        yield connected


def fixture_hook(admin: Client, receiver: Receiver, org: str) -> tuple[str, str]:
    """A webhook of `org` with one delivered event: (webhook name, delivery name)."""
    hook = make_webhook(admin, f"organizations/{org}", receiver.url(f"/auth/{org}"))
    [delivery] = [
        name
        for name in publish(admin, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")).deliveries
        if name.startswith(hook.name)
    ]
    wait_for_delivery(admin, delivery)
    return hook.name, delivery


Call = Callable[[Client, Client, Receiver, str], Any]


def _create(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    return make_webhook(client, f"organizations/{org}", receiver.url("/auth/new"))


def _get(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    return client.webhooks.GetWebhook(WS.GetWebhookRequest(name=fixture_hook(admin, receiver, org)[0]))


def _list(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    return client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}"))


def _update(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    name = fixture_hook(admin, receiver, org)[0]
    webhook = webhook_pb2.Webhook(name=name, display_name="renamed")
    return client.webhooks.UpdateWebhook(WS.UpdateWebhookRequest(webhook=webhook))


def _delete(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    return client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=fixture_hook(admin, receiver, org)[0]))


def _ping(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    return client.webhooks.PingWebhook(WS.PingWebhookRequest(name=fixture_hook(admin, receiver, org)[0]))


def _list_deliveries(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    parent = fixture_hook(admin, receiver, org)[0]
    return client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=parent))


def _get_delivery(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    name = fixture_hook(admin, receiver, org)[1]
    return client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=name))


def _redeliver(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    name = fixture_hook(admin, receiver, org)[1]
    return client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=name))


def _watch(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    """The first attempt a watch sees: a ping made once it is in place (or, refused, its error)."""
    hook = fixture_hook(admin, receiver, org)[0]
    call = client.watch_webhook_deliveries(hook, timeout=30)
    call.initial_metadata()
    admin.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook))
    try:
        return next(call)
    finally:
        call.cancel()


def _rotate(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    name = fixture_hook(admin, receiver, org)[0]
    return client.webhooks.RotateWebhookSecret(WS.RotateWebhookSecretRequest(name=name, secret="rotated"))


def _recover(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    request = WS.RecoverWebhookDeliveriesRequest(parent=fixture_hook(admin, receiver, org)[0])
    request.since.GetCurrentTime()
    return client.webhooks.RecoverWebhookDeliveries(request)


def _publish(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    return publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s"))


def _test_match(client: Client, admin: Client, receiver: Receiver, org: str) -> Any:
    event = seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")
    return client.events.TestEventMatch(event_service_pb2.TestEventMatchRequest(event=event))


CALLS: dict[str, Call] = {
    "CreateWebhook": _create,
    "GetWebhook": _get,
    "ListWebhooks": _list,
    "UpdateWebhook": _update,
    "DeleteWebhook": _delete,
    "PingWebhook": _ping,
    "ListWebhookDeliveries": _list_deliveries,
    "GetWebhookDelivery": _get_delivery,
    "RedeliverWebhookDelivery": _redeliver,
    "RotateWebhookSecret": _rotate,
    "RecoverWebhookDeliveries": _recover,
    "WatchWebhookDeliveries": _watch,
    "PublishEvent": _publish,
    "TestEventMatch": _test_match,
}
ALLOWED = {
    "admin": set(CALLS),
    "publisher": {"PublishEvent"},
    "reader": {
        "GetWebhook",
        "ListWebhooks",
        "GetWebhookDelivery",
        "ListWebhookDeliveries",
        "WatchWebhookDeliveries",
        "TestEventMatch",
    },
}


@pytest.fixture(scope="module")
def role_clients(server: RunningServer) -> Iterator[dict[str, Client]]:
    clients = {role: server.client(create_token(server.settings.database, role, OWN)) for role in ALLOWED}
    yield clients
    for client in clients.values():
        client.close()


@pytest.mark.parametrize("organization", [OWN, FOREIGN])
@pytest.mark.parametrize("method", list(CALLS))
@pytest.mark.parametrize("role", list(ALLOWED))
def test_authorization_matrix(
    role_clients: dict[str, Client], admin: Client, receiver: Receiver, role: str, method: str, organization: str
) -> None:
    expected = OK if organization == OWN and method in ALLOWED[role] else DENIED
    call = CALLS[method]
    if expected == OK:
        call(role_clients[role], admin, receiver, organization)
    else:
        with pytest.raises(grpc.RpcError) as caught:
            call(role_clients[role], admin, receiver, organization)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, caught.value.details()


def test_a_token_for_several_organizations_reaches_each_and_no_other(server: RunningServer) -> None:
    token = create_token(server.settings.database, "reader", "team-a", "team-b")
    with server.client(token) as client:
        for org in ("team-a", "team-b"):
            client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}"))
        error = rpc_error(client.webhooks.ListWebhooks, WS.ListWebhooksRequest(parent="organizations/team-c"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("organization", ["team-a,team-b", "team a", "", "o" * 101, "organizations/team-a"])
def test_tokens_create_takes_one_valid_organization_name_per_flag(server: RunningServer, organization: str) -> None:
    before = tokens_command(server.settings.database, "list").stdout
    done = tokens_command(server.settings.database, "create", "--role", "reader", "--organization", organization)
    assert done.returncode == 2
    assert f"--organization {organization!r} is not an organization name" in done.stderr
    assert tokens_command(server.settings.database, "list").stdout == before


def test_a_star_token_reaches_every_organization(server: RunningServer) -> None:
    token = create_token(server.settings.database, "publisher", "*")
    with server.client(token) as client:
        for org in ("x1", "y2"):
            publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s"))


@pytest.mark.parametrize(
    "metadata",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer whk_not-a-real-token", "whk_no-scheme"],
)
def test_missing_malformed_and_unknown_tokens_are_unauthenticated(server: RunningServer, metadata: str | None) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = webhook_service_pb2_grpc.WebhookServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListWebhooks(
                WS.ListWebhooksRequest(parent="organizations/acme"),
                metadata=None if metadata is None else [("authorization", metadata)],
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_pulumi_token_scheme_is_accepted(server: RunningServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        webhook_service_pb2_grpc.WebhookServiceStub(channel).ListWebhooks(
            WS.ListWebhooksRequest(parent="organizations/acme"),
            metadata=[("authorization", f"token {server.admin_token}")],
        )


def test_revoked_tokens_stop_working(server: RunningServer) -> None:
    made = tokens_command(server.settings.database, "create", "--role", "reader", "--organization", "acme")
    token = made.stdout.splitlines()[-1]
    token_id = made.stdout.split()[2].rstrip(":")
    listed = tokens_command(server.settings.database, "list")
    assert token not in listed.stdout
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(token_id)]
    assert line.split()[1:3] == ["reader", "acme"]
    with server.client(token) as client:
        client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme"))
        revoked = tokens_command(server.settings.database, "revoke", token_id)
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(1.1)
        error = rpc_error(client.webhooks.ListWebhooks, WS.ListWebhooksRequest(parent="organizations/acme"))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    unknown = tokens_command(server.settings.database, "revoke", "nope")
    assert unknown.returncode == 1
    assert "does not exist" in unknown.stderr


def test_changes_are_logged_with_the_token_id_never_the_token(
    server: RunningServer, admin: Client, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hook, delivery = fixture_hook(admin, receiver, "logged")
    admin.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=hook, display_name="x", secret="top-secret-1"))
    )
    admin.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=delivery))
    admin.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=hook))
    text = caplog.text
    for action in ("created webhook", "updated", "redelivered", "deleted webhook"):
        assert any(action in r.getMessage() and "token " in r.getMessage() for r in caplog.records), action
    assert server.admin_token not in text
    assert "top-secret-1" not in text


def test_rate_limit_answers_resource_exhausted_with_a_retry_hint(start_server: Callable[..., RunningServer]) -> None:
    with start_server(rate_limit=5).client() as client:
        outcomes: list[grpc.StatusCode] = []
        hints: list[float] = []
        for _ in range(30):
            try:
                client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent="organizations/acme"))
                outcomes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                outcomes.append(error.code())
                assert "rate limit of 5 requests/s" in (error.details() or "")
                status = rpc_status.from_call(error)
                assert status is not None
                for detail in status.details:
                    retry = error_details_pb2.RetryInfo()
                    if detail.Unpack(retry):
                        hints.append(retry.retry_delay.ToTimedelta().total_seconds())
    assert outcomes[:5] == [grpc.StatusCode.OK] * 5
    assert set(outcomes[5:]) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 15
    assert hints and all(0 < hint <= 0.2 for hint in hints)
