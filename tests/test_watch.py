"""WatchWebhookDeliveries: every attempt as it is recorded, by this server's dispatcher, a ping, a redelivery or a
`webhooks dispatch` process of its own, for a webhook, an organization or a stack, optionally by state; a watcher
that does not read loses attempts and is told how many; shutdown ends every watch with OK."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests import seed
from tests.helpers import WS, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.databases import Databases
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer
from tests.support.tokens import create_token
from webhooks.v1 import delivery_pb2
from webhooks_client import Client

PENDING = delivery_pb2.WEBHOOK_DELIVERY_STATE_PENDING
SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
Watched = WS.WatchWebhookDeliveriesResponse
Start = Callable[..., RunningServer]


class Watch:
    """A watch read on a thread of its own, from the moment it is in place."""

    def __init__(self, client: Client, parent: str, states: tuple[int, ...] = ()) -> None:
        self.call = client.watch_webhook_deliveries(parent, states)
        # Headers come once the server has the watch in place (or with an error).
        self.call.initial_metadata()
        self.seen: list[Watched] = []
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for watched in self.call:
                self.seen.append(watched)
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 20) -> list[Watched]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if self.ended.is_set() or time.monotonic() > deadline:
                raise AssertionError(f"{len(self.seen)} attempts seen, not {count} (error: {self.error}):\n{self.seen}")
            time.sleep(0.02)
        return list(self.seen)

    def cancel(self) -> None:
        self.call.cancel()
        self.ended.wait(10)


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    """Every watch a test opens, cancelled at its end."""
    opened: list[Watch] = []
    yield opened
    for watch in opened:
        watch.cancel()


def stack_event(org: str, stack: str = "s") -> object:
    return seed.update_event(stack=f"organizations/{org}/projects/p/stacks/{stack}")


def outcome(watched: Watched) -> tuple[str, str, int, int, int, int]:
    return (
        watched.delivery,
        watched.kind,
        watched.attempt_number,
        watched.response_code,
        watched.state,
        watched.dropped_count,
    )


def test_a_watch_sees_each_attempt_of_the_dispatcher_a_ping_and_a_redelivery_with_its_outcome(
    start_server: Start, receiver: Receiver, org: str, watches: list[Watch]
) -> None:
    server = start_server(retry_schedule=(0.0, 0.2))
    path = f"/{org}/flaky"
    receiver.script(path, [Reply(500), Reply(200)])
    with server.client() as client:
        hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
        watches.append(watch := Watch(client, hook.name))
        before = datetime.now(UTC)
        [delivery] = publish(client, stack_event(org)).deliveries
        first, second = watch.wait_for(2)
        ping = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
        client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=delivery))
        *_, pinged, redelivered = watch.wait_for(4)
    assert outcome(first) == (delivery, "stack_update", 1, 500, PENDING, 0)
    assert outcome(second) == (delivery, "stack_update", 2, 200, SUCCEEDED, 0)
    assert outcome(pinged) == (ping.name, "ping", 1, 200, SUCCEEDED, 0)
    assert outcome(redelivered) == (delivery, "stack_update", 3, 200, SUCCEEDED, 0)
    # An answer, even a 500, is no error; an attempt that got none says why (see the states test).
    assert first.error == second.error == ""
    for watched in (first, second, pinged, redelivered):
        assert watched.duration.ToTimedelta() > timedelta(0)
        assert before < watched.finish_time.ToDatetime(UTC) < datetime.now(UTC) + timedelta(seconds=1)
    assert first.finish_time.ToDatetime(UTC) < second.finish_time.ToDatetime(UTC)
    assert len(watch.seen) == 4


def test_a_watch_sees_attempts_made_by_a_separate_dispatcher_process(
    start_server: Start, receiver: Receiver, org: str, tmp_path: Path, watches: list[Watch]
) -> None:
    # No dispatcher in the server: every attempt is made by the other process.
    server = start_server(concurrency=0)
    dispatcher = ServiceProcess(
        [
            "dispatch",
            "--database",
            server.settings.database,
            "--secret-key-file",
            str(server.settings.secret_key_file),
            "--allow-network",
            "127.0.0.0/8,::1/128",
        ],
        wait_for_port=False,
        cwd=tmp_path,
    )
    try:
        assert dispatcher.wait_for_log("dispatching from database", timeout=30), dispatcher.log
        with server.client() as client:
            hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}/elsewhere"))
            watches.append(watch := Watch(client, f"organizations/{org}"))
            published = [publish(client, stack_event(org)).deliveries[0] for _ in range(3)]
            seen = watch.wait_for(3)
        assert sorted(outcome(watched) for watched in seen) == sorted(
            (delivery, "stack_update", 1, 200, SUCCEEDED, 0) for delivery in published
        )
        assert all(watched.delivery.startswith(hook.name + "/") for watched in seen)
    finally:
        dispatcher.terminate()
