"""Wrapping handlers, unary and server-streaming alike, for interceptors that act around each call in its own
task; each method's wrapped handler is made once and handed out again for every call."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Context], Awaitable[Any]]
StreamHandler = Callable[[Any, Context], AsyncIterator[Any]]
# What an interceptor does around one call: entered before the handler runs, left once it has answered or its
# stream has ended, with whatever it raised.
Around = Callable[[Context], AbstractAsyncContextManager[None]]

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]
# The service's own methods; health and reflection are not among them.
SERVICE_PREFIX = "/webhooks.v1."


def service_operation(method: str) -> str | None:
    """The operation a full gRPC method name calls (CreateWebhook), or None for health and reflection."""
    return method.rsplit("/", 1)[1] if method.startswith(SERVICE_PREFIX) else None


def wrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    around: Around,
    decode: Callable[[Callable[[bytes], Any] | None, bytes], Any] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` run inside `around(context)`, for a unary call or a server stream; client streams (reflection)
    pass through.

    With `decode`, the new handler takes the request's bytes and `decode(deserializer, raw)` makes the request
    inside `around`, so `around` sees a request that does not decode fail like any other call.
    """
    deserializer = handler.request_deserializer

    def request(raw: Any) -> Any:
        return raw if decode is None else decode(deserializer, raw)

    reads = None if decode is not None else deserializer
    if handler.unary_unary is not None:
        inner = cast(Handler, handler.unary_unary)

        async def unary(raw: Any, context: Context) -> Any:
            async with around(context):
                return await inner(request(raw), context)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=reads, response_serializer=handler.response_serializer
        )
    if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
        streamed = cast(StreamHandler, handler.unary_stream)

        async def stream(raw: Any, context: Context) -> AsyncIterator[Any]:
            async with around(context):
                async for response in streamed(request(raw), context):
                    yield response

        return grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=reads, response_serializer=handler.response_serializer
        )
    if handler.unary_stream is not None:
        # A stream that writes its responses itself (context.write), as gRPC's health Watch does.
        writes = cast(Handler, handler.unary_stream)

        async def written(raw: Any, context: Context) -> None:
            async with around(context):
                await writes(request(raw), context)

        return grpc.unary_stream_rpc_method_handler(
            written, request_deserializer=reads, response_serializer=handler.response_serializer
        )
    return handler


class PerMethod:
    """The handlers an interceptor wraps, made once per method by `make(method, handler)`: what it does around
    a call depends on the method alone (each call's own details come from its context), so the handler made
    for the first call serves the next ones, without the continuation, the closures or the wrapping again."""

    def __init__(self, make: Callable[[str, grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._make = make
        self._made: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def handler(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        made = self._made.get(details.method)
        if made is None:
            handler = await continuation(details)
            # An unknown method is not kept: callers choose those names, without bound.
            if handler is None:
                return None
            made = self._made[details.method] = self._make(details.method, handler)
        return made
