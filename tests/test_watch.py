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
import psycopg2
import pytest

from tests import seed
from tests.helpers import WS, make_webhook, publish, wait_for_delivery
from tests.support.databases import Databases
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer
from tests.support.tokens import create_token
from webhook_service.domain.limits import MAX_WATCHERS
from webhooks.v1 import delivery_pb2
from webhooks_client import Client, error_reason, violations

PENDING = delivery_pb2.WEBHOOK_DELIVERY_STATE_PENDING
SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
Watched = WS.WatchWebhookDeliveriesResponse
Start = Callable[..., RunningServer]


class Watch:
    """A watch read on a thread of its own (unless `read` is false, until `start_reading`), from the moment it is
    in place."""

    def __init__(self, client: Client, parent: str, states: tuple[int, ...] = (), read: bool = True) -> None:
        self.call = client.watch_webhook_deliveries(parent, states)
        # Headers come once the server has the watch in place (or with an error).
        self.call.initial_metadata()
        self.seen: list[Watched] = []
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        self.reading = False
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        self.reading = True
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for watched in self.call:
                self.seen.append(watched)
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.ended.set()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 20, fail: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.ended.is_set() or time.monotonic() > deadline:
                if not fail:
                    return False
                raise AssertionError(f"{len(self.seen)} attempts seen (error: {self.error}):\n{self.seen}")
            time.sleep(0.02)
        return True

    def wait_for(self, count: int, timeout: float = 20) -> list[Watched]:
        self.wait_until(lambda: len(self.seen) >= count, timeout)
        return list(self.seen)

    def cancel(self) -> None:
        self.call.cancel()
        if self.reading:
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
        dispatcher.wait_for_log("dispatching from database", timeout=30)
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


def test_a_states_filter_keeps_only_attempts_that_leave_their_delivery_in_those_states(
    start_server: Start, receiver: Receiver, org: str, watches: list[Watch]
) -> None:
    # One attempt and no retry: a failed attempt fails its delivery.
    server = start_server(retry_schedule=(0.0,))
    parent = f"organizations/{org}"
    receiver.script(f"/{org}/bad", [Reply(500)])
    with server.client() as client:
        good = make_webhook(client, parent, receiver.url(f"/{org}/good"))
        bad = make_webhook(client, parent, receiver.url(f"/{org}/bad"))
        refused = make_webhook(client, parent, "http://127.0.0.1:9/closed")
        watches.append(every := Watch(client, parent))
        watches.append(failed := Watch(client, parent, (FAILED,)))
        watches.append(succeeded := Watch(client, parent, (SUCCEEDED,)))
        watches.append(either := Watch(client, parent, (SUCCEEDED, FAILED)))
        watches.append(pending := Watch(client, parent, (PENDING,)))
        publish(client, stack_event(org))
        every.wait_for(3)
        # Last, one attempt each watch lets through: nothing they should leave out can come after it.
        client.webhooks.PingWebhook(WS.PingWebhookRequest(name=good.name))
        every.wait_for(4)
    hooks = {good.name: "good", bad.name: "bad", refused.name: "refused"}

    def outcomes(watch: Watch, count: int) -> list[tuple[str, str, int]]:
        return sorted((hooks[w.delivery.rsplit("/deliveries/", 1)[0]], w.kind, w.state) for w in watch.wait_for(count))

    assert outcomes(failed, 2) == [("bad", "stack_update", FAILED), ("refused", "stack_update", FAILED)]
    assert outcomes(succeeded, 2) == [("good", "ping", SUCCEEDED), ("good", "stack_update", SUCCEEDED)]
    assert outcomes(either, 4) == sorted(outcomes(every, 4))
    assert len(failed.seen) == len(either.seen) - 2 == 2 and pending.seen == []
    [no_answer] = [w for w in failed.seen if w.delivery.startswith(refused.name)]
    assert no_answer.response_code == 0 and "127.0.0.1:9" in no_answer.error


