"""Wrapping unary handlers, for interceptors that act around each call in its own task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Context], Awaitable[Any]]
Around = Callable[[Handler, Any, Context], Awaitable[Any]]

# The service's own methods; health and reflection are not among them.
SERVICE_PREFIX = "/webhooks.v1."


def service_operation(method: str) -> str | None:
    """The operation a full gRPC method name calls (CreateWebhook), or None for health and reflection."""
    return method.rsplit("/", 1)[1] if method.startswith(SERVICE_PREFIX) else None


def wrap_unary(
    handler: grpc.RpcMethodHandler[Any, Any] | None, around: Around
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """`handler` with `around(inner, request, context)` called in its place; other kinds pass through."""
    if handler is None or handler.unary_unary is None:
        return handler
    inner = cast(Handler, handler.unary_unary)

    async def wrapped(request: Any, context: Context) -> Any:
        return await around(inner, request, context)

    return grpc.unary_unary_rpc_method_handler(
        wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )
