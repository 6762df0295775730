"""Who is calling: the token a front door was handed, checked cheaply and cached briefly."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from webhook_service.domain import access
from webhook_service.domain.access import Principal
from webhook_service.domain.errors import Reason, Unauthenticated

# How long a looked-up token is trusted before it is looked up again (so revocation takes at most this long).
TOKEN_CACHE_SECONDS = 1.0
# Tokens remembered, found and unknown ones apart, so a flood of made-up tokens cannot push out real ones.
TOKEN_CACHE_ENTRIES = 10_000
# What access.new_token makes: the prefix and 32 random bytes in unpadded URL-safe base64.
TOKEN_SHAPE = re.compile(re.escape(access.TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")

Lookup = Callable[[str], Awaitable[Principal | None]]
V = TypeVar("V")


class _Recent(Generic[V]):
    """Values remembered for `seconds`; when full, the oldest entry makes room (not the whole cache)."""

    def __init__(self, seconds: float, entries: int) -> None:
        self._seconds = seconds
        self._entries = entries
        self._values: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str, moment: float) -> V | None:
        held = self._values.get(key)
        return held[1] if held is not None and moment - held[0] < self._seconds else None

    def put(self, key: str, value: V, moment: float) -> None:
        self._values[key] = (moment, value)
        self._values.move_to_end(key)
        if len(self._values) > self._entries:
            self._values.popitem(last=False)


class Authenticator:
    """Finds the principal behind a token. A token not shaped like the ones this service makes is refused
    without a query; a well-formed one is looked up once however many calls bring it at the same time,
    and the answer, found or not, is kept a short while."""

    def __init__(self, lookup: Lookup, cache_seconds: float = TOKEN_CACHE_SECONDS) -> None:
        self._lookup = lookup
        self._found: _Recent[Principal] = _Recent(cache_seconds, TOKEN_CACHE_ENTRIES)
        self._unknown: _Recent[bool] = _Recent(cache_seconds, TOKEN_CACHE_ENTRIES)
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}

    async def principal(self, token: str) -> Principal:
        if TOKEN_SHAPE.fullmatch(token) is None:
            raise Unauthenticated(
                f"not an API token: tokens are {access.TOKEN_PREFIX} and 43 more characters", Reason.TOKEN_MALFORMED
            )
        moment = time.monotonic()
        found = self._found.get(token, moment)
        if found is None and self._unknown.get(token, moment) is None:
            pending = self._pending.get(token)
            if pending is None:
                pending = self._pending[token] = asyncio.ensure_future(self._remembered(token, moment))
                pending.add_done_callback(functools.partial(self._settled, token))
            # Shielded: a caller that gives up does not cancel the lookup the others wait on.
            found = await asyncio.shield(pending)
        if found is None:
            raise Unauthenticated("unknown or revoked token", Reason.TOKEN_INVALID)
        return found

    async def _remembered(self, token: str, moment: float) -> Principal | None:
        found = await self._lookup(token)
        if found is None:
            self._unknown.put(token, True, moment)
        else:
            self._found.put(token, found, moment)
        return found

    def _settled(self, token: str, lookup: asyncio.Future[Principal | None]) -> None:
        del self._pending[token]
        if not lookup.cancelled():
            # Retrieved here, so a failure whose callers all gave up is not reported as never retrieved.
            lookup.exception()
