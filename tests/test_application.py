"""The application layer on its own, and two services in one process."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import make_webhook
from tests.support.application import build_application
from tests.support.databases import Databases
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from webhook_service.domain.access import Principal, Role
from webhook_service.domain.errors import InvalidArgument, NotFound, PermissionDenied
from webhook_service.domain.model import WebhookFields
from webhooks.v1 import webhook_service_pb2

Start = Callable[..., RunningServer]
ACME_ADMIN = Principal("t-admin", Role.ADMIN, frozenset({"acme"}))
ACME_READER = Principal("t-reader", Role.READER, frozenset({"acme"}))


def test_rules_hold_with_no_door_at_all(tmp_path: Path, databases: Databases) -> None:
    """Built in a line from a store, the application checks roles, organizations and input itself."""
    app = build_application(databases.new(tmp_path))

    async def scenario() -> None:
        fields = WebhookFields(display_name="CI", payload_url="https://example.com/hook", secret="s")
        made = await app.webhooks.create(ACME_ADMIN, "organizations/acme", "ci", fields)
        assert made.name == "organizations/acme/webhooks/ci"
        assert (await app.webhooks.get(ACME_READER, made.name)).display_name == "CI"
        with pytest.raises(PermissionDenied, match="may not call CreateWebhook"):
            await app.webhooks.create(ACME_READER, "organizations/acme", "other", fields)
        with pytest.raises(PermissionDenied, match="no access to organization 'globex'"):
            await app.webhooks.list(ACME_ADMIN, "organizations/globex")
        with pytest.raises(InvalidArgument) as invalid:
            await app.webhooks.update(ACME_ADMIN, made.name, WebhookFields(display_name=" "), ["display_name"])
        assert invalid.value.field == "webhook.display_name"
        await app.webhooks.delete(ACME_ADMIN, made.name)
        with pytest.raises(NotFound):
            await app.webhooks.get(ACME_ADMIN, made.name)

    try:
        asyncio.run(scenario())
    finally:
        app.store.close()


def test_two_services_with_their_own_databases_and_keys_share_a_process(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    """Each seals and opens its secrets with its own key: a ping from each is signed with its own secret."""
    first, second = start_server(), start_server()
    assert first.settings.secret_key_file.read_bytes() != second.settings.secret_key_file.read_bytes()
    for index, server in enumerate((first, second)):
        with server.client() as client:
            hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}/{index}"), secret=f"s{index}")
            client.webhooks.PingWebhook(webhook_service_pb2.PingWebhookRequest(name=hook.name))
            names = [
                w.name
                for w in client.webhooks.ListWebhooks(
                    webhook_service_pb2.ListWebhooksRequest(parent=f"organizations/{org}")
                ).webhooks
            ]
            assert names == [hook.name]
    for index in (0, 1):
        [ping] = receiver.wait_for(f"/{org}/{index}", 1)
        expected = hmac.new(f"s{index}".encode(), ping.body, hashlib.sha256).hexdigest()
        assert ping.headers["Pulumi-Webhook-Signature"] == expected
