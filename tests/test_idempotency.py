"""request_id keys: each organization has its own, and a key names one request only."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from tests import seed
from tests.helpers import WS, make_webhook, rpc_error
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.tokens import create_token
from webhooks.v1 import event_pb2, event_service_pb2, webhook_pb2
from webhooks_client import Client, field_violations

ES = event_service_pb2


@dataclass(frozen=True)
class Tenant:
    """An organization, with an admin and a publisher that reach it alone."""

    org: str
    admin: Client
    publisher: Client

    @property
    def parent(self) -> str:
        return f"organizations/{self.org}"

    @property
    def stack(self) -> str:
        return f"organizations/{self.org}/projects/website/stacks/prod"


@pytest.fixture(scope="module")
def tenants(server: RunningServer) -> Iterator[tuple[Tenant, Tenant]]:
    made = []
    for _ in range(2):
        org = f"tenant-{uuid.uuid4().hex[:8]}"
        admin = server.client(create_token(server.settings.database, "admin", org))
        publisher = server.client(create_token(server.settings.database, "publisher", org))
        made.append(Tenant(org, admin, publisher))
    yield made[0], made[1]
    for tenant in made:
        tenant.admin.close()
        tenant.publisher.close()


def create(client: Client, parent: str, request_id: str, **fields: Any) -> webhook_pb2.Webhook:
    fields.setdefault("display_name", "hook")
    return client.webhooks.CreateWebhook(
        WS.CreateWebhookRequest(parent=parent, webhook=webhook_pb2.Webhook(**fields), request_id=request_id)
    )


def publish_request(stack: str, request_id: str, **event: Any) -> ES.PublishEventRequest:
    return ES.PublishEventRequest(event=seed.update_event(stack=stack, **event), request_id=request_id)


# Kept up by the deliveries themselves: a webhook other tests deliver to changes them while nothing changes it.
HEALTH_FIELDS = (
    "last_success_time",
    "failing_since",
    "pending_deliveries",
    "succeeded_attempts_24h",
    "failed_attempts_24h",
)


def listed(client: Client, parent: str) -> list[webhook_pb2.Webhook]:
    """The webhooks of `parent` as their callers made them, without their health."""
    found = list(client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=parent)).webhooks)
    for webhook in found:
        for name in HEALTH_FIELDS:
            webhook.ClearField(name)
    return found


def deliveries_of(client: Client, hook: str) -> list[str]:
    found = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook)).deliveries
    return [d.name for d in found]


def of_hook(hook: str, deliveries: Iterable[str]) -> list[str]:
    """The deliveries to `hook` among those a publish queued: earlier tests' webhooks get events too."""
    return [name for name in deliveries if name.startswith(hook + "/")]


def assert_refused_as_another_request(error: grpc.RpcError, *secrets: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["request_id"]
    assert "was used for a different request" in (error.details() or "")
    for secret in secrets:
        assert secret not in str(error)


def test_another_organization_reusing_a_create_request_id_gets_its_own_webhook(
    tenants: tuple[Tenant, Tenant], receiver: Receiver
) -> None:
    a, b = tenants
    request_id = f"setup-{uuid.uuid4().hex[:6]}"
    theirs = create(a.admin, a.parent, request_id, payload_url=receiver.url("/a-private"), secret="a-secret")

    ours = create(b.admin, b.parent, request_id, payload_url=receiver.url("/b-hook"))

    assert ours.name.startswith(b.parent + "/webhooks/")
    assert ours.payload_url == receiver.url("/b-hook")
    assert not ours.has_secret
    assert [w.name for w in listed(b.admin, b.parent)] == [ours.name]
    assert listed(a.admin, a.parent) == [theirs]


def test_another_organization_reusing_a_publish_request_id_gets_its_own_event(
    tenants: tuple[Tenant, Tenant], receiver: Receiver
) -> None:
    a, b = tenants
    a_hook = make_webhook(a.admin, a.parent, receiver.url(f"/{a.org}/events"))
    b_hook = make_webhook(b.admin, b.parent, receiver.url(f"/{b.org}/events"))
    theirs = a.publisher.events.PublishEvent(publish_request(a.stack, "update-42"))

    ours = b.publisher.events.PublishEvent(publish_request(b.stack, "update-42"))

    assert ours.event_id != theirs.event_id
    assert all(name.startswith(b.parent + "/") for name in ours.deliveries)
    [delivery] = of_hook(b_hook.name, ours.deliveries)
    assert receiver.wait_for(f"/{b.org}/events", 1)
    assert deliveries_of(b.admin, b_hook.name) == [delivery]
    assert deliveries_of(a.admin, a_hook.name) == of_hook(a_hook.name, theirs.deliveries)


def test_a_create_request_id_reused_for_another_webhook_is_refused(
    tenants: tuple[Tenant, Tenant], receiver: Receiver
) -> None:
    a, _ = tenants
    request_id = f"create-{uuid.uuid4().hex[:6]}"
    first = create(a.admin, a.parent, request_id, payload_url=receiver.url("/first"), secret="first-secret")
    before = listed(a.admin, a.parent)

    for change in (
        {"display_name": "another hook"},
        {"payload_url": receiver.url("/second")},
        {"secret": "second-secret"},
        {"active": False},
    ):
        fields = {"payload_url": receiver.url("/first"), "secret": "first-secret", **change}
        request = WS.CreateWebhookRequest(
            parent=a.parent, webhook=webhook_pb2.Webhook(**{"display_name": "hook", **fields}), request_id=request_id
        )
        error = rpc_error(a.admin.webhooks.CreateWebhook, request)
        assert_refused_as_another_request(error, "first-secret", "second-secret")

    assert listed(a.admin, a.parent) == before
    again = create(a.admin, a.parent, request_id, payload_url=receiver.url("/first"), secret="first-secret")
    assert again == first


def test_a_repeated_create_returns_the_webhook_as_it_is_now(tenants: tuple[Tenant, Tenant], receiver: Receiver) -> None:
    a, _ = tenants
    request_id = f"now-{uuid.uuid4().hex[:6]}"
    first = create(a.admin, a.parent, request_id, payload_url=receiver.url("/now"))
    renamed = a.admin.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=first.name, display_name="renamed"))
    )

    again = create(a.admin, a.parent, request_id, payload_url=receiver.url("/now"))

    assert again == renamed


def test_a_publish_request_id_reused_for_another_event_is_refused(
    tenants: tuple[Tenant, Tenant], receiver: Receiver
) -> None:
    a, _ = tenants
    hook = make_webhook(a.admin, a.parent, receiver.url(f"/{a.org}/once"))
    request_id = f"publish-{uuid.uuid4().hex[:6]}"
    first = a.publisher.events.PublishEvent(publish_request(a.stack, request_id))

    for other in (
        publish_request(a.stack, request_id, result=event_pb2.UPDATE_RESULT_FAILED),
        publish_request(a.stack.replace("/prod", "/staging"), request_id),
    ):
        error = rpc_error(a.publisher.events.PublishEvent, other)
        assert_refused_as_another_request(error)

    queued = of_hook(hook.name, first.deliveries)
    assert len(queued) == 1
    assert deliveries_of(a.admin, hook.name) == queued
    assert a.publisher.events.PublishEvent(publish_request(a.stack, request_id)) == first
    assert deliveries_of(a.admin, hook.name) == queued
