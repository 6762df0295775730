"""WebhookService management against the real server and a real database file."""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from webhooks.v1 import webhook_pb2, webhook_service_pb2
from webhooks_client import Client, field_violations

WS = webhook_service_pb2
Webhook = webhook_pb2.Webhook
URL = "https://hooks.example.com/pulumi"


def create(client: Client, parent: str, webhook_id: str = "", request_id: str = "", **fields: Any) -> Webhook:
    fields.setdefault("display_name", "Build notifications")
    fields.setdefault("payload_url", URL)
    return client.webhooks.CreateWebhook(
        WS.CreateWebhookRequest(parent=parent, webhook_id=webhook_id, webhook=Webhook(**fields), request_id=request_id)
    )


def list_all(client: Client, parent: str, page_size: int = 0) -> list[Webhook]:
    found: list[Webhook] = []
    token = ""
    while True:
        page = client.webhooks.ListWebhooks(
            WS.ListWebhooksRequest(parent=parent, page_size=page_size, page_token=token)
        )
        found.extend(page.webhooks)
        token = page.next_page_token
        if not token:
            return found


def rpc_error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    error: grpc.RpcError = caught.value
    return error


def test_create_organization_webhook_returns_it_without_its_secret(client: Client, org: str) -> None:
    made = create(client, f"organizations/{org}", secret="s3cr3t", format=webhook_pb2.WEBHOOK_FORMAT_SLACK)

    assert re.fullmatch(rf"organizations/{org}/webhooks/[0-9a-f]{{16}}", made.name)
    assert made.display_name == "Build notifications"
    assert made.payload_url == URL
    assert made.secret == ""
    assert made.has_secret
    assert made.active
    assert made.format == webhook_pb2.WEBHOOK_FORMAT_SLACK
    assert made.create_time.seconds > 0
    assert made.update_time == made.create_time
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=made.name)) == made


def test_create_stack_webhook_with_filters_groups_and_id(client: Client, org: str) -> None:
    parent = f"organizations/{org}/projects/website/stacks/website-prod"
    made = create(
        client,
        parent,
        webhook_id="deploys.v1_x-y",
        active=False,
        filters=[webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED, webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED],
        groups=[webhook_pb2.WEBHOOK_GROUP_DEPLOYMENTS],
    )

    assert made.name == f"{parent}/webhooks/deploys.v1_x-y"
    assert not made.active
    assert not made.has_secret
    assert list(made.filters) == [webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED]
    assert list(made.groups) == [webhook_pb2.WEBHOOK_GROUP_DEPLOYMENTS]
    assert made.format == webhook_pb2.WEBHOOK_FORMAT_RAW


def test_taken_id_is_already_exists_and_keeps_the_first(client: Client, org: str) -> None:
    first = create(client, f"organizations/{org}", webhook_id="ci")
    error = rpc_error(
        client.webhooks.CreateWebhook,
        WS.CreateWebhookRequest(
            parent=f"organizations/{org}", webhook_id="ci", webhook=Webhook(display_name="other", payload_url=URL)
        ),
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=first.name)).display_name == first.display_name


def test_same_id_under_another_parent_is_another_webhook(client: Client, org: str) -> None:
    create(client, f"organizations/{org}", webhook_id="ci")
    stack_hook = create(client, f"organizations/{org}/projects/p/stacks/s", webhook_id="ci")
    assert stack_hook.name.endswith("/stacks/s/webhooks/ci")


def test_request_id_repeat_returns_the_first_result(client: Client, org: str) -> None:
    parent = f"organizations/{org}"
    first = create(client, parent, request_id="req-1")
    again = create(client, parent, request_id="req-1")
    assert again.name == first.name
    assert [w.name for w in list_all(client, parent)] == [first.name]


INVALID_CREATES = [
    ("parent", {"parent": "orgs/acme"}),
    ("parent", {"parent": "organizations/"}),
    ("parent", {"parent": "organizations/acme/projects/p"}),
    ("parent", {"parent": "organizations/" + "a" * 101}),
    ("parent", {"parent": "organizations/ac me"}),
    ("webhook_id", {"webhook_id": "a" * 33}),
    ("webhook_id", {"webhook_id": "no/slash"}),
    ("webhook", {"webhook": None}),
    ("webhook.display_name", {"display_name": ""}),
    ("webhook.display_name", {"display_name": "   "}),
    ("webhook.display_name", {"display_name": "x" * 257}),
    ("webhook.payload_url", {"payload_url": ""}),
    ("webhook.payload_url", {"payload_url": "ftp://example.com/x"}),
    ("webhook.payload_url", {"payload_url": "https:///no-host"}),
    ("webhook.payload_url", {"payload_url": "example.com/x"}),
    ("webhook.payload_url", {"payload_url": "https://example.com:99999/x"}),
    ("webhook.payload_url", {"payload_url": "https://example.com:0/x"}),
    ("webhook.payload_url", {"payload_url": "http://93.184.216.34:0/x"}),
    ("webhook.payload_url", {"payload_url": "https://example.com/" + "x" * 2048}),
    ("webhook.secret", {"secret": "s" * 513}),
    ("webhook.format", {"format": 42}),
    ("webhook.filters[0]", {"filters": [99]}),
    ("webhook.filters[0]", {"filters": [webhook_pb2.WEBHOOK_FILTER_UNSPECIFIED]}),
    ("webhook.groups[0]", {"groups": [7]}),
    ("webhook.filters[0]", {"stack": True, "filters": [webhook_pb2.WEBHOOK_FILTER_STACK_CREATED]}),
    ("webhook.filters[0]", {"stack": True, "filters": [webhook_pb2.WEBHOOK_FILTER_STACK_DELETED]}),
    ("request_id", {"request_id": "r" * 129}),
]