def test_a_watch_covers_one_webhook_an_organization_with_its_stacks_or_one_stack(
    server: RunningServer, client: Client, receiver: Receiver, org: str, watches: list[Watch]
) -> None:
    parent, stack, other_stack = (f"organizations/{org}", f"organizations/{org}/projects/p/stacks/s", "")
    other_stack = f"organizations/{org}/projects/p/stacks/t"
    whole = make_webhook(client, parent, receiver.url(f"/{org}/whole"))
    on_stack = make_webhook(client, stack, receiver.url(f"/{org}/s"))
    on_other = make_webhook(client, other_stack, receiver.url(f"/{org}/t"))
    elsewhere = make_webhook(client, f"organizations/{org}-other", receiver.url(f"/{org}/elsewhere"))
    watches.append(organization := Watch(client, parent))
    watches.append(one_stack := Watch(client, stack))
    watches.append(one_webhook := Watch(client, whole.name))
    watches.append(other_organization := Watch(client, f"organizations/{org}-other"))
    publish(client, stack_event(org, "s"))
    publish(client, stack_event(org, "t"))
    organization.wait_for(4)
    # Last, an attempt of each webhook watched on its own: nothing they should leave out can come after it.
    for hook in (on_stack, whole, elsewhere):
        client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))

    def webhooks(watch: Watch, count: int) -> list[tuple[str, str]]:
        return sorted((w.delivery.rsplit("/deliveries/", 1)[0], w.kind) for w in watch.wait_for(count))

    update = "stack_update"
    assert webhooks(organization, 6) == sorted(
        [(whole.name, update)] * 2
        + [(on_stack.name, update), (on_other.name, update)]
        + [(on_stack.name, "ping"), (whole.name, "ping")]
    )
    assert webhooks(one_stack, 2) == [(on_stack.name, "ping"), (on_stack.name, update)]
    assert webhooks(one_webhook, 3) == [(whole.name, "ping"), (whole.name, update), (whole.name, update)]
    assert webhooks(other_organization, 1) == [(elsewhere.name, "ping")]
    for watch, count in ((organization, 6), (one_stack, 2), (one_webhook, 3), (other_organization, 1)):
        assert len(watch.seen) == count


def test_a_watcher_that_does_not_read_loses_attempts_and_is_told_how_many(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    """The server keeps 8 attempts for it (the setting), and its connection a few hundred more; the rest are
    counted, and each count comes with the next attempt it gets."""
    server = start_server(watch_mailbox_size=8)
    parent = f"organizations/{org}"
    with server.client() as client:
        hooks = [make_webhook(client, parent, receiver.url(f"/{org}/slow")) for _ in range(20)]
        # A connection that takes little before the watcher reads, and does not grow its window meanwhile.
        with Client(
            server.target,
            token=server.admin_token,
            options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
        ) as slow:
            watch = Watch(slow, parent, read=False)
            published = [name for _ in range(10) for name in publish(client, stack_event(org)).deliveries]
            for name in published:
                wait_for_delivery(client, name)
            watch.start_reading()
            # The attempts left out last are counted on the next one the watcher gets: a ping once it reads
            # again. Pings made while what waited for it still fills its mailbox are left out and counted too.
            pings: list[str] = []
            deadline = time.monotonic() + 60
            while not any(w.delivery in pings for w in watch.seen):
                assert time.monotonic() < deadline, f"no ping of {len(pings)} reached the watcher"
                pings.append(client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hooks[0].name)).name)
                watch.wait_until(lambda: any(w.delivery == pings[-1] for w in watch.seen), timeout=1, fail=False)
            watch.cancel()
    received = watch.seen[: next(i for i, w in enumerate(watch.seen) if w.delivery in pings) + 1]
    dropped = sum(w.dropped_count for w in received)
    assert dropped > 0
    assert len(received) + dropped == len(published) + pings.index(received[-1].delivery) + 1
    assert len({w.delivery for w in received}) == len(received)
    assert {w.delivery for w in received} <= {*published, *pings}


def test_shutdown_ends_every_watch_with_ok_at_once_rather_than_after_the_grace(
    start_server: Start, receiver: Receiver, org: str, watches: list[Watch]
) -> None:
    server = start_server(grace=30.0)
    with server.client() as client:
        hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}/shutdown"))
        watches.append(organization := Watch(client, f"organizations/{org}"))
        watches.append(webhook := Watch(client, hook.name))
        client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
        organization.wait_for(1)
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
    for watch in (organization, webhook):
        assert watch.ended.wait(10)
        assert watch.error is None
        assert watch.call.code() == grpc.StatusCode.OK
    # A watch that held the shutdown would have kept it waiting the whole 30 s grace.
    assert took < 15, took


def watch_error(client: Client, parent: str, states: tuple[int, ...] = ()) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(client.watch_webhook_deliveries(parent, states, timeout=20)))
    error: grpc.RpcError = caught.value
    return error


