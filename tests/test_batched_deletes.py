"""Retention and webhook deletion take long histories apart a batch at a time, and leave the rest alone."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.helpers import make_webhook
from tests.support.running import RunningServer
from tests.support.sql import execute, in_one_transaction
from tests.support.waiting import eventually
from webhook_service.store.batches import BATCH_ROWS
from webhooks.v1 import webhook_service_pb2

Start = Callable[..., RunningServer]
HISTORY = BATCH_ROWS * 2 + 500


def add_history(url: str, webhook_id: str, count: int, created: float) -> None:
    """`count` delivered deliveries with one attempt each, as a long-lived webhook accumulates. One
    transaction, as the service writes them: a pruner running meanwhile must not take the deliveries away
    between the two statements."""
    [(row,)] = execute(url, "SELECT id FROM webhook WHERE webhook_id = %s", (webhook_id,))
    in_one_transaction(
        url,
        [
            (
                "INSERT INTO delivery (delivery_id, webhook_id, kind, payload, state, attempt_count, create_time)"
                " VALUES (%s, %s, 'stack_update', %s, 'succeeded', 1, %s)",
                [(f"{webhook_id}-{n}", row, b"{}", created) for n in range(count)],
            ),
            (
                "INSERT INTO delivery_attempt (delivery_id, attempt_number, start_time, request_url,"
                " request_headers, response_code, response_headers, response_body, duration, error)"
                " SELECT id, 1, create_time, 'https://example.com/', '{}', 200, '{}', 'ok', 0.01, ''"
                " FROM delivery WHERE webhook_id = %s",
                [(row,)],
            ),
        ],
    )


def count(url: str, webhook_id: str) -> tuple[int, int]:
    """The webhook's deliveries and attempts left."""
    [(deliveries,)] = execute(
        url,
        "SELECT COUNT(*) FROM delivery d JOIN webhook w ON w.id = d.webhook_id WHERE w.webhook_id = %s",
        (webhook_id,),
    )
    [(attempts,)] = execute(
        url,
        "SELECT COUNT(*) FROM delivery_attempt a JOIN delivery d ON d.id = a.delivery_id"
        " JOIN webhook w ON w.id = d.webhook_id WHERE w.webhook_id = %s",
        (webhook_id,),
    )
    return int(deliveries), int(attempts)


def all_attempts(url: str) -> int:
    [(attempts,)] = execute(url, "SELECT COUNT(*) FROM delivery_attempt", ())
    return int(attempts)


def test_deleting_a_webhook_with_a_long_history(start_server: Start, org: str) -> None:
    server = start_server()
    url = server.settings.database
    with server.client() as client:
        doomed = make_webhook(client, f"organizations/{org}", "https://example.com/a", webhook_id="doomed")
        make_webhook(client, f"organizations/{org}", "https://example.com/b", webhook_id="kept")
        add_history(url, "doomed", HISTORY, time.time())
        add_history(url, "kept", 10, time.time())
        assert count(url, "doomed") == (HISTORY, HISTORY)

        client.webhooks.DeleteWebhook(webhook_service_pb2.DeleteWebhookRequest(name=doomed.name))

    assert count(url, "doomed") == (0, 0)
    assert count(url, "kept") == (10, 10)
    assert all_attempts(url) == 10


def test_retention_prunes_a_long_history_and_keeps_the_recent(start_server: Start, org: str) -> None:
    server = start_server(retention=3600.0, prune_interval=0.2)
    url = server.settings.database
    with server.client() as client:
        make_webhook(client, f"organizations/{org}", "https://example.com/a", webhook_id="old")
        make_webhook(client, f"organizations/{org}", "https://example.com/b", webhook_id="recent")
    add_history(url, "old", HISTORY, time.time() - 7200)
    add_history(url, "recent", 10, time.time())

    eventually(
        lambda: count(url, "old") == (0, 0), 30, lambda: f"the old history goes; still {count(url, 'old')}", every=0.2
    )
    assert count(url, "recent") == (10, 10)
