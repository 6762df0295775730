"""The interceptors wrap each method's handler once (api/grpc/handlers.PerMethod), and what they do around a call
still follows that call: its own token, its own status."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from tests.support.running import RunningServer
from tests.support.tokens import create_token
from webhook_service.api.grpc.handlers import PerMethod
from webhooks.v1 import webhook_pb2, webhook_service_pb2
from webhooks_client import Client


def test_a_methods_handler_is_made_once_and_unknown_methods_are_not_kept() -> None:
    made: list[str] = []
    asked: list[str] = []
    known = grpc.unary_unary_rpc_method_handler(lambda request, context: request)

    def make(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        made.append(method)
        return handler

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        asked.append(details.method)
        return known if details.method == "/webhooks.v1.WebhookService/GetWebhook" else None

    class Details(grpc.HandlerCallDetails):
        def __init__(self, method: str) -> None:
            self.method = method
            self.invocation_metadata = ()

    per_method = PerMethod(make)

    async def calls() -> list[object]:
        names = ["/webhooks.v1.WebhookService/GetWebhook", "/no.Such/Method"] * 3
        return [await per_method.handler(continuation, Details(name)) for name in names]

    handlers = asyncio.run(calls())
    assert handlers == [known, None] * 3
    assert made == ["/webhooks.v1.WebhookService/GetWebhook"]
    assert asked == ["/webhooks.v1.WebhookService/GetWebhook"] + ["/no.Such/Method"] * 3


def test_calls_of_one_method_are_each_judged_by_their_own_token(server: RunningServer) -> None:
    """The wrapped handler made for the first call reads each later call's token from that call."""
    org = "organizations/per-method"
    request = webhook_service_pb2.CreateWebhookRequest(
        parent=org, webhook=webhook_pb2.Webhook(display_name="hook", payload_url="https://example.com/hook")
    )
    reader = create_token(server.settings.database, "reader", "per-method")
    with server.client() as admin, server.client(reader) as read_only, Client(server.target) as anonymous:
        for _ in range(2):
            created = admin.webhooks.CreateWebhook(request, timeout=10)
            assert created.name.startswith(org + "/webhooks/")
            for client, code in ((read_only, grpc.StatusCode.PERMISSION_DENIED), (anonymous, None)):
                try:
                    client.webhooks.CreateWebhook(request, timeout=10)
                except grpc.RpcError as error:
                    assert error.code() == (code or grpc.StatusCode.UNAUTHENTICATED)
                else:
                    raise AssertionError("a caller without an admin token created a webhook")
