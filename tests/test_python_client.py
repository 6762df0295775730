"""The Python client: sync and asyncio, both with a default deadline and retries while the service is
UNAVAILABLE, and every message type of the contract importable from `webhooks_client`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

import webhooks_client
from tests.helpers import make_webhook
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from webhooks.v1 import delivery_pb2, event_pb2, event_service_pb2, webhook_pb2, webhook_service_pb2_grpc
from webhooks.v1 import webhook_service_pb2 as WS
from webhooks_client import (
    AsyncClient,
    Client,
    CreateWebhookRequest,
    FieldMask,
    GetWebhookRequest,
    ListWebhooksRequest,
    UpdateWebhookRequest,
    WatchWebhookDeliveriesResponse,
    Webhook,
    WebhookDeliveryState,
    WebhookFilter,
    error_reason,
    violations,
)


@pytest.mark.parametrize("module", [webhook_pb2, delivery_pb2, event_pb2, WS, event_service_pb2])
def test_every_message_and_enum_of_the_contract_is_importable_from_one_place(module: Any) -> None:
    names = [*module.DESCRIPTOR.message_types_by_name, *module.DESCRIPTOR.enum_types_by_name]
    for name in names:
        assert getattr(webhooks_client, name) is getattr(module, name), name
        assert name in webhooks_client.__all__


def test_the_async_client_calls_the_service_and_reads_its_errors(server: RunningServer, org: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.target, token=server.admin_token) as client:
            made = await client.webhooks.CreateWebhook(
                CreateWebhookRequest(
                    parent=f"organizations/{org}",
                    webhook=Webhook(
                        display_name="async",
                        payload_url="https://example.com/h",
                        filters=[WebhookFilter.WEBHOOK_FILTER_UPDATE_FAILED],
                    ),
                )
            )
            listed = await client.webhooks.ListWebhooks(ListWebhooksRequest(parent=f"organizations/{org}"))
            assert [w.name for w in listed.webhooks] == [made.name]
            renamed = await client.webhooks.UpdateWebhook(
                UpdateWebhookRequest(
                    webhook=Webhook(name=made.name, display_name="renamed", etag=made.etag),
                    update_mask=FieldMask(paths=["display_name"]),
                )
            )
            assert renamed.display_name == "renamed"
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await client.webhooks.GetWebhook(GetWebhookRequest(name=f"organizations/{org}/webhooks/none"))
            assert error_reason(missing.value) == "WEBHOOK_NOT_FOUND"
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await client.webhooks.CreateWebhook(
                    CreateWebhookRequest(parent=f"organizations/{org}", webhook=Webhook(payload_url="mailto:x"))
                )
            assert [(v.field, v.reason) for v in violations(invalid.value)] == [
                ("webhook.display_name", "FIELD_REQUIRED"),
                ("webhook.payload_url", "INVALID_URL"),
            ]
        async with AsyncClient(server.target) as anonymous:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await anonymous.webhooks.GetWebhook(GetWebhookRequest(name=made.name))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    asyncio.run(scenario())


SUCCEEDED = WebhookDeliveryState.WEBHOOK_DELIVERY_STATE_SUCCEEDED


def test_both_clients_watch_deliveries_past_their_default_deadline(
    server: RunningServer, receiver: Receiver, org: str
) -> None:
    """A watch carries the token like any call, and only the caller ends it: it outlives the 1 s deadline both
    clients give their other calls here, then sees the ping made after."""
    with server.client() as admin:
        hook = make_webhook(admin, f"organizations/{org}", receiver.url(f"/{org}/watched"))

        def ping() -> str:
            return admin.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name)).name

        with Client(server.target, token=server.admin_token, timeout=1) as client:
            call = client.watch_webhook_deliveries(hook.name)
            call.initial_metadata()
            time.sleep(1.5)
            pinged = ping()
            watched = next(call)
            call.cancel()
        assert (watched.delivery, watched.kind, watched.state) == (pinged, "ping", SUCCEEDED)

        async def scenario() -> tuple[str, WatchWebhookDeliveriesResponse]:
            async with AsyncClient(server.target, token=server.admin_token, timeout=1) as client:
                call = client.watch_webhook_deliveries(hook.name, [SUCCEEDED])
                await call.initial_metadata()
                await asyncio.sleep(1.5)
                pinged = await asyncio.to_thread(ping)
                async for watched in call:
                    call.cancel()
                    return pinged, watched
            raise AssertionError("the watch ended without an attempt")

        pinged, watched = asyncio.run(scenario())
        assert (watched.delivery, watched.kind, watched.state) == (pinged, "ping", SUCCEEDED)


class Unsteady(webhook_service_pb2_grpc.WebhookServiceServicer):
    """A stand-in for a service that cannot reach its database for the first `failures` calls of GetWebhook,
    and whose ListWebhooks never answers: what the client does about either is under test, not the service."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.released = threading.Event()
        self.request_ids: list[str] = []

    def CreateWebhook(self, request: CreateWebhookRequest, context: grpc.ServicerContext) -> Webhook:
        self.request_ids.append(request.request_id)
        if len(self.request_ids) % 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the commit's outcome is unknown; try again")
        return Webhook(name=f"{request.parent}/webhooks/made")

    def GetWebhook(self, request: GetWebhookRequest, context: grpc.ServicerContext) -> Webhook:
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unavailable; try again")
        return Webhook(name=request.name)

    def ListWebhooks(self, request: ListWebhooksRequest, context: grpc.ServicerContext) -> Message:
        self.released.wait(60)
        context.abort(grpc.StatusCode.INTERNAL, "released")


