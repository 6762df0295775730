"""Page tokens a caller made up are INVALID_ARGUMENT naming page_token, whatever they hold."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest

from tests.helpers import WS, make_webhook, rpc_error
from webhooks_client import Client, field_violations


def token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def fields(parent: str, cursor: Any, **extra: Any) -> str:
    return token(json.dumps({"parent": parent, "cursor": cursor, **extra}).encode())


CRAFTED = {
    "cursor past 64 bits": lambda parent: fields(parent, 2**63),
    "cursor far below zero": lambda parent: fields(parent, -(2**70)),
    "cursor zero": lambda parent: fields(parent, 0),
    "cursor true": lambda parent: fields(parent, True),
    "cursor a float": lambda parent: fields(parent, 1.5),
    "cursor a string": lambda parent: fields(parent, "7"),
    "deep nesting": lambda parent: token(b"[" * 100_000 + b"]" * 100_000),
    "deep nesting in the cursor": lambda parent: token(
        b'{"parent": "' + parent.encode() + b'", "cursor": ' + b"[" * 300 + b"]" * 300 + b"}"
    ),
    "not an object": lambda parent: token(b"[1, 2]"),
    "far too long": lambda parent: fields(parent, 5, padding="x" * 5000),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_page_tokens_are_invalid_arguments(client: Client, org: str, case: str) -> None:
    hook = make_webhook(client, f"organizations/{org}", "https://example.com/pages")
    lists = [
        (client.webhooks.ListWebhooks, WS.ListWebhooksRequest, f"organizations/{org}"),
        (client.webhooks.ListWebhookDeliveries, WS.ListWebhookDeliveriesRequest, hook.name),
    ]
    for call, request, parent in lists:
        error = rpc_error(call, request(parent=parent, page_token=CRAFTED[case](parent)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (request.__name__, error)
        assert list(field_violations(error)) == ["page_token"]


def test_returned_tokens_still_page_through(client: Client, org: str) -> None:
    made = [make_webhook(client, f"organizations/{org}", f"https://example.com/{n}").name for n in range(3)]
    seen: list[str] = []
    page_token = ""
    while True:
        page = client.webhooks.ListWebhooks(
            WS.ListWebhooksRequest(parent=f"organizations/{org}", page_size=2, page_token=page_token)
        )
        seen += [hook.name for hook in page.webhooks]
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == made