@pytest.mark.parametrize(
    ("field", "change"), INVALID_CREATES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(INVALID_CREATES)]
)
def test_invalid_create_names_the_field_and_changes_nothing(
    client: Client, org: str, field: str, change: dict[str, Any]
) -> None:
    change = dict(change)
    stack = change.pop("stack", False)
    parent = change.pop("parent", f"organizations/{org}" + ("/projects/p/stacks/s" if stack else ""))
    webhook_id = change.pop("webhook_id", "")
    request_id = change.pop("request_id", "")
    fields = {"display_name": "ok", "payload_url": URL, **change}
    webhook = (
        None if change.get("webhook", 1) is None else Webhook(**{k: v for k, v in fields.items() if k != "webhook"})
    )
    request = WS.CreateWebhookRequest(parent=parent, webhook_id=webhook_id, webhook=webhook, request_id=request_id)

    error = rpc_error(client.webhooks.CreateWebhook, request)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [field]
    assert field in (error.details() or "")
    assert list_all(client, f"organizations/{org}") == []
    assert list_all(client, f"organizations/{org}/projects/p/stacks/s") == []


def test_get_missing_is_not_found_and_malformed_is_invalid(client: Client, org: str) -> None:
    missing = rpc_error(client.webhooks.GetWebhook, WS.GetWebhookRequest(name=f"organizations/{org}/webhooks/nope"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    malformed = rpc_error(client.webhooks.GetWebhook, WS.GetWebhookRequest(name=f"organizations/{org}/hooks/x"))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(malformed)) == ["name"]


def update(client: Client, webhook: Webhook, *paths: str) -> Webhook:
    mask = field_mask_pb2.FieldMask(paths=list(paths))
    return client.webhooks.UpdateWebhook(WS.UpdateWebhookRequest(webhook=webhook, update_mask=mask))


def test_update_with_mask_changes_only_the_named_fields(client: Client, org: str) -> None:
    made = create(client, f"organizations/{org}", secret="keep", filters=[webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED])
    changed = update(
        client, Webhook(name=made.name, display_name="Renamed", payload_url="http://ignored"), "display_name"
    )

    assert changed.display_name == "Renamed"
    assert changed.payload_url == URL
    assert changed.has_secret
    assert list(changed.filters) == [webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED]
    assert changed.create_time == made.create_time
    assert changed.update_time.ToDatetime() > made.update_time.ToDatetime()
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=made.name)) == changed


def test_update_with_empty_mask_takes_the_fields_that_are_set(client: Client, org: str) -> None:
    made = create(client, f"organizations/{org}", secret="keep", groups=[webhook_pb2.WEBHOOK_GROUP_STACKS])
    changed = update(client, Webhook(name=made.name, payload_url="https://new.example.com/h", active=False))

    assert changed.payload_url == "https://new.example.com/h"
    assert not changed.active
    assert changed.display_name == made.display_name
    assert changed.has_secret
    assert list(changed.groups) == [webhook_pb2.WEBHOOK_GROUP_STACKS]


def test_update_with_star_replaces_every_field_but_an_empty_secret(client: Client, org: str) -> None:
    made = create(
        client,
        f"organizations/{org}",
        secret="kept",
        active=False,
        format=webhook_pb2.WEBHOOK_FORMAT_MS_TEAMS,
        filters=[webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED],
    )
    changed = update(
        client, Webhook(name=made.name, display_name="Fresh", payload_url="https://fresh.example.com"), "*"
    )

    assert changed.display_name == "Fresh"
    assert changed.payload_url == "https://fresh.example.com"
    assert changed.has_secret
    assert changed.active
    assert changed.format == webhook_pb2.WEBHOOK_FORMAT_RAW
    assert list(changed.filters) == []


def test_update_mask_naming_secret_with_empty_value_removes_it(client: Client, org: str) -> None:
    made = create(client, f"organizations/{org}", secret="old")
    assert not update(client, Webhook(name=made.name), "secret").has_secret
    assert update(client, Webhook(name=made.name, secret="new"), "secret").has_secret


