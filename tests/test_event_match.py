"""TestEventMatch: a dry run of PublishEvent that stores and sends nothing, and explains each webhook."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error
from tests.support import sql
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.test_publish import BAD_EVENTS, TRIGGERS, stack_of
from webhooks.v1 import event_pb2, event_service_pb2, webhook_pb2
from webhooks_client import Client, field_violations

E = event_pb2
ES = event_service_pb2
F = webhook_pb2
MATCHED = ES.MISMATCH_REASON_UNSPECIFIED


def dry_run(client: Client, event: event_pb2.Event) -> ES.TestEventMatchResponse:
    return client.events.TestEventMatch(ES.TestEventMatchRequest(event=event))


def verdicts(answer: ES.TestEventMatchResponse) -> dict[str, tuple[bool, int, str]]:
    return {m.webhook: (m.matched, m.reason, m.detail) for m in answer.matches}


def test_each_reason_is_explained_and_matches_are_said_why(client: Client, receiver: Receiver, org: str) -> None:
    url = receiver.url(f"/dry/{org}")
    organization, stack = f"organizations/{org}", stack_of(org)

    def hook(parent: str, webhook_id: str, **fields: Any) -> str:
        return make_webhook(client, parent, url, webhook_id=webhook_id, **fields).name

    every = hook(organization, "every")
    named = hook(organization, "named", filters=[F.WEBHOOK_FILTER_UPDATE_FAILED])
    grouped = hook(organization, "grouped", groups=[F.WEBHOOK_GROUP_STACKS])
    filtered = hook(
        organization, "filtered", filters=[F.WEBHOOK_FILTER_UPDATE_SUCCEEDED, F.WEBHOOK_FILTER_STACK_CREATED]
    )
    both = hook(organization, "both", filters=[F.WEBHOOK_FILTER_DESTROY_FAILED], groups=[F.WEBHOOK_GROUP_DEPLOYMENTS])
    group_only = hook(organization, "group-only", groups=[F.WEBHOOK_GROUP_DEPLOYMENTS])
    inactive = hook(organization, "inactive", active=False)
    own_stack = hook(stack, "own")
    other_stack = hook(stack_of(org, "other-stack"), "theirs")
    hook(f"organizations/{org}-other", "elsewhere")

    event = seed.update_event(E.UPDATE_KIND_UPDATE, E.UPDATE_RESULT_FAILED, stack=stack)
    answer = dry_run(client, event)

    assert [m.webhook for m in answer.matches] == sorted(m.webhook for m in answer.matches)
    assert not answer.other_stacks_truncated
    found = verdicts(answer)
    # Another organization's webhook is no concern of this organization's event.
    assert set(found) == {every, named, grouped, filtered, both, group_only, inactive, own_stack, other_stack}
    assert found[every] == (True, MATCHED, "it has no filters or groups, so it takes every event")
    assert found[named] == (True, MATCHED, "its filter update_failed names the event")
    assert found[grouped] == (True, MATCHED, "its group stacks covers update_failed")
    assert found[own_stack][:2] == (True, MATCHED)
    assert found[filtered] == (
        False,
        ES.MISMATCH_REASON_FILTER,
        "the event is update_failed; none of its filters (update_succeeded, stack_created) names it",
    )
    assert found[both] == (
        False,
        ES.MISMATCH_REASON_FILTER,
        "the event is update_failed; none of its filters (destroy_failed) names it,"
        " and its groups (deployments) do not cover it",
    )
    assert found[group_only] == (
        False,
        ES.MISMATCH_REASON_GROUP,
        "the event is update_failed; its groups (deployments) do not cover it",
    )
    assert found[inactive] == (False, ES.MISMATCH_REASON_INACTIVE, "it is inactive")
    assert found[other_stack] == (
        False,
        ES.MISMATCH_REASON_OTHER_STACK,
        f"it belongs to stack website/other-stack; the event is about stack website/website-prod of {org}",
    )

    # Publishing the same event reaches exactly the webhooks the dry run said would match.
    published = publish(client, event)
    assert {name.rsplit("/deliveries/", 1)[0] for name in published.deliveries} == {
        name for name, (matched, _, _) in found.items() if matched
    }


def test_precedence_when_several_reasons_apply(client: Client, receiver: Receiver, org: str) -> None:
    """Other stack before inactive, inactive before organization-only, organization-only before filters."""
    url = receiver.url(f"/dry/{org}")
    stack = stack_of(org)
    other = make_webhook(client, stack_of(org, "other"), url, active=False).name
    inactive = make_webhook(client, stack, url, active=False, filters=[F.WEBHOOK_FILTER_DESTROY_FAILED]).name
    organization_only = make_webhook(client, stack, url, filters=[F.WEBHOOK_FILTER_DESTROY_FAILED]).name
    for_organization = make_webhook(client, f"organizations/{org}", url).name

    found = verdicts(dry_run(client, seed.stack_event(E.STACK_ACTION_DELETED, stack=stack)))

    assert found[other][:2] == (False, ES.MISMATCH_REASON_OTHER_STACK)
    assert found[inactive][:2] == (False, ES.MISMATCH_REASON_INACTIVE)
    assert found[organization_only] == (
        False,
        ES.MISMATCH_REASON_ORGANIZATION_ONLY,
        "stack_deleted events go to organization webhooks only, and this one belongs to stack website/website-prod",
    )
    assert found[for_organization][:2] == (True, MATCHED)


def test_a_webhook_the_service_turned_off_says_why(
    client: Client, server: RunningServer, receiver: Receiver, org: str
) -> None:
    name = make_webhook(client, f"organizations/{org}", receiver.url(f"/dry/{org}"), webhook_id="gone").name
    sql.execute(
        server.settings.database,
        "UPDATE webhook SET active = FALSE, disabled_reason = 'the receiver answered 410 Gone'"
        " WHERE organization = %s AND webhook_id = 'gone'",
        (org,),
    )
    [found] = dry_run(client, seed.update_event(stack=stack_of(org))).matches
    assert (found.webhook, found.reason) == (name, ES.MISMATCH_REASON_INACTIVE)
    assert found.detail == "it is inactive (the receiver answered 410 Gone)"


def test_the_dry_run_agrees_with_publishing_for_every_event_kind(client: Client, receiver: Receiver, org: str) -> None:
    url = receiver.url(f"/agree/{org}")
    organization, stack = f"organizations/{org}", stack_of(org)
    for wanted in TRIGGERS:
        make_webhook(client, organization, url, filters=[wanted])
    make_webhook(client, organization, url, groups=[F.WEBHOOK_GROUP_DEPLOYMENTS])
    make_webhook(client, stack, url, groups=[F.WEBHOOK_GROUP_STACKS])
    make_webhook(client, stack, url)
    make_webhook(client, stack_of(org, "elsewhere"), url)
    make_webhook(client, organization, url, active=False)

    for wanted, make_event in TRIGGERS.items():
        event = make_event(stack)
        matched = {m.webhook for m in dry_run(client, event).matches if m.matched}
        published = publish(client, event)
        assert {name.rsplit("/deliveries/", 1)[0] for name in published.deliveries} == matched, wanted


def _count(server: RunningServer, table: str) -> int:
    [(count,)] = sql.execute(server.settings.database, f"SELECT COUNT(*) FROM {table}")
    return int(count)


def test_a_dry_run_stores_and_sends_nothing(
    client: Client, server: RunningServer, receiver: Receiver, org: str
) -> None:
    path = f"/dry-nothing/{org}"
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
    before = {table: _count(server, table) for table in ("event", "delivery", "idempotency_key")}

    answer = dry_run(client, seed.update_event(stack=stack_of(org)))

    assert [(m.webhook, m.matched) for m in answer.matches] == [(hook.name, True)]
    assert {table: _count(server, table) for table in before} == before
    listed = client.webhooks.ListWebhookDeliveries(WS.ListWebhookDeliveriesRequest(parent=hook.name))
    assert list(listed.deliveries) == []
    time.sleep(0.5)  # room for a request to arrive, were one sent
    assert receiver.received(path) == []


@pytest.mark.parametrize(("field", "given"), BAD_EVENTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_EVENTS)])
def test_an_event_publishing_would_refuse_is_refused_alike(client: Client, org: str, field: str, given: Any) -> None:
    bad = None if given is None else E.Event.FromString(given.SerializeToString())
    if bad is not None and bad.stack in ("organizations/{org}/projects/p/stacks/s", seed.STACK):
        bad.stack = stack_of(org)
    refused = rpc_error(client.events.TestEventMatch, ES.TestEventMatchRequest(event=bad))
    published = rpc_error(client.events.PublishEvent, ES.PublishEventRequest(event=bad))
    assert refused.code() == published.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused) == field_violations(published)
    assert list(field_violations(refused)) == [field]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def test_an_event_over_64_kib_is_refused_alike(client: Client, org: str) -> None:
    """Every field within its own limit, and the whole over 64 KiB, by a field this release does not know."""
    padding = b"x" * (65 * 1024)
    unknown = _varint(1000 << 3 | 2) + _varint(len(padding)) + padding
    big = E.Event.FromString(seed.update_event(stack=stack_of(org)).SerializeToString() + unknown)
    refused = rpc_error(client.events.TestEventMatch, ES.TestEventMatchRequest(event=big))
    published = rpc_error(client.events.PublishEvent, ES.PublishEventRequest(event=big))
    assert refused.code() == published.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused) == field_violations(published) == {"event": "must be at most 65536 bytes"}


def test_other_stacks_webhooks_are_listed_up_to_a_bound(
    client: Client, server: RunningServer, receiver: Receiver, org: str
) -> None:
    """An organization's stacks are not bounded: past 1000 other-stack webhooks, the answer says it left
    some out, while the organization's own and the event's stack's are always there."""
    own = make_webhook(client, stack_of(org), receiver.url("/own")).name
    mine = make_webhook(client, f"organizations/{org}", receiver.url("/mine")).name
    moment = time.time()
    sql.execute_many(
        server.settings.database,
        "INSERT INTO webhook (organization, project, stack, webhook_id, display_name, payload_url, secret, active,"
        " format, filters, groups, disabled_reason, create_time, update_time)"
        " VALUES (%s, 'p', %s, 'w', 'w', 'http://example.com/', '', TRUE, 'raw', '', '', '', %s, %s)",
        [(org, f"s{number:04d}", moment, moment) for number in range(1001)],
    )

    answer = dry_run(client, seed.update_event(stack=stack_of(org)))

    assert answer.other_stacks_truncated
    names = [m.webhook for m in answer.matches]
    assert len(names) == 1002 and own in names and mine in names
    assert f"organizations/{org}/projects/p/stacks/s0999/webhooks/w" in names
    assert f"organizations/{org}/projects/p/stacks/s1000/webhooks/w" not in names
    assert {m.reason for m in answer.matches if m.webhook not in (own, mine)} == {ES.MISMATCH_REASON_OTHER_STACK}
