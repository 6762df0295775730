"""Webhook health on the resource: last success, failing since, pending deliveries, 24-hour attempt counts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from tests import seed
from tests.helpers import WS, make_webhook, publish, wait_for_delivery
from tests.support import sql
from tests.support.receiver import Receiver, Reply
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer
from tests.support.statements import statements_of
from tests.support.waiting import eventually
from webhook_service.domain.health import Streak, hour_of, streak
from webhook_service.domain.names import Parent
from webhook_service.store import deliveries, webhooks
from webhooks.v1 import delivery_pb2, webhook_pb2
from webhooks_client import Client

FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
Start = Callable[..., RunningServer]


def stack_of(org: str) -> str:
    return f"organizations/{org}/projects/website/stacks/prod"


def get(client: Client, name: str) -> webhook_pb2.Webhook:
    return client.webhooks.GetWebhook(WS.GetWebhookRequest(name=name))


def wait_for_health(
    client: Client, name: str, done: Callable[[webhook_pb2.Webhook], bool], timeout: float = 15
) -> webhook_pb2.Webhook:
    """Polls until the webhook's health satisfies `done` (attempts are recorded in batches, just after them)."""
    return eventually(
        lambda: webhook if done(webhook := get(client, name)) else None,
        timeout,
        lambda: f"{name} gets there; it is:\n{get(client, name)}",
        every=0.05,
    )


def health(webhook: webhook_pb2.Webhook) -> tuple[bool, bool, int, int, int]:
    """(has last_success_time, has failing_since, pending, succeeded in 24 h, failed in 24 h)"""
    return (
        webhook.HasField("last_success_time"),
        webhook.HasField("failing_since"),
        webhook.pending_deliveries,
        webhook.succeeded_attempts_24h,
        webhook.failed_attempts_24h,
    )


def test_health_follows_failures_a_recovery_and_failures_again(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    server = start_server(retry_schedule=(0.0, 0.2, 0.2))
    client = server.client()
    path = f"/health/{org}"
    released = threading.Event()

    async def hold() -> None:
        await asyncio.to_thread(released.wait, 60)

    # The retry after the first failure is held until the test has looked at the webhook failing.
    receiver.script(path, [Reply(500), Reply(200, before=hold), Reply(200)])
    hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
    assert health(hook) == (False, False, 0, 0, 0)
    started = time.time()

    [first] = publish(client, seed.update_event(stack=stack_of(org))).deliveries
    receiver.wait_for(path, 2)
    failing = wait_for_health(client, hook.name, lambda w: w.failed_attempts_24h == 1)
    assert health(failing) == (False, True, 1, 0, 1)
    assert started - 1 <= failing.failing_since.ToDatetime().timestamp() <= time.time()
    # Health is not a change of the webhook: an update made from an earlier read still applies.
    assert failing.etag == hook.etag

    released.set()
    wait_for_delivery(client, first)
    recovered = wait_for_health(client, hook.name, lambda w: w.succeeded_attempts_24h == 1)
    assert health(recovered) == (True, False, 0, 1, 1)
    last_success = recovered.last_success_time.ToDatetime()
    assert last_success >= failing.failing_since.ToDatetime()

    # Two more successes, then a delivery that fails all three times it is tried.
    for delivery in publish(client, seed.update_event(stack=stack_of(org))).deliveries:
        wait_for_delivery(client, delivery)
    receiver.script(path, [Reply(503)])
    [doomed] = publish(client, seed.update_event(stack=stack_of(org))).deliveries
    wait_for_delivery(client, doomed, FAILED)
    again = wait_for_health(client, hook.name, lambda w: w.failed_attempts_24h == 4)
    assert health(again) == (True, True, 0, 2, 4)
    assert again.failing_since.ToDatetime() > again.last_success_time.ToDatetime() > last_success

    # The list and the REST API show the same.
    [listed] = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}")).webhooks
    assert health(listed) == health(again)
    assert listed.last_success_time == again.last_success_time
    rest = Rest(server, token_auth(server.admin_token)).ok("GET", f"/orgs/{org}/hooks/{hook.name.rsplit('/', 1)[1]}")
    assert rest["lastSuccessTime"] == again.last_success_time.seconds
    assert rest["failingSince"] == again.failing_since.seconds
    assert (rest["pendingDeliveries"], rest["succeededAttempts24h"], rest["failedAttempts24h"]) == (0, 2, 4)


