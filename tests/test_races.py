"""Calls racing the dispatcher and each other: no change undoes another, no race ends in INTERNAL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psycopg2
import pytest

from tests import seed
from tests.helpers import WS, make_webhook, publish, wait_for_delivery
from tests.support.postgres import PostgresCluster
from tests.support.receiver import Receiver, Reply
from tests.support.running import LOOPBACK, RunningServer, settings_in
from tests.support.waiting import eventually
from webhook_service.dispatch.settings import DispatchSettings
from webhooks.v1 import delivery_pb2, event_service_pb2, webhook_pb2
from webhooks_client import Client

FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
ORGANIZATION = "organizations/acme"
STACK = "organizations/acme/projects/website/stacks/prod"

Start = Callable[..., RunningServer]


def get(client: Client, name: str) -> webhook_pb2.Webhook:
    return client.webhooks.GetWebhook(WS.GetWebhookRequest(name=name))


def rename(client: Client, name: str, display_name: str) -> webhook_pb2.Webhook:
    webhook = webhook_pb2.Webhook(name=name, display_name=display_name)
    return client.webhooks.UpdateWebhook(WS.UpdateWebhookRequest(webhook=webhook))


class Renamer:
    """Renames webhooks over and over, a thread for each, until stopped; counts each one's renames."""

    def __init__(self, client: Client, names: list[str], pause: float = 0.0) -> None:
        self._stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self._threads = [threading.Thread(target=self._run, args=(client, name, pause)) for name in names]
        for thread in self._threads:
            thread.start()

    def _run(self, client: Client, name: str, pause: float) -> None:
        while not self._stop.is_set():
            rename(client, name, f"renamed {self.counts[name]}")
            self.counts[name] += 1
            self._stop.wait(pause)

    def settle(self) -> None:
        """Returns once every rename that was in flight has finished: each thread has done two more since."""
        wanted = {name: count + 2 for name, count in self.counts.items()}
        eventually(
            lambda: all(self.counts[name] >= count for name, count in wanted.items()),
            30,
            "the renames go on",
            every=0.01,
        )

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


@pytest.fixture
def renamers() -> Iterator[list[Renamer]]:
    started: list[Renamer] = []
    yield started
    for renamer in started:
        renamer.stop()


def test_renames_racing_a_410_leave_the_webhooks_off(
    start_server: Start, receiver: Receiver, renamers: list[Renamer]
) -> None:
    client = start_server(retry_schedule=(0.0,)).client()
    hooks = []
    for index in range(8):
        path = f"/gone-{index}"
        receiver.script(path, [Reply(410)])
        hooks.append(make_webhook(client, ORGANIZATION, receiver.url(path)).name)
    renamer = Renamer(client, hooks)
    renamers.append(renamer)

    for delivery in publish(client, seed.update_event(stack=STACK)).deliveries:
        wait_for_delivery(client, delivery, FAILED)
    renamer.settle()
    renamer.stop()

    for name in hooks:
        webhook = get(client, name)
        assert not webhook.active, f"{name} was turned back on"
        assert "410 Gone" in webhook.disabled_reason


def test_renaming_a_failing_webhook_keeps_its_disable_after_clock(
    start_server: Start, receiver: Receiver, renamers: list[Renamer]
) -> None:
    client = start_server(retry_schedule=(0.0,) + (0.2,) * 60, disable_after=1.0).client()
    receiver.script("/failing", [Reply(500)])
    hook = make_webhook(client, ORGANIZATION, receiver.url("/failing")).name
    renamers.append(Renamer(client, [hook], pause=0.1))

    publish(client, seed.update_event(stack=STACK))

    current = eventually(
        lambda: None if (found := get(client, hook)).active else found,
        20,
        "the failing webhook is turned off while it is renamed",
        every=0.05,
    )
    assert "failed since" in current.disabled_reason


def test_publishes_racing_deletes_of_their_webhooks_never_fail_internally(
    start_server: Start, receiver: Receiver
) -> None:
    client = start_server(concurrency=0).client()
    request = event_service_pb2.PublishEventRequest(event=seed.update_event(stack=STACK))
    codes: Counter[tuple[str, grpc.StatusCode]] = Counter()
    for attempt in range(15):
        hooks = [
            make_webhook(client, parent, receiver.url("/doomed")).name
            for parent in (ORGANIZATION, STACK)
            for _ in range(3)
        ]
        publishes = [client.events.PublishEvent.future(request) for _ in range(12)]
        deletes = [client.webhooks.DeleteWebhook.future(WS.DeleteWebhookRequest(name=name)) for name in hooks]
        for call, futures in (("publish", publishes), ("delete", deletes)):
            for future in futures:
                error = future.exception(timeout=30)
                codes[call, grpc.StatusCode.OK if error is None else error.code()] += 1
        for parent in (ORGANIZATION, STACK):
            assert client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=parent)).webhooks == [], attempt
    assert set(codes) <= {
        ("publish", grpc.StatusCode.OK),
        ("delete", grpc.StatusCode.OK),
        ("delete", grpc.StatusCode.NOT_FOUND),
    }, codes


@pytest.mark.parametrize("stop", ["pg_cancel_backend", "pg_terminate_backend"])
def test_a_statement_lost_while_inserting_deliveries_is_unavailable(
    tmp_path: Path, postgres_cluster: PostgresCluster, receiver: Receiver, stop: str
) -> None:
    """The deliveries go in as one batch on a raw cursor; a statement cancelled there, or its connection
    killed, is the database being unavailable, as on every other statement. PostgreSQL only: a SQLite file
    has no server to cancel a statement or drop a connection."""
    url = postgres_cluster.new_database()
    running = RunningServer(settings_in(tmp_path, url, DispatchSettings(concurrency=0, allow_network=LOOPBACK)))
    blocker = psycopg2.connect(url)
    try:
        # One attempt: the service's own answer is under test, not the client's retry of it (which would wait
        # on the lock below until its deadline).
        with Client(running.target, token=running.admin_token, attempts=1) as client:
            make_webhook(client, ORGANIZATION, receiver.url("/never"))
            # Holding the delivery table stops the publish at its batch of deliveries, after its other statements.
            with blocker.cursor() as cursor:
                cursor.execute("LOCK TABLE delivery IN SHARE MODE")
            call = client.events.PublishEvent.future(
                event_service_pb2.PublishEventRequest(event=seed.update_event(stack=STACK))
            )
            signal_backend(url, stop, wait_for_backend(url, 'INSERT INTO "delivery"%'))

            error = call.exception(timeout=30)
            assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error
            blocker.rollback()
            assert publish(client, seed.update_event(stack=STACK)).deliveries
            [(events,)] = sql(url, "SELECT count(*) FROM event")
            assert events == 1
    finally:
        blocker.close()
        running.stop()


def wait_for_backend(url: str, query: str) -> int:
    """The process ID of the backend blocked on a lock while running `query` (a LIKE pattern)."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:

        def blocked() -> int | None:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE %s",
                (query,),
            )
            found = cursor.fetchall()
            connection.rollback()
            pid: int | None = found[0][0] if found else None
            return pid

        return eventually(blocked, 30, f"a backend waits on a lock running {query}", every=0.02)


def signal_backend(url: str, function: str, pid: int) -> None:
    """Cancels the backend's statement or terminates it, as an operator would."""
    assert function in ("pg_cancel_backend", "pg_terminate_backend")
    [(done,)] = sql(url, f"SELECT {function}(%s)", (pid,))
    assert done


def sql(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall()
    finally:
        connection.close()
