"""Every service call through the application's gate: admission, the caller behind its token, its role
and its rate limit. Health and reflection stay open: load balancers and grpcurl's `list` need them, and
they are never counted nor refused."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from webhook_service.api.grpc.handlers import Context, service_operation, wrap
from webhook_service.api.grpc.observe import note_caller
from webhook_service.app.calls import Calls
from webhook_service.domain.access import Principal

_caller: contextvars.ContextVar[Principal] = contextvars.ContextVar("caller")


def caller() -> Principal:
    """Who makes the call being served; set by CallInterceptor for every service method."""
    return _caller.get()


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, calls: Calls) -> None:
        self._calls = calls

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        operation = service_operation(handler_call_details.method)
        if operation is None:
            return handler
        metadata = {key: value for key, value in handler_call_details.invocation_metadata or ()}
        value = metadata.get("authorization")
        authorization = value.decode() if isinstance(value, bytes) else value

        @contextlib.asynccontextmanager
        async def admitted(context: Context) -> AsyncIterator[None]:
            async with self._calls.call(authorization, operation, context.peer()) as principal:
                note_caller(principal)
                bound = _caller.set(principal)
                try:
                    yield
                finally:
                    _caller.reset(bound)

        return wrap(handler, admitted)
