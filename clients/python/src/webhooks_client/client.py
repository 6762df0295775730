"""One channel, both services' stubs, the caller's token on every call, and a gRPC service config that gives
every call a default deadline and retries it while the service is UNAVAILABLE."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeAlias

import grpc

from webhooks.v1 import (
    delivery_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)

# A call that sets no timeout of its own gives up after this many seconds (gRPC takes the shorter of the
# two when it does); PingWebhook and RedeliverWebhookDelivery wait for a receiver, up to the service's
# --delivery-timeout (15 s by default).
DEFAULT_TIMEOUT = 30.0
# Tries of a call answered UNAVAILABLE (the service cannot reach its database, or is restarting), the first
# included; gRPC allows at most 5. Creates and publishes carry a request_id, so a retry cannot act twice.
DEFAULT_ATTEMPTS = 4

SERVICES = (
    webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)
State: TypeAlias = delivery_pb2.WebhookDeliveryState.ValueType
# Streams that last until the caller cancels them or the server shuts down: no default deadline.
ENDLESS = ((SERVICES[0], "WatchWebhookDeliveries"),)


def service_config(timeout: float = DEFAULT_TIMEOUT, attempts: int = DEFAULT_ATTEMPTS) -> str:
    """The gRPC service config both clients use, as JSON (https://github.com/grpc/grpc/blob/master/doc/service_config.md).
    A stream is retried only until its first answer arrives."""
    calls: dict[str, Any] = {"name": [{"service": service} for service in SERVICES], "timeout": f"{timeout:.3f}s"}
    streams: dict[str, Any] = {"name": [{"service": service, "method": method} for service, method in ENDLESS]}
    if attempts > 1:
        for method in (calls, streams):
            method["retryPolicy"] = {
                "maxAttempts": attempts,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            }
    return json.dumps({"methodConfig": [calls, streams]})


def _options(options: Sequence[tuple[str, Any]] | None, timeout: float, attempts: int) -> list[tuple[str, Any]]:
    return [("grpc.service_config", service_config(timeout, attempts)), ("grpc.enable_retries", 1), *(options or ())]


# Calls that a retry could make act twice; without a request_id of the caller's, the client gives them one,
# which every attempt of the call carries, so the service answers a retry with the first attempt's result.
KEYED_METHODS = frozenset({"/webhooks.v1.WebhookService/CreateWebhook", "/webhooks.v1.EventService/PublishEvent"})


def _prepared(details: Any, request: Any, token: str | None) -> tuple[Any, Any]:
    """The call's details with the token, and its request with a request_id where it needs one."""
    if token is not None:
        details = details._replace(metadata=[*(details.metadata or ()), ("authorization", f"Bearer {token}")])
    method = details.method.decode() if isinstance(details.method, bytes) else details.method
    if method in KEYED_METHODS and not request.request_id:
        keyed = type(request)()
        keyed.CopyFrom(request)
        keyed.request_id = uuid.uuid4().hex
        request = keyed
    return details, request


class Client:
    """`webhooks` and `events` are the generated stubs, sharing one channel.

    Pass `credentials` (e.g. `grpc.ssl_channel_credentials(...)`) for TLS; without them the channel is
    plaintext. A `token` goes with every call as `authorization: Bearer <token>`. A call without a
    `timeout` of its own gets `timeout` seconds; one answered UNAVAILABLE is tried up to `attempts` times.
    CreateWebhook and PublishEvent without a `request_id` get one made up, the same for every attempt.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: list[tuple[str, Any]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        settings = _options(options, timeout, attempts)
        if credentials is not None:
            self.channel = grpc.secure_channel(target, credentials, options=settings)
        else:
            self.channel = grpc.insecure_channel(target, options=settings)
        self.channel = grpc.intercept_channel(self.channel, _Interceptor(token))
        self.webhooks = webhook_service_pb2_grpc.WebhookServiceStub(self.channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self.channel)

    def watch_webhook_deliveries(
        self, parent: str, states: Iterable[State] = (), *, timeout: float | None = None
    ) -> grpc._CallIterator[webhook_service_pb2.WatchWebhookDeliveriesResponse]:
        """Every delivery attempt as it finishes, for a webhook, or every webhook of an organization (its stacks'
        included) or a stack, optionally only those that leave their delivery in one of `states`
        (WebhookDeliveryState values). Iterate the answer for them; it runs until `timeout`, `cancel()` or
        the server's shutdown. `initial_metadata()` returns once the watch is in place."""
        request = webhook_service_pb2.WatchWebhookDeliveriesRequest(parent=parent, states=list(states))
        return self.webhooks.WatchWebhookDeliveries(request, timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """The same for asyncio (`grpc.aio`): every stub method returns an awaitable.

    async with AsyncClient("127.0.0.1:50051", token=token) as client:
        hook = await client.webhooks.GetWebhook(GetWebhookRequest(name=name))
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: list[tuple[str, Any]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        settings = _options(options, timeout, attempts)
        interceptors: list[grpc.aio.ClientInterceptor] = [_AsyncInterceptor(token), _AsyncStreamInterceptor(token)]
        if credentials is not None:
            self.channel = grpc.aio.secure_channel(target, credentials, options=settings, interceptors=interceptors)
        else:
            self.channel = grpc.aio.insecure_channel(target, options=settings, interceptors=interceptors)
        self.webhooks = webhook_service_pb2_grpc.WebhookServiceStub(self.channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self.channel)

    def watch_webhook_deliveries(
        self, parent: str, states: Iterable[State] = (), *, timeout: float | None = None
    ) -> grpc.aio.UnaryStreamCall[
        webhook_service_pb2.WatchWebhookDeliveriesRequest, webhook_service_pb2.WatchWebhookDeliveriesResponse
    ]:
        """As Client.watch_webhook_deliveries: iterate the answer with `async for`; `await
        call.initial_metadata()` returns once the watch is in place."""
        request = webhook_service_pb2.WatchWebhookDeliveriesRequest(parent=parent, states=list(states))
        return self.webhooks.WatchWebhookDeliveries(request, timeout=timeout)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()


class _Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """The token as metadata rather than call credentials, which gRPC allows on TLS channels only."""

    def __init__(self, token: str | None) -> None:
        self._token = token

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(*_prepared(client_call_details, request, self._token))

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(*_prepared(client_call_details, request, self._token))


class _AsyncInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str | None) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(*_prepared(client_call_details, request, self._token))


class _AsyncStreamInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str | None) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(*_prepared(client_call_details, request, self._token))
