"""Overload is refused at once with RESOURCE_EXHAUSTED, never left to expire, and health stays open."""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.fernet import Fernet
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from tests.helpers import WS, make_webhook
from tests.support.databases import Databases
from tests.support.running import RunningServer
from tests.support.stall import connect, stalled_store, write_lock
from tests.support.waiting import eventually
from webhook_service.cli import build_parser, settings_from
from webhook_service.domain.access import Role
from webhook_service.domain.errors import ResourceExhausted
from webhook_service.store import tokens
from webhook_service.store.database import API_CALLS_PER_CONNECTION, Executor, open_database
from webhook_service.store.secrets import SecretBox
from webhooks_client import Client

OK = grpc.StatusCode.OK
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
SERVING = health_pb2.HealthCheckResponse.SERVING


class SilentReceiver:
    """Takes HTTP connections and never answers, so a ping to it holds its call until `release`."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/silent"
        self._held: list[socket.socket] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._changed:
                self._held.append(connection)
                self._changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self._held) >= count, 30), f"{len(self._held)} of {count}"

    def release(self) -> None:
        """Closes every connection: the requests fail at once."""
        self._listener.close()
        with self._changed:
            for connection in self._held:
                connection.close()


def code_of(future: grpc.Future) -> grpc.StatusCode:
    error = future.exception()
    return OK if error is None else error.code()


def retry_delay(future: grpc.Future) -> float:
    status = rpc_status.from_call(future.exception())
    assert status is not None
    [detail] = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    hint = error_details_pb2.RetryInfo()
    detail.Unpack(hint)
    return float(hint.retry_delay.ToTimedelta().total_seconds())


@pytest.fixture
def connected(start_server: Callable[..., RunningServer]) -> Iterator[list[Client]]:
    """Four connections to a server capped at 8 calls, with no rate limit to refuse calls as well."""
    server = start_server(max_concurrent_rpcs=8, rate_limit=0)
    connected = [server.client() for _ in range(4)]
    yield connected
    for client in connected:
        client.close()


def test_a_burst_far_past_the_cap_gets_answers_or_refusals_and_health_stays_serving(
    connected: list[Client], org: str
) -> None:
    hook = make_webhook(connected[0], f"organizations/{org}", "https://example.com/burst")
    health = health_pb2_grpc.HealthStub(connected[0].channel)
    calls, checks = [], []
    for number in range(3000):
        client = connected[number % len(connected)]
        calls.append(client.webhooks.GetWebhook.future(WS.GetWebhookRequest(name=hook.name), timeout=120))
        if number % 150 == 0:
            checks.append(health.Check.future(health_pb2.HealthCheckRequest(), timeout=120))

    codes = collections.Counter(code_of(call) for call in calls)
    assert set(codes) <= {OK, EXHAUSTED}, codes
    assert codes[EXHAUSTED] > 0 and codes[OK] > 0, codes
    assert retry_delay(next(call for call in calls if code_of(call) == EXHAUSTED)) > 0
    assert [check.result().status for check in checks] == [SERVING] * len(checks)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    assert connected[1].webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name), timeout=10).name == hook.name


def test_refusals_come_while_every_slot_is_still_held(start_server: Callable[..., RunningServer], org: str) -> None:
    """Four pings to a receiver that never answers hold the four slots; everything else is refused
    before any of them ends, so no refusal waited for a slot or a deadline."""
    server = start_server(max_concurrent_rpcs=4, delivery_timeout=120, rate_limit=0)
    silent = SilentReceiver()
    with server.client() as client:
        hook = make_webhook(client, f"organizations/{org}", silent.url)
        pings = [
            client.webhooks.PingWebhook.future(WS.PingWebhookRequest(name=hook.name), timeout=120) for _ in range(4)
        ]
        silent.wait_for(4)
        try:
            burst = [
                client.webhooks.GetWebhook.future(WS.GetWebhookRequest(name=hook.name), timeout=120) for _ in range(500)
            ]
            assert collections.Counter(code_of(call) for call in burst) == {EXHAUSTED: 500}
            assert "the server is busy" in burst[0].exception().details()
            health = health_pb2_grpc.HealthStub(client.channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
            assert not any(ping.done() for ping in pings)
        finally:
            silent.release()
        assert [code_of(ping) for ping in pings] == [OK] * 4
        assert client.webhooks.GetWebhook(WS.GetWebhookRequest(name=hook.name), timeout=10).name == hook.name


def test_calls_past_the_store_bound_are_refused_while_the_database_is_locked(
    start_server: Callable[..., RunningServer], org: str
) -> None:
    """One query thread, stalled behind another client's lock: API calls queue up to the bound and the
    rest are refused at once; when the lock goes, every queued call is answered. (Without authentication,
    so no token lookup, which concurrent calls share, stands between a call and the store.)"""
    server = start_server(max_concurrent_rpcs=1000, database_pool_size=1, admin_token_file=None)
    with connect(server) as client:
        hook = make_webhook(client, f"organizations/{org}", "https://example.com/stalled")
        request = WS.GetWebhookRequest(name=hook.name)
        with stalled_store(server, org) as blocked:
            burst = [client.webhooks.GetWebhook.future(request, timeout=60) for _ in range(300)]
            queued = API_CALLS_PER_CONNECTION
            eventually(
                lambda: sum(call.done() for call in burst) >= 300 - queued, 8, "refusals while stalled", every=0.02
            )
            refused = [call for call in burst if call.done()]
            assert {code_of(call) for call in refused} == {EXHAUSTED}
            assert "the database is busy" in refused[0].exception().details()
            assert retry_delay(refused[0]) > 0
            assert not blocked.done()
        assert blocked.result().display_name == "blocked"
        codes = collections.Counter(code_of(call) for call in burst)
        assert set(codes) == {OK, EXHAUSTED} and codes[OK] <= queued, codes
        assert client.webhooks.GetWebhook(request, timeout=10).name == hook.name


def test_the_store_bound_refuses_api_calls_only(tmp_path: Path, databases: Databases) -> None:
    """With the one query thread stalled by a dispatcher-style call, exactly the bound of API calls wait,
    the next is refused with a retry hint, and a dispatcher call is still taken; all finish after."""
    url = databases.new(tmp_path)
    store = Executor(open_database(url), 1, SecretBox(Fernet.generate_key()))

    async def scenario() -> None:
        with write_lock(url):
            stalled = asyncio.ensure_future(store.run(tokens.create, Role.READER, None, "stalled"))
            waiting = [asyncio.ensure_future(store.admit(tokens.list_all)) for _ in range(API_CALLS_PER_CONNECTION)]
            await asyncio.sleep(0.5)
            assert not stalled.done(), "the lock did not stall the store"
            with pytest.raises(ResourceExhausted) as refused:
                await store.admit(tokens.list_all)
            assert refused.value.retry_after
            dispatcher = asyncio.ensure_future(store.run(tokens.list_all))
            await asyncio.sleep(0)
        _, made_token = await stalled
        assert made_token
        # Each waited its turn, after the write it queued behind.
        assert [len(found) for found in await asyncio.gather(*waiting)] == [1] * API_CALLS_PER_CONNECTION
        [listed] = await dispatcher
        assert listed.description == "stalled"

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_max_concurrent_rpcs_comes_from_its_flag_or_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    def parsed(*flags: str) -> int:
        parser = build_parser()
        return settings_from(parser.parse_args(["serve", *flags]), parser).max_concurrent_rpcs

    assert parsed() == 256
    assert parsed("--max-concurrent-rpcs", "12") == 12
    monkeypatch.setenv("WEBHOOKS_MAX_CONCURRENT_RPCS", "34")
    assert parsed() == 34
    with pytest.raises(SystemExit):
        parsed("--max-concurrent-rpcs", "0")