@pytest.mark.parametrize(
    ("parent", "states", "expected"),
    [
        ("", (), [("parent", "INVALID_NAME")]),
        ("organizations/", (), [("parent", "INVALID_NAME")]),
        ("organizations/acme/webhooks/", (), [("parent", "INVALID_NAME")]),
        ("organizations/acme/projects/p", (), [("parent", "INVALID_NAME")]),
        ("organizations/acme", (0,), [("states[0]", "INVALID_ENUM_VALUE")]),
        ("organizations/acme", (SUCCEEDED, 99), [("states[1]", "INVALID_ENUM_VALUE")]),
        ("nope", (99,), [("parent", "INVALID_NAME"), ("states[0]", "INVALID_ENUM_VALUE")]),
    ],
)
def test_a_malformed_request_is_invalid_argument_naming_each_field(
    client: Client, parent: str, states: tuple[int, ...], expected: list[tuple[str, str]]
) -> None:
    error = watch_error(client, parent, states)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted((v.field, v.reason) for v in violations(error)) == sorted(expected)


def test_an_unknown_webhook_is_not_found(client: Client, org: str) -> None:
    error = watch_error(client, f"organizations/{org}/webhooks/missing")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(error) == "WEBHOOK_NOT_FOUND"


def test_a_reader_may_watch_its_own_organizations_and_no_other(
    server: RunningServer, receiver: Receiver, org: str, watches: list[Watch]
) -> None:
    reader = server.client(create_token(server.settings.database, "reader", org))
    publisher = server.client(create_token(server.settings.database, "publisher", org))
    with server.client() as admin, reader, publisher:
        hook = make_webhook(admin, f"organizations/{org}", receiver.url(f"/{org}/read"))
        watches.append(own := Watch(reader, f"organizations/{org}"))
        admin.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
        assert own.wait_for(1)[0].kind == "ping"
        for parent in (f"organizations/{org}-other", f"organizations/{org}-other/webhooks/w"):
            assert watch_error(reader, parent).code() == grpc.StatusCode.PERMISSION_DENIED
        assert watch_error(publisher, f"organizations/{org}").code() == grpc.StatusCode.PERMISSION_DENIED
    with server.client(token="") as anonymous:
        assert watch_error(anonymous, f"organizations/{org}").code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_watch_ends_unavailable_when_the_notifications_are_lost_and_the_next_watch_works(
    start_server: Start, databases: Databases, receiver: Receiver, org: str, watches: list[Watch]
) -> None:
    """Attempts recorded while the server cannot hear them are unknown: the watch says so rather than miss them."""
    if databases.engine != "postgresql":
        pytest.skip("SQLite has no notifications: its attempts table is read again, from where the last read ended")
    server = start_server()
    parent = f"organizations/{org}"
    with server.client() as client:
        hook = make_webhook(client, parent, receiver.url(f"/{org}/lost"))
        watches.append(lost := Watch(client, parent))
        connection = psycopg2.connect(server.settings.database)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE query = 'LISTEN webhook_attempts' AND datname = current_database()"
                )
                assert cursor.fetchone() == (1,)
        finally:
            connection.close()
        assert lost.ended.wait(20)
        assert lost.error is not None and lost.error.code() == grpc.StatusCode.UNAVAILABLE
        assert error_reason(lost.error) == "DATABASE_UNAVAILABLE"
        watches.append(again := Watch(client, parent))
        ping = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
        assert again.wait_for(1)[0].delivery == ping.name


def test_a_server_serves_a_bounded_number_of_watches_and_lets_one_in_once_another_ends(
    start_server: Start, receiver: Receiver, org: str, watches: list[Watch]
) -> None:
    server = start_server()
    parent = f"organizations/{org}"
    # gRPC carries at most 100 streams at once on one connection: two connections hold them all.
    with server.client() as first, server.client() as second:
        hook = make_webhook(first, parent, receiver.url(f"/{org}/many"))
        for number in range(MAX_WATCHERS):
            watches.append(Watch(first if number % 2 else second, parent, read=False))
        refused = watch_error(first, parent)
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(refused) == "SERVER_OVERLOADED"
        watches.pop().cancel()
        # The cancelled watch leaves once the server hears of it: until then, a new one may still be refused.
        deadline = time.monotonic() + 20
        while True:
            call = first.watch_webhook_deliveries(parent, timeout=30)
            call.initial_metadata()
            pinged = first.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name)).name
            try:
                assert next(call).delivery == pinged
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "no watch was let in once one ended"
            finally:
                call.cancel()
