"""A cap on the service calls in progress at once, in front of authentication.

An interceptor rather than grpc.aio.server(maximum_concurrent_rpcs=...): that option counts health
checks and reflection too, so an overloaded server would fail its health checks and be taken out of
rotation, moving the overload to its peers; and its refusals carry no retry hint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from webhook_service.api.auth import PROTECTED_PREFIX
from webhook_service.api.handlers import Context, Handler, wrap_unary
from webhook_service.domain.admission import Gate


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Past `limit` calls in progress, the next is RESOURCE_EXHAUSTED at once, before any token lookup;
    health and reflection are never counted nor refused."""

    def __init__(self, limit: int) -> None:
        self._gate = Gate(limit, "the server")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if not handler_call_details.method.startswith(PROTECTED_PREFIX):
            return handler

        async def admitted(inner: Handler, request: Any, context: Context) -> Any:
            with self._gate.enter():
                return await inner(request, context)

        return wrap_unary(handler, admitted)
