"""One channel, both services' stubs, and the caller's token on every call."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import grpc

from webhooks.v1 import event_service_pb2_grpc, webhook_service_pb2_grpc


class Client:
    """`webhooks` and `events` are the generated stubs, sharing one channel.

    Pass `credentials` (e.g. `grpc.ssl_channel_credentials(...)`) for TLS;
    without them the channel is plaintext. A `token` goes with every call as
    `authorization: Bearer <token>`.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        if credentials is not None:
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        if token is not None:
            self.channel = grpc.intercept_channel(self.channel, _TokenInterceptor(token))
        self.webhooks = webhook_service_pb2_grpc.WebhookServiceStub(self.channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor):
    """An interceptor rather than call credentials, which gRPC allows on TLS channels only."""

    def __init__(self, token: str) -> None:
        self._token = token

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        metadata = [*(client_call_details.metadata or ()), ("authorization", f"Bearer {self._token}")]
        return continuation(client_call_details._replace(metadata=metadata), request)
