"""A request_id's digest is kept for a day, across upgrades: the canonical form of a request must stay the bytes
earlier releases digested, which were `dataclasses.asdict` of it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tests import seed
from webhook_service.api.grpc.convert import event_from_proto
from webhook_service.domain.idempotency import canonical, create_key, publish_key
from webhook_service.domain.model import Webhook, WebhookFilter, WebhookFormat, WebhookGroup, WebhookOrdering
from webhook_service.domain.names import Parent
from webhooks.v1 import event_pb2


def as_earlier_releases_did(value: Any, leave_out: frozenset[str] = frozenset()) -> bytes:
    fields = {key: item for key, item in dataclasses.asdict(value).items() if key not in leave_out}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "message",
    [
        seed.stack_event(event_pb2.STACK_ACTION_DELETED),
        seed.update_event(),
        seed.deployment_event(event_pb2.DEPLOYMENT_STATUS_FAILED),
    ],
    ids=["stack", "update", "deployment"],
)
def test_an_events_canonical_form_is_the_one_earlier_releases_digested(message: event_pb2.Event) -> None:
    event = event_from_proto(message)
    assert canonical(event) == as_earlier_releases_did(event)
    key = publish_key("retry-1", event)
    assert key is not None and key.request == as_earlier_releases_did(event)


def test_a_creates_canonical_form_is_the_one_earlier_releases_digested() -> None:
    webhook = Webhook(
        parent=Parent("acme", "website", "prod"),
        webhook_id="deploys",
        display_name="Déploiements",
        payload_url="https://example.com/hook",
        secret="s3cret",
        format=WebhookFormat.SLACK,
        filters=(WebhookFilter.DEPLOYMENT_FAILED, WebhookFilter.UPDATE_SUCCEEDED),
        groups=(WebhookGroup.STACKS,),
        ordering=WebhookOrdering.PER_STACK,
    )
    leave_out = frozenset({"previous_secret", "previous_secret_expire_time", "etag", "health"})
    key = create_key("create-1", webhook, "deploys")
    assert key is not None and key.request == as_earlier_releases_did(webhook, leave_out)
