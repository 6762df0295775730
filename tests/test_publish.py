"""PublishEvent end to end: routing, Pulumi's exact payloads and headers, validation, idempotency."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from typing import Any

import grpc
import pytest
from peewee import SqliteDatabase
from playhouse.db_url import connect

from tests import seed
from tests.helpers import WS, delivery_id, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from webhooks.v1 import event_pb2, event_service_pb2, webhook_pb2
from webhooks_client import Client, field_violations

F = webhook_pb2
E = event_pb2
ES = event_service_pb2


def stack_of(org: str, stack: str = "website-prod") -> str:
    return f"organizations/{org}/projects/website/stacks/{stack}"


@pytest.mark.parametrize(
    ("make_event", "expected", "kind"),
    [
        (lambda s: seed.stack_event(stack=s), seed.STACK_CREATION, "stack"),
        (lambda s: seed.update_event(stack=s), seed.STACK_UPDATE, "stack_update"),
        (
            lambda s: seed.update_event(
                E.UPDATE_KIND_UPDATE, E.UPDATE_RESULT_FAILED, True, s, seed.STACK_PREVIEW["updateUrl"]
            ),
            seed.STACK_PREVIEW,
            "stack_preview",
        ),
        (lambda s: seed.deployment_event(stack=s), seed.DEPLOYMENT, "deployment"),
    ],
    ids=["stack-creation", "stack-update", "stack-preview", "deployment"],
)
def test_each_event_kind_arrives_exactly_as_pulumi_documents_it(
    client: Client, receiver: Receiver, org: str, make_event: Any, expected: dict[str, Any], kind: str
) -> None:
    secret = "It's a secret to everybody"
    path = f"/raw/{org}"
    make_webhook(client, f"organizations/{org}", receiver.url(path), secret=secret)

    published = publish(client, make_event(stack_of(org)))
    assert published.event_id
    [name] = published.deliveries
    [request] = receiver.wait_for(path, 1)

    body = json.loads(request.body)
    assert body == expected
    assert list(body) == list(expected)
    for key in ("user", "organization"):
        assert list(body[key]) == list(expected[key])
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("webhook-service/")
    assert request.headers["Pulumi-Webhook-ID"] == delivery_id(name)
    assert request.headers["Pulumi-Webhook-Kind"] == kind
    wanted = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["Pulumi-Webhook-Signature"], wanted)

    delivery = wait_for_delivery(client, name)
    assert delivery.payload.encode() == request.body
    assert delivery.kind == kind
    assert delivery.event_id == published.event_id
    assert delivery.request_headers["Pulumi-Webhook-Signature"] == wanted
    assert secret not in str(delivery)


def test_no_signature_header_without_a_secret(client: Client, receiver: Receiver, org: str) -> None:
    make_webhook(client, f"organizations/{org}", receiver.url(f"/unsigned/{org}"))
    publish(client, seed.update_event(stack=stack_of(org)))
    [request] = receiver.wait_for(f"/unsigned/{org}", 1)
    assert "Pulumi-Webhook-Signature" not in request.headers


# Each filter with an event that triggers it.
TRIGGERS: dict[int, Any] = {
    F.WEBHOOK_FILTER_STACK_CREATED: lambda s: seed.stack_event(E.STACK_ACTION_CREATED, s),
    F.WEBHOOK_FILTER_STACK_DELETED: lambda s: seed.stack_event(E.STACK_ACTION_DELETED, s),
    F.WEBHOOK_FILTER_PREVIEW_SUCCEEDED: lambda s: seed.update_event(E.UPDATE_KIND_UPDATE, 1, True, s),
    F.WEBHOOK_FILTER_PREVIEW_FAILED: lambda s: seed.update_event(E.UPDATE_KIND_DESTROY, 2, True, s),
    F.WEBHOOK_FILTER_UPDATE_SUCCEEDED: lambda s: seed.update_event(E.UPDATE_KIND_UPDATE, 1, False, s),
    F.WEBHOOK_FILTER_UPDATE_FAILED: lambda s: seed.update_event(E.UPDATE_KIND_UPDATE, 2, False, s),
    F.WEBHOOK_FILTER_DESTROY_SUCCEEDED: lambda s: seed.update_event(E.UPDATE_KIND_DESTROY, 1, False, s),
    F.WEBHOOK_FILTER_DESTROY_FAILED: lambda s: seed.update_event(E.UPDATE_KIND_DESTROY, 2, False, s),
    F.WEBHOOK_FILTER_REFRESH_SUCCEEDED: lambda s: seed.update_event(E.UPDATE_KIND_REFRESH, 1, False, s),
    F.WEBHOOK_FILTER_REFRESH_FAILED: lambda s: seed.update_event(E.UPDATE_KIND_REFRESH, 2, False, s),
    F.WEBHOOK_FILTER_DEPLOYMENT_QUEUED: lambda s: seed.deployment_event(E.DEPLOYMENT_STATUS_QUEUED, s),
    F.WEBHOOK_FILTER_DEPLOYMENT_STARTED: lambda s: seed.deployment_event(E.DEPLOYMENT_STATUS_RUNNING, s),
    F.WEBHOOK_FILTER_DEPLOYMENT_SUCCEEDED: lambda s: seed.deployment_event(E.DEPLOYMENT_STATUS_SUCCEEDED, s),
    F.WEBHOOK_FILTER_DEPLOYMENT_FAILED: lambda s: seed.deployment_event(E.DEPLOYMENT_STATUS_FAILED, s),
}
STACK_GROUP = set(list(TRIGGERS)[:10])
ORG_ONLY = {F.WEBHOOK_FILTER_STACK_CREATED, F.WEBHOOK_FILTER_STACK_DELETED}


def test_every_filter_routes_at_organization_and_stack_scope(client: Client, receiver: Receiver, org: str) -> None:
    url = receiver.url(f"/matrix/{org}")
    org_parent, stack = f"organizations/{org}", stack_of(org)
    hooks: dict[str, set[int]] = {}

    def hook(parent: str, expected: set[int], **fields: Any) -> None:
        hooks[make_webhook(client, parent, url, **fields).name] = expected

    everything = set(TRIGGERS)
    for wanted in TRIGGERS:
        hook(org_parent, {wanted}, filters=[wanted])
        if wanted not in ORG_ONLY:
            hook(stack, {wanted}, filters=[wanted])
    hook(org_parent, everything)
    hook(stack, everything - ORG_ONLY)
    hook(org_parent, STACK_GROUP, groups=[F.WEBHOOK_GROUP_STACKS])
    hook(stack, STACK_GROUP - ORG_ONLY, groups=[F.WEBHOOK_GROUP_STACKS])
    hook(org_parent, everything - STACK_GROUP, groups=[F.WEBHOOK_GROUP_DEPLOYMENTS])
    hook(
        stack,
        {F.WEBHOOK_FILTER_UPDATE_FAILED} | (everything - STACK_GROUP),
        filters=[F.WEBHOOK_FILTER_UPDATE_FAILED],
        groups=[F.WEBHOOK_GROUP_DEPLOYMENTS],
    )
    hook(stack_of(org, "other-stack"), set())
    hook(f"organizations/{org}-other", set())
    hook(org_parent, set(), active=False)

    for wanted, make_event in TRIGGERS.items():
        published = publish(client, make_event(stack))
        got = {name.rsplit("/deliveries/", 1)[0] for name in published.deliveries}
        assert len(got) == len(published.deliveries)
        expected = {name for name, filters in hooks.items() if wanted in filters}
        assert got == expected, F.WebhookFilter.Name(wanted)


def test_an_event_nobody_wants_is_still_accepted(client: Client, org: str) -> None:
    published = publish(client, seed.update_event(stack=stack_of(org)))
    assert published.event_id
    assert list(published.deliveries) == []


def test_ids_drawn_later_sort_later(client: Client, receiver: Receiver, org: str) -> None:
    """Event and delivery IDs start with the time they were drawn, so the store adds each at the end of its
    index; they stay 24 hex digits."""
    for number in range(2):
        make_webhook(client, f"organizations/{org}", receiver.url(f"/sorted/{org}/{number}"))
    ids: list[tuple[str, str, str]] = []
    for _ in range(3):
        published = publish(client, seed.update_event(stack=stack_of(org)))
        first, second = sorted(delivery_id(name) for name in published.deliveries)
        ids.append((published.event_id, first, second))
        time.sleep(0.002)  # the next publish draws its IDs in a later millisecond
    for drawn in ids:
        assert all(re.fullmatch("[0-9a-f]{24}", one) for one in drawn), drawn
    for earlier, later in itertools.pairwise(ids):
        assert max(earlier) < min(later), ids


def test_request_id_makes_publishing_idempotent(client: Client, receiver: Receiver, org: str) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/once/{org}"))
    first = publish(client, seed.update_event(stack=stack_of(org)), request_id="evt-1")
    again = publish(client, seed.update_event(stack=stack_of(org)), request_id="evt-1")
    assert again == first
    other = publish(client, seed.update_event(stack=stack_of(org)), request_id="evt-2")
    assert other.event_id != first.event_id

    receiver.wait_for(f"/once/{org}", 2)
    listed = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook.name))
    assert len(listed.deliveries) == 2


def test_slack_and_teams_webhooks_get_their_message_shapes(client: Client, receiver: Receiver, org: str) -> None:
    make_webhook(client, f"organizations/{org}", receiver.url(f"/slack/{org}"), format=F.WEBHOOK_FORMAT_SLACK)
    make_webhook(client, f"organizations/{org}", receiver.url(f"/teams/{org}"), format=F.WEBHOOK_FORMAT_MS_TEAMS)
    publish(client, seed.update_event(E.UPDATE_KIND_UPDATE, E.UPDATE_RESULT_FAILED, stack=stack_of(org)))

    slack = json.loads(receiver.wait_for(f"/slack/{org}", 1)[0].body)
    assert "website-prod" in slack["text"] and "failed" in slack["text"]
    assert slack["blocks"]
    shown = json.dumps(slack["blocks"])
    for fact in ("Morty Smith", "update", "failed", "update-replace: 2", f"{seed.BASE}/updates/42"):
        assert fact in shown

    teams = json.loads(receiver.wait_for(f"/teams/{org}", 1)[0].body)
    assert teams["type"] == "message"
    [attachment] = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    shown = json.dumps(card)
    for fact in ("website-prod", "Morty Smith", "failed", "update-replace: 2"):
        assert fact in shown
    assert card["actions"][0]["url"] == f"{seed.BASE}/updates/42"


BAD_EVENTS: list[tuple[str, Any]] = [
    ("event", None),
    ("event.stack", seed.update_event(stack="organizations/o")),
    ("event.stack", seed.update_event(stack="stacks/x")),
    ("event.payload", seed.event("organizations/{org}/projects/p/stacks/s")),
    ("event.stack_event.action", seed.stack_event(E.STACK_ACTION_UNSPECIFIED)),
    ("event.stack_event.action", seed.stack_event(9)),
    ("event.update_event.kind", seed.update_event(kind=E.UPDATE_KIND_UNSPECIFIED)),
    ("event.update_event.result", seed.update_event(result=5)),
    ("event.deployment_event.status", seed.deployment_event(E.DEPLOYMENT_STATUS_UNSPECIFIED)),
    ("event.update_event.update_url", seed.update_event(url="https://x/" + "u" * 2048)),
]


@pytest.mark.parametrize(("field", "bad"), BAD_EVENTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_EVENTS)])
def test_invalid_events_are_refused_and_queue_nothing(
    client: Client, receiver: Receiver, org: str, field: str, bad: Any
) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/never/{org}"))
    if bad is not None and bad.stack in ("organizations/{org}/projects/p/stacks/s", seed.STACK):
        bad.stack = stack_of(org)
    error = rpc_error(client.events.PublishEvent, ES.PublishEventRequest(event=bad))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [field]
    listed = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook.name))
    assert list(listed.deliveries) == []


def test_negative_counts_and_versions_are_refused(client: Client, org: str) -> None:
    bad_counts = seed.update_event(stack=stack_of(org))
    bad_counts.update_event.resource_changes["delete"] = -1
    bad_version = seed.deployment_event(stack=stack_of(org))
    bad_version.deployment_event.version = -3
    for bad, field in (
        (bad_counts, "event.update_event.resource_changes"),
        (bad_version, "event.deployment_event.version"),
    ):
        error = rpc_error(client.events.PublishEvent, ES.PublishEventRequest(event=bad))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(field_violations(error)) == [field]


def test_a_request_id_is_remembered_for_24_hours(
    client: Client, server: RunningServer, receiver: Receiver, org: str
) -> None:
    make_webhook(client, f"organizations/{org}", receiver.url(f"/day/{org}"))
    first = publish(client, seed.update_event(stack=stack_of(org)), request_id=f"day-{org}")
    db = connect(server.settings.database)
    with db.connection_context():
        db.execute_sql(
            "UPDATE idempotency_key SET create_time = create_time - 25 * 3600 WHERE request_id = "
            + ("?" if isinstance(db, SqliteDatabase) else "%s"),
            (f"day-{org}",),
        )
    later = publish(client, seed.update_event(stack=stack_of(org)), request_id=f"day-{org}")
    assert later.event_id != first.event_id
    assert publish(client, seed.update_event(stack=stack_of(org)), request_id=f"day-{org}") == later