@pytest.mark.parametrize(
    ("paths", "webhook", "field"),
    [
        (["has_secret"], {}, "update_mask"),
        (["create_time"], {}, "update_mask"),
        (["disabled_reason"], {}, "update_mask"),
        (["name"], {}, "update_mask"),
        (["colour"], {}, "update_mask"),
        (["display_name"], {"display_name": ""}, "webhook.display_name"),
        (["payload_url"], {"payload_url": "mailto:x@example.com"}, "webhook.payload_url"),
        (["payload_url"], {"payload_url": "https://example.com:0/x"}, "webhook.payload_url"),
        (["payload_url"], {"payload_url": "https://example.com:65536/x"}, "webhook.payload_url"),
        (["filters"], {"filters": [webhook_pb2.WEBHOOK_FILTER_STACK_CREATED]}, "webhook.filters[0]"),
        (["format"], {"format": 17}, "webhook.format"),
    ],
)
def test_rejected_update_names_the_field_and_changes_nothing(
    client: Client, org: str, paths: list[str], webhook: dict[str, Any], field: str
) -> None:
    made = create(client, f"organizations/{org}/projects/p/stacks/s", secret="keep")
    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(
            webhook=Webhook(name=made.name, **webhook), update_mask=field_mask_pb2.FieldMask(paths=paths)
        ),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [field]
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=made.name)) == made


def test_a_huge_unknown_mask_path_is_named_briefly(client: Client, org: str) -> None:
    """Echoed whole, a 100 KB path would make the error overflow the reply's metadata: RESOURCE_EXHAUSTED."""
    made = create(client, f"organizations/{org}")
    path = "colour" + "x" * 100_000
    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(webhook=Webhook(name=made.name), update_mask=field_mask_pb2.FieldMask(paths=[path])),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["update_mask"]
    assert f"unknown field '{path[:63]}…'" in (error.details() or "")
    assert len(error.details() or "") < 300
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=made.name)) == made


def test_update_of_missing_webhook_is_not_found(client: Client, org: str) -> None:
    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(webhook=Webhook(name=f"organizations/{org}/webhooks/none", display_name="x")),
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (
        rpc_error(client.webhooks.UpdateWebhook, WS.UpdateWebhookRequest()).code() == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_delete_removes_it_and_a_second_delete_is_not_found(client: Client, org: str) -> None:
    made = create(client, f"organizations/{org}")
    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=made.name))
    assert (
        rpc_error(client.webhooks.GetWebhook, WS.GetWebhookRequest(name=made.name)).code() == grpc.StatusCode.NOT_FOUND
    )
    again = rpc_error(client.webhooks.DeleteWebhook, WS.DeleteWebhookRequest(name=made.name))
    assert again.code() == grpc.StatusCode.NOT_FOUND
    malformed = rpc_error(client.webhooks.DeleteWebhook, WS.DeleteWebhookRequest(name="organizations/x"))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_pages_in_creation_order_and_keeps_scopes_apart(client: Client, org: str) -> None:
    parent = f"organizations/{org}"
    made = [create(client, parent, display_name=f"hook {i}").name for i in range(7)]
    create(client, f"{parent}/projects/p/stacks/s")

    first = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=parent, page_size=3))
    assert [w.name for w in first.webhooks] == made[:3]
    assert first.next_page_token
    assert [w.name for w in list_all(client, parent, page_size=3)] == made
    assert [w.name for w in list_all(client, parent, page_size=7)] == made
    assert len(list_all(client, f"{parent}/projects/p/stacks/s")) == 1
    assert all(w.secret == "" for w in list_all(client, parent))


def test_list_default_page_size_is_50_and_large_sizes_are_capped(client: Client, org: str) -> None:
    parent = f"organizations/{org}"
    for i in range(51):
        create(client, parent, webhook_id=f"h{i:02d}")
    first = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=parent))
    assert len(first.webhooks) == 50
    rest = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=parent, page_token=first.next_page_token))
    assert [w.name.rsplit("/", 1)[1] for w in rest.webhooks] == ["h50"]
    assert rest.next_page_token == ""
    everything = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=parent, page_size=100_000))
    assert len(everything.webhooks) == 51


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page_size": -1}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"page_token": "eyJ4IjoxfQ"}, "page_token"),
        ({"parent": "organizations/a/projects/b"}, "parent"),
    ],
)
def test_list_rejects_bad_paging(client: Client, org: str, request_fields: dict[str, Any], field: str) -> None:
    request = WS.ListWebhooksRequest(**{"parent": f"organizations/{org}", **request_fields})
    error = rpc_error(client.webhooks.ListWebhooks, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [field]


def test_page_token_from_another_parent_is_refused(client: Client, org: str) -> None:
    for _ in range(2):
        create(client, f"organizations/{org}")
    token = client.webhooks.ListWebhooks(
        WS.ListWebhooksRequest(parent=f"organizations/{org}", page_size=1)
    ).next_page_token
    error = rpc_error(
        client.webhooks.ListWebhooks, WS.ListWebhooksRequest(parent=f"organizations/{org}-other", page_token=token)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["page_token"]
