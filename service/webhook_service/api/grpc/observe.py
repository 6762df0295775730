"""Every service call counted and timed with the status it ended with (api/observe.py). Outermost of the
interceptors, so refusals by admission and authentication, and requests that do not decode, count too;
health and reflection do not."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
        metrics = self._metrics

        @contextlib.asynccontextmanager
        async def observed(context: Context) -> AsyncIterator[None]:
            call = _Call()
            bound = _call.set(call)
            started = time.perf_counter()
            # What gRPC answers for an exception that no interceptor turned into a status.
            code = "UNKNOWN"
            try:
                yield
                code = _name(context.code())
            except grpc.aio.AbortError:
                code = _name(context.code())
                raise
            except asyncio.CancelledError:
                # The caller went away or its deadline passed.
                code = "CANCELLED"
                raise
            finally:
                _call.reset(bound)
                record_call(metrics, operation, code, time.perf_counter() - started, call.token_id)

        return wrap(handler, observed)


def _name(code: grpc.StatusCode | None) -> str:
    """A status code's name; a handler that returned without setting one answered OK."""
    return "OK" if code is None else code.name
