"""What every call goes through first, whichever door it came in by: a place among the calls in progress,
the caller behind its token, and the caller's rate limit."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from webhook_service.app.authentication import Authenticator
from webhook_service.domain import access
from webhook_service.domain.access import Principal
from webhook_service.domain.admission import Gate
from webhook_service.domain.errors import Reason, ResourceExhausted, Unauthenticated, Unavailable
from webhook_service.domain.failures import FailureLimit
from webhook_service.domain.ratelimit import RateLimiter


class Calls:
    """Admission before authentication, so a refusal under overload costs no token lookup. Without an
    authenticator every call acts as an admin (--insecure-no-auth)."""

    def __init__(self, authenticator: Authenticator | None, rate_limit: float, max_calls: int) -> None:
        self._authenticator = authenticator
        self._limiter = RateLimiter(rate_limit) if rate_limit > 0 else None
        self._gate = Gate(max_calls, "the server")
        self._failures = FailureLimit()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def close(self) -> None:
        """Every call from now on is refused with Unavailable, at once, so its caller can go to another
        server; the calls in progress carry on."""
        self._closed = True

    async def finished(self) -> None:
        """Returns once no call is in progress."""
        await self._idle.wait()

    def call(self, authorization: str | None, operation: str, peer: str = "") -> Call:
        """`async with calls.call(...) as caller:` the caller behind an `authorization` value (`Bearer <token>`
        or Pulumi's `token <token>`), for the duration of one call to `operation`, which its role must allow
        before its request is even read. `peer` (the connection it came by) is refused for a while after too
        many failed authentications."""
        return Call(self, authorization, operation, peer)

    async def _enter(self, authorization: str | None, operation: str, peer: str) -> Principal:
        if self._closed:
            raise Unavailable("the server is shutting down; retry on another server, or once this one is back")
        self._gate.take()
        self._idle.clear()
        try:
            caller = await self._principal(authorization, peer)
            access.check_operation(caller, operation)
            self._limit(caller)
        except BaseException:
            self._leave()
            raise
        return caller

    def _leave(self) -> None:
        # The gate still counts this call until it is released.
        if self._gate.held == 1:
            self._idle.set()
        self._gate.release()

    async def _principal(self, authorization: str | None, peer: str) -> Principal:
        if self._authenticator is None:
            return access.UNAUTHENTICATED_ADMIN
        moment = time.monotonic()
        wait = self._failures.wait(peer, moment)
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed authentications from this connection; retry in {wait:.3f}s",
                retry_after=wait,
                reason=Reason.TOO_MANY_FAILED_AUTHENTICATIONS,
            )
        try:
            return await self._authenticator.principal(access.token_from_metadata(authorization))
        except Unauthenticated:
            self._failures.failed(peer, moment)
            raise

    def _limit(self, caller: Principal) -> None:
        if self._limiter is None:
            return
        wait = self._limiter.wait_needed(caller.token_id, time.monotonic())
        if wait > 0:
            raise ResourceExhausted(
                f"token {caller.token_id} is over its rate limit of {self._limiter.rate:g} requests/s; "
                f"retry in {wait:.3f}s",
                retry_after=wait,
                reason=Reason.RATE_LIMITED,
            )


class Call:
    """One call in progress, from `Calls.call`. A plain class rather than a generator context manager: every
    call of every door enters one, and a generator costs several times as much to make and to leave."""

    __slots__ = ("_authorization", "_calls", "_operation", "_peer")

    def __init__(self, calls: Calls, authorization: str | None, operation: str, peer: str) -> None:
        self._calls = calls
        self._authorization = authorization
        self._operation = operation
        self._peer = peer

    async def __aenter__(self) -> Principal:
        return await self._calls._enter(self._authorization, self._operation, self._peer)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._calls._leave()
