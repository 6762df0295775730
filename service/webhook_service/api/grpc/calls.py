"""Every service call through the application's gate: admission, the caller behind its token, its role
and its rate limit. Health and reflection stay open: load balancers and grpcurl's `list` need them, and
they are never counted nor refused."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import grpc

from webhook_service.api.grpc.handlers import Context, Continuation, PerMethod, service_operation, wrap
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
        self._handlers = PerMethod(self._admitted)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return await self._handlers.handler(continuation, handler_call_details)

    def _admitted(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        operation = service_operation(method)
        if operation is None:
            return handler
        calls = self._calls

        @contextlib.asynccontextmanager
        async def admitted(context: Context) -> AsyncIterator[None]:
            async with calls.call(_authorization(context), operation, context.peer()) as principal:
                note_caller(principal)
                bound = _caller.set(principal)
                try:
                    yield
                finally:
                    _caller.reset(bound)

        return wrap(handler, admitted)


def _authorization(context: Context) -> str | None:
    """The call's `authorization` metadata; the last one when it came several times."""
    found = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            found = value.decode() if isinstance(value, bytes) else str(value)
    return found
