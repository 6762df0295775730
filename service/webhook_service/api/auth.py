"""Authentication, per-RPC role checks and per-token rate limits, in front of every service RPC."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from webhook_service.api.handlers import Context, Handler, wrap_unary
from webhook_service.domain import access
from webhook_service.domain.access import Principal
from webhook_service.domain.errors import ResourceExhausted, Unauthenticated
from webhook_service.domain.ratelimit import RateLimiter

# Health and reflection stay open: load balancers and grpcurl's `list` need them.
PROTECTED_PREFIX = "/webhooks.v1."
# How long a verified token is trusted before it is looked up again (so revocation takes at most this long).
TOKEN_CACHE_SECONDS = 1.0

Lookup = Callable[[str], Awaitable[Principal | None]]


class Authenticator:
    """Finds the principal behind a token, with a short cache so each call is not a query."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, token: str) -> Principal:
        moment = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and moment - cached[0] < TOKEN_CACHE_SECONDS:
            found = cached[1]
        else:
            found = await self._lookup(token)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (moment, found)
        if found is None:
            raise Unauthenticated("unknown or revoked token")
        return found


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Without an authenticator every call acts as an admin (--insecure-no-auth)."""

    def __init__(self, authenticator: Authenticator | None, rate_limit: float) -> None:
        self._authenticator = authenticator
        self._limiter = RateLimiter(rate_limit) if rate_limit > 0 else None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if not handler_call_details.method.startswith(PROTECTED_PREFIX):
            return handler
        method = handler_call_details.method.rsplit("/", 1)[1]
        metadata = {key: value for key, value in handler_call_details.invocation_metadata or ()}

        async def authorized(inner: Handler, request: Any, context: Context) -> Any:
            principal = await self._principal(metadata.get("authorization"))
            access.check_method(principal, method)
            self._limit(principal)
            bound = access.bind(principal)
            try:
                return await inner(request, context)
            finally:
                access.unbind(bound)

        return wrap_unary(handler, authorized)

    async def _principal(self, authorization: str | bytes | None) -> Principal:
        if self._authenticator is None:
            return access.UNAUTHENTICATED_ADMIN
        value = authorization.decode() if isinstance(authorization, bytes) else authorization
        return await self._authenticator.principal(access.token_from_metadata(value))

    def _limit(self, principal: Principal) -> None:
        if self._limiter is None:
            return
        wait = self._limiter.wait_needed(principal.token_id, time.monotonic())
        if wait > 0:
            raise ResourceExhausted(
                f"token {principal.token_id} is over its rate limit of {self._limiter.rate:g} requests/s; "
                f"retry in {wait:.3f}s",
                retry_after=wait,
            )
