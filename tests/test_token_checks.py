"""Tokens not shaped like the service's are refused without a query; unknown ones are remembered."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import grpc
import pytest

from tests.helpers import WS
from tests.support.running import RunningServer
from tests.support.stall import stalled_store
from webhook_service.app.authentication import TOKEN_CACHE_ENTRIES, TOKEN_SHAPE, Authenticator
from webhook_service.domain.access import Principal, Role, new_token
from webhook_service.domain.errors import Unauthenticated


def unknown_token() -> str:
    """Shaped like a real token, so the server must look it up."""
    return "whk_" + secrets.token_urlsafe(32)


MALFORMED = [
    "not-a-token",
    "whk_short",
    "0123456789ab",  # a token ID, not the token
    "whk_" + "!" * 43,
    unknown_token() + "x",
    unknown_token().removeprefix("whk_"),
]


def test_tokens_the_service_makes_have_the_shape_it_checks() -> None:
    assert all(TOKEN_SHAPE.fullmatch(new_token()[1]) for _ in range(200))


def test_malformed_tokens_are_refused_while_the_database_is_locked(
    start_server: Callable[..., RunningServer], org: str
) -> None:
    """The store is stalled, so any lookup would hang: a malformed token is answered, so none happened."""
    server = start_server(database_pool_size=1)
    with stalled_store(server, org) as blocked:
        for token in MALFORMED:
            with server.client(token) as client, pytest.raises(grpc.RpcError) as caught:
                client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, token
            assert "not an API token" in str(caught.value.details())
        assert not blocked.done()


class CountedLookup:
    """The token store, kept in a dict: counts the lookups the authenticator makes."""

    def __init__(self, known: dict[str, Principal]) -> None:
        self.known = known
        self.lookups = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, token: str) -> Principal | None:
        self.lookups += 1
        await self.release.wait()
        return self.known.get(token)


async def refused(authenticator: Authenticator, token: str) -> bool:
    try:
        await authenticator.principal(token)
    except Unauthenticated:
        return True
    return False


def test_unknown_tokens_are_remembered_and_the_oldest_forgotten_first() -> None:
    admin = Principal("t1", Role.ADMIN, None)
    real = unknown_token()
    lookup = CountedLookup({real: admin})
    authenticator = Authenticator(lookup, cache_seconds=3600)
    flood = [unknown_token() for _ in range(TOKEN_CACHE_ENTRIES + 50)]

    async def scenario() -> None:
        assert await authenticator.principal(real) == admin
        for token in flood:
            assert await refused(authenticator, token)
        assert lookup.lookups == 1 + len(flood)
        # The latest unknown tokens are still remembered, and the flood did not push out the real one.
        for token in flood[-1000:]:
            assert await refused(authenticator, token)
        assert await authenticator.principal(real) == admin
        assert lookup.lookups == 1 + len(flood)
        # Only the oldest made room.
        assert await refused(authenticator, flood[0])
        assert lookup.lookups == 2 + len(flood)

    asyncio.run(scenario())


def test_calls_bringing_one_token_at_once_share_one_lookup() -> None:
    admin = Principal("t1", Role.ADMIN, None)
    real, unknown = unknown_token(), unknown_token()
    lookup = CountedLookup({real: admin})
    authenticator = Authenticator(lookup)

    async def scenario() -> None:
        lookup.release.clear()
        found = asyncio.gather(*(authenticator.principal(real) for _ in range(50)))
        missing = asyncio.gather(*(refused(authenticator, unknown) for _ in range(50)))
        await asyncio.sleep(0.1)
        lookup.release.set()
        assert await found == [admin] * 50
        assert await missing == [True] * 50
        assert lookup.lookups == 2

    asyncio.run(scenario())