def test_pending_deliveries_count_what_waits_parked_or_not(start_server: Start, receiver: Receiver, org: str) -> None:
    client = start_server(retry_schedule=(0.0, 3600.0)).client()
    path = f"/pending/{org}"
    receiver.script(path, [Reply(500)])
    hook = make_webhook(client, stack_of(org), receiver.url(path))
    quiet = make_webhook(
        client, f"organizations/{org}", receiver.url(path), filters=[webhook_pb2.WEBHOOK_FILTER_STACK_CREATED]
    )

    for _ in range(3):
        publish(client, seed.update_event(stack=stack_of(org)))
    waiting = wait_for_health(client, hook.name, lambda w: w.failed_attempts_24h == 3)
    assert health(waiting) == (False, True, 3, 0, 3)
    assert health(get(client, quiet.name)) == (False, False, 0, 0, 0)

    # Deactivated, its deliveries stay pending, parked until it is active again.
    off = webhook_pb2.Webhook(name=hook.name, active=False)
    client.webhooks.UpdateWebhook(WS.UpdateWebhookRequest(webhook=off, update_mask={"paths": ["active"]}))
    assert get(client, hook.name).pending_deliveries == 3


def test_the_counts_cover_the_last_24_clock_hours_and_older_hours_are_pruned(
    client: Client, server: RunningServer, receiver: Receiver, org: str
) -> None:
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/hours/{org}"), webhook_id="hours")
    url = server.settings.database
    [(row,)] = sql.execute(url, "SELECT id FROM webhook WHERE organization = %s AND webhook_id = 'hours'", (org,))
    now = hour_of(time.time())
    # Hours 22 and 25 back, well inside and outside the window whichever hour the reads fall in.
    sql.execute_many(
        url,
        "INSERT INTO webhook_hourly_attempts (webhook_id, hour, succeeded, failed) VALUES (%s, %s, %s, %s)",
        [(row, now - 30, 100, 100), (row, now - 25, 10, 10), (row, now - 22, 2, 1), (row, now, 3, 0)],
    )
    assert (get(client, hook.name).succeeded_attempts_24h, get(client, hook.name).failed_attempts_24h) == (5, 1)

    store = server.server.store
    assert store is not None
    server.run(store.run(deliveries.prune, 0.0, 0.0))
    kept = sql.execute(url, "SELECT hour FROM webhook_hourly_attempts WHERE webhook_id = %s ORDER BY hour", (row,))
    assert [hour for (hour,) in kept] == [now - 22, now]

    # Deleting the webhook takes its counts with it.
    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=hook.name))
    assert sql.execute(url, "SELECT hour FROM webhook_hourly_attempts WHERE webhook_id = %s", (row,)) == []


def test_a_list_reads_health_in_as_many_statements_for_sixty_webhooks_as_for_one(
    client: Client, server: RunningServer, receiver: Receiver, org: str
) -> None:
    path = f"/many/{org}"
    one, sixty = Parent(org, "website", "one"), Parent(org)
    make_webhook(client, str(one), receiver.url(path))
    for number in range(60):
        make_webhook(client, str(sixty), receiver.url(path), webhook_id=f"w{number}")
    for delivery in publish(client, seed.update_event(stack=str(one))).deliveries:
        wait_for_delivery(client, delivery)

    store = server.server.store
    assert store is not None
    counted = {
        parent: server.run(store.run(statements_of, lambda parent=parent: webhooks.list_page(parent, 0, 1000)))
        for parent in (one, sixty)
    }
    # The page, its pending counts, its hourly counts.
    assert len(counted[one]) == len(counted[sixty]) == 3, counted

    listed = client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=str(sixty), page_size=1000)).webhooks
    assert len(listed) == 60
    assert [w.succeeded_attempts_24h for w in listed] == [1] * 60
    assert all(w.HasField("last_success_time") and not w.HasField("failing_since") for w in listed)


def test_a_batch_of_attempts_ends_on_its_latest_success_and_the_failures_after_it() -> None:
    """Several attempts of one webhook are recorded at once, in no particular order."""
    assert streak([]) == Streak(None, None)
    assert streak([(30.0, False), (10.0, False)]) == Streak(None, 10.0)
    assert streak([(30.0, True), (10.0, False), (20.0, True)]) == Streak(30.0, None)
    assert streak([(50.0, False), (20.0, True), (40.0, False), (10.0, False)]) == Streak(20.0, 40.0)
