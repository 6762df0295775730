"""Every service call counted and timed with the status it ended with (api/observe.py). Outermost of the
interceptors, so refusals by admission and authentication, and requests that do not decode, count too;
health and reflection do not."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from webhook_service.api.grpc.handlers import Context, Continuation, PerMethod, service_operation, wrap
from webhook_service.api.observe import record_call
from webhook_service.domain.access import Principal
from webhook_service.metrics import Metrics


@dataclass
class _Call:
    token_id: str = ""


_call: contextvars.ContextVar[_Call] = contextvars.ContextVar("observed_call")


def note_caller(caller: Principal) -> None:
    """Tells the call being observed whose token it carries, once the token is checked (CallInterceptor)."""
    observed = _call.get(None)
    if observed is not None:
        observed.token_id = caller.token_id


class ObserveInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._handlers = PerMethod(self._observed)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return await self._handlers.handler(continuation, handler_call_details)

    def _observed(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        operation = service_operation(method)
        if operation is None:
            return handler
        return wrap(handler, functools.partial(_Observed, self._metrics, operation))


class _Observed:
    """One call counted and timed, with the status it ended with. A plain class rather than a generator
    context manager: it runs around every call, and a generator costs several times as much."""

    __slots__ = ("_bound", "_call", "_context", "_metrics", "_operation", "_started")

    def __init__(self, metrics: Metrics, operation: str, context: Context) -> None:
        self._metrics = metrics
        self._operation = operation
        self._context = context

    async def __aenter__(self) -> None:
        self._call = _Call()
        self._bound = _call.set(self._call)
        self._started = time.perf_counter()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None or issubclass(kind, grpc.aio.AbortError):
            code = _name(self._context.code())
        elif issubclass(kind, asyncio.CancelledError):
            # The caller went away or its deadline passed.
            code = "CANCELLED"
        else:
            # What gRPC answers for an exception that no interceptor turned into a status.
            code = "UNKNOWN"
        _call.reset(self._bound)
        record_call(self._metrics, self._operation, code, time.perf_counter() - self._started, self._call.token_id)


def _name(code: grpc.StatusCode | None) -> str:
    """A status code's name; a handler that returned without setting one answered OK."""
    return "OK" if code is None else code.name
