"""Errors a program can act on: a BadRequest lists every violation of a request, with paths that index
repeated fields, and every error carries a google.rpc.ErrorInfo with a stable reason."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.tokens import create_token
from webhook_service.domain.errors import MAX_VIOLATIONS, Reason
from webhooks.v1 import event_pb2, event_service_pb2, webhook_pb2
from webhooks_client import Client, error_info, error_reason, retry_delay, violations

README = Path(__file__).parent.parent / "README.md"
Webhook = webhook_pb2.Webhook
UNKNOWN_TOKEN = "whk_" + "A" * 43


def listed(error: grpc.RpcError) -> list[tuple[str, str]]:
    return [(violation.field, violation.reason) for violation in violations(error)]


def test_a_create_lists_every_violation_with_indexed_paths_and_changes_nothing(client: Client, org: str) -> None:
    stack = f"organizations/{org}/projects/p/stacks/s"
    request = WS.CreateWebhookRequest(
        parent=stack,
        webhook_id="no/slash",
        webhook=Webhook(
            display_name="",
            payload_url="http://169.254.169.254/latest/meta-data",
            filters=[
                webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED,
                webhook_pb2.WEBHOOK_FILTER_DEPLOYMENT_FAILED,
                webhook_pb2.WEBHOOK_FILTER_STACK_CREATED,
            ],
            groups=[webhook_pb2.WEBHOOK_GROUP_STACKS, 7],
        ),
        request_id="r" * 129,
    )

    error = rpc_error(client.webhooks.CreateWebhook, request)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(listed(error)) == sorted(
        [
            ("webhook_id", "INVALID_NAME"),
            ("webhook.display_name", "FIELD_REQUIRED"),
            ("webhook.payload_url", "BLOCKED_ADDRESS"),
            ("webhook.filters[2]", "FILTER_NOT_ALLOWED"),
            ("webhook.groups[1]", "INVALID_ENUM_VALUE"),
            ("request_id", "FIELD_TOO_LARGE"),
        ]
    )
    # The ErrorInfo names the first violation's reason; the message names every field.
    assert error_reason(error) == listed(error)[0][1]
    for field, _ in listed(error):
        assert field in (error.details() or "")
    assert not client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=stack)).webhooks


def test_an_update_lists_every_violation(client: Client, org: str) -> None:
    made = make_webhook(client, f"organizations/{org}/projects/p/stacks/s", "https://example.com/h")
    error = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(
            webhook=Webhook(
                name=made.name,
                display_name=" ",
                payload_url="ftp://example.com",
                filters=[webhook_pb2.WEBHOOK_FILTER_UPDATE_FAILED, webhook_pb2.WEBHOOK_FILTER_STACK_DELETED],
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "payloadUrl", "filters"]),
        ),
    )
    assert sorted(listed(error)) == [
        ("webhook.display_name", "FIELD_REQUIRED"),
        ("webhook.filters[1]", "FILTER_NOT_ALLOWED"),
        ("webhook.payload_url", "INVALID_URL"),
    ]
    assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=made.name)) == made

    masks = rpc_error(
        client.webhooks.UpdateWebhook,
        WS.UpdateWebhookRequest(
            webhook=Webhook(name=made.name), update_mask=field_mask_pb2.FieldMask(paths=["colour", "create_time"])
        ),
    )
    assert listed(masks) == [("update_mask", "INVALID_UPDATE_MASK")] * 2


def test_a_publish_lists_every_violation_of_its_event(client: Client, org: str) -> None:
    event = event_pb2.Event(
        stack=f"organizations/{org}/projects/p",
        user=event_pb2.Identity(name="n" * 1025),
        update_event=event_pb2.UpdateEvent(
            kind=event_pb2.UPDATE_KIND_UNSPECIFIED, result=9, resource_changes={"x": -1}
        ),
    )
    error = rpc_error(
        client.events.PublishEvent, event_service_pb2.PublishEventRequest(event=event, request_id="r" * 129)
    )
    assert sorted(listed(error)) == sorted(
        [
            ("event.stack", "INVALID_NAME"),
            ("event.user.name", "FIELD_TOO_LARGE"),
            ("event.update_event.resource_changes", "INVALID_ARGUMENT"),
            ("event.update_event.kind", "INVALID_ENUM_VALUE"),
            ("event.update_event.result", "INVALID_ENUM_VALUE"),
            ("request_id", "FIELD_TOO_LARGE"),
        ]
    )


def test_a_flood_of_bad_entries_gets_a_short_answer(client: Client, org: str) -> None:
    request = WS.CreateWebhookRequest(
        parent=f"organizations/{org}",
        webhook=Webhook(display_name="", payload_url="https://example.com", filters=[99] * 100_000),
    )
    error = rpc_error(client.webhooks.CreateWebhook, request)
    fields = [field for field, _ in listed(error)]
    assert len(fields) == MAX_VIOLATIONS + 1
    assert fields[:2] == ["webhook.filters[0]", "webhook.filters[1]"]
    assert fields[-1] == "request"


def raw_call(server: RunningServer, method: str, body: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as caught:
            call(body, metadata=[("authorization", f"Bearer {server.admin_token}")], timeout=10)
    return caught.value


def _not_found(client: Client, org: str) -> None:
    client.webhooks.GetWebhook(WS.GetWebhookRequest(name=f"organizations/{org}/webhooks/none"))


def _delivery_not_found(client: Client, org: str) -> None:
    hook = make_webhook(client, f"organizations/{org}", "https://example.com/h")
    client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=f"{hook.name}/deliveries/none"))


def _exists(client: Client, org: str) -> None:
    for _ in range(2):
        make_webhook(client, f"organizations/{org}", "https://example.com/h", webhook_id="twice")


def _request_id_reused(client: Client, org: str) -> None:
    for url in ("https://example.com/one", "https://example.com/two"):
        client.webhooks.CreateWebhook(
            WS.CreateWebhookRequest(
                parent=f"organizations/{org}",
                webhook=Webhook(display_name="x", payload_url=url),
                request_id="same",
            )
        )


def _limit_reached(client: Client, org: str) -> None:
    for _ in range(21):
        make_webhook(client, f"organizations/{org}/projects/p/stacks/s", "https://example.com/h")


def _bad_page_token(client: Client, org: str) -> None:
    client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}", page_token="nope"))


def _bad_view(client: Client, org: str) -> None:
    client.webhooks.ListWebhookDeliveries(
        WS.ListWebhookDeliveriesRequest(parent=f"organizations/{org}/webhooks/x", view=9)
    )


@pytest.mark.parametrize(
    ("call", "code", "reason"),
    [
        (_not_found, grpc.StatusCode.NOT_FOUND, "WEBHOOK_NOT_FOUND"),
        (_delivery_not_found, grpc.StatusCode.NOT_FOUND, "DELIVERY_NOT_FOUND"),
        (_exists, grpc.StatusCode.ALREADY_EXISTS, "WEBHOOK_ALREADY_EXISTS"),
        (_request_id_reused, grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED"),
        (_limit_reached, grpc.StatusCode.RESOURCE_EXHAUSTED, "WEBHOOK_LIMIT_REACHED"),
        (_bad_page_token, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN"),
        (_bad_view, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ENUM_VALUE"),
    ],
)
def test_each_error_carries_its_reason(
    client: Client, org: str, call: Callable[[Client, str], None], code: grpc.StatusCode, reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(client, org)
    assert caught.value.code() == code
    info = error_info(caught.value)
    assert info is not None
    assert (info.domain, info.reason) == ("webhooks.internal", reason)


def test_malformed_requests_and_deliveries_of_deleted_webhooks_carry_reasons(
    server: RunningServer, client: Client, receiver: Receiver, org: str
) -> None:
    malformed = raw_call(server, "/webhooks.v1.WebhookService/GetWebhook", b"\xff\xff\xff")
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(malformed) == "MALFORMED_REQUEST"
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/reasons/{org}"))
    [name] = publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")).deliveries
    wait_for_delivery(client, name)
    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=hook.name))
    gone = rpc_error(client.webhooks.RedeliverWebhookDelivery, WS.RedeliverWebhookDeliveryRequest(name=name))
    assert (gone.code(), error_reason(gone)) == (grpc.StatusCode.NOT_FOUND, "WEBHOOK_NOT_FOUND")


def test_who_may_call_what_carries_reasons(server: RunningServer, org: str) -> None:
    publisher = create_token(server.settings.database, "publisher", org)
    request = WS.ListWebhooksRequest(parent=f"organizations/{org}")
    cases = [
        (None, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MALFORMED"),
        (UNKNOWN_TOKEN, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
        (publisher, grpc.StatusCode.PERMISSION_DENIED, "OPERATION_NOT_ALLOWED"),
    ]
    for token, code, reason in cases:
        with Client(server.target, token=token) as caller:
            error = rpc_error(caller.webhooks.ListWebhooks, request)
        assert (error.code(), error_reason(error)) == (code, reason), token
    with Client(server.target, token=publisher) as caller:
        elsewhere = seed.update_event(stack="organizations/someone-else/projects/p/stacks/s")
        error = rpc_error(caller.events.PublishEvent, event_service_pb2.PublishEventRequest(event=elsewhere))
    assert (error.code(), error_reason(error)) == (grpc.StatusCode.PERMISSION_DENIED, "ORGANIZATION_NOT_ALLOWED")


def test_a_rate_limited_call_says_when_to_retry(start_server: Callable[..., RunningServer], org: str) -> None:
    running = start_server(rate_limit=1)
    with running.client() as client:
        request = WS.ListWebhooksRequest(parent=f"organizations/{org}")
        with pytest.raises(grpc.RpcError) as caught:
            for _ in range(5):
                client.webhooks.ListWebhooks(request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(caught.value) == "RATE_LIMITED"
    delay = retry_delay(caught.value)
    assert delay is not None and 0 < delay <= 1


def readme_reasons() -> set[str]:
    text = README.read_text()
    start = text.index("## Error reasons")
    section = text[start : text.index("\n## ", start)]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))


def test_the_readme_lists_every_reason() -> None:
    generic = {code.name for code in grpc.StatusCode} - {"OK", "UNKNOWN"}
    listed = readme_reasons()
    assert {reason.value for reason in Reason} <= listed
    assert listed <= {reason.value for reason in Reason} | generic


def test_a_list_lists_every_violation(client: Client, org: str) -> None:
    webhooks = rpc_error(
        client.webhooks.ListWebhooks, WS.ListWebhooksRequest(parent="orgs/x", page_size=-1, page_token="nope")
    )
    assert listed(webhooks) == [
        ("parent", "INVALID_NAME"),
        ("page_size", "INVALID_ARGUMENT"),
        ("page_token", "INVALID_PAGE_TOKEN"),
    ]
    deliveries = rpc_error(
        client.webhooks.ListWebhookDeliveries,
        WS.ListWebhookDeliveriesRequest(parent=f"organizations/{org}", page_size=-5, view=7),
    )
    assert sorted(listed(deliveries)) == [
        ("page_size", "INVALID_ARGUMENT"),
        ("parent", "INVALID_NAME"),
        ("view", "INVALID_ENUM_VALUE"),
    ]
    delivery = rpc_error(client.webhooks.GetWebhookDelivery, WS.GetWebhookDeliveryRequest(name="x", view=7))
    assert sorted(listed(delivery)) == [("name", "INVALID_NAME"), ("view", "INVALID_ENUM_VALUE")]