@pytest.fixture
def unsteady() -> Iterator[tuple[str, Unsteady]]:
    servicer = Unsteady(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(4))
    webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    servicer.released.set()
    server.stop(None)


def test_both_clients_retry_while_the_service_is_unavailable(unsteady: tuple[str, Unsteady]) -> None:
    target, servicer = unsteady
    with Client(target) as client:
        assert client.webhooks.GetWebhook(GetWebhookRequest(name="a")).name == "a"
    assert servicer.calls == 3

    servicer.calls = 0

    async def asynchronously() -> str:
        async with AsyncClient(target) as client:
            found = await client.webhooks.GetWebhook(GetWebhookRequest(name="b"))
            return found.name

    assert asyncio.run(asynchronously()) == "b"
    assert servicer.calls == 3

    servicer.calls = 0
    with Client(target, attempts=1) as once, pytest.raises(grpc.RpcError) as caught:
        once.webhooks.GetWebhook(GetWebhookRequest(name="c"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 1


def test_a_retried_create_carries_one_request_id(unsteady: tuple[str, Unsteady]) -> None:
    """A create answered UNAVAILABLE may have happened; its retry must be recognised as the same request."""
    target, servicer = unsteady
    with Client(target) as client:
        client.webhooks.CreateWebhook(CreateWebhookRequest(parent="organizations/a"))
        client.webhooks.CreateWebhook(CreateWebhookRequest(parent="organizations/a", request_id="mine"))
    first, retried, own, own_retried = servicer.request_ids
    assert first and first == retried
    assert own == own_retried == "mine"


def test_both_clients_give_up_at_their_default_deadline(unsteady: tuple[str, Unsteady]) -> None:
    target, _ = unsteady
    with Client(target, timeout=0.5) as client, pytest.raises(grpc.RpcError) as caught:
        client.webhooks.ListWebhooks(ListWebhooksRequest(parent="organizations/a"))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    async def asynchronously() -> grpc.StatusCode:
        async with AsyncClient(target, timeout=0.5) as client:
            try:
                await client.webhooks.ListWebhooks(ListWebhooksRequest(parent="organizations/a"))
            except grpc.aio.AioRpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    assert asyncio.run(asynchronously()) == grpc.StatusCode.DEADLINE_EXCEEDED
