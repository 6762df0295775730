"""Every service call through the application's gate: admission, the caller behind its token, its role
and its rate limit. Health and reflection stay open: load balancers and grpcurl's `list` need them, and
they are never counted nor refused."""

from __future__ import annotations

import contextvars
import functools
from types import TracebackType
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
        return wrap(handler, functools.partial(_Admitted, self._calls, operation))


class _Admitted:
    """Around one call: the application's gate, and the caller it found, told to the call's observer and kept
    for `caller()`. A plain class rather than a generator context manager: it runs around every call, and a
    generator costs several times as much."""

    __slots__ = ("_bound", "_call")

    def __init__(self, calls: Calls, operation: str, context: Context) -> None:
        self._call = calls.call(_authorization(context), operation, context.peer())

    async def __aenter__(self) -> None:
        principal = await self._call.__aenter__()
        note_caller(principal)
        self._bound = _caller.set(principal)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        _caller.reset(self._bound)
        await self._call.__aexit__(kind, error, traceback)


def _authorization(context: Context) -> str | None:
    """The call's `authorization` metadata; the last one when it came several times."""
    found = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            found = value.decode() if isinstance(value, bytes) else str(value)
    return found
