"""/metrics scraped over HTTP from the real service after real publishes and deliveries: each series, with its
value, as Prometheus would read it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from tests import seed
from tests.helpers import WS, get_delivery, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver, Reply
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer
from tests.support.scrape import Scrape, get, http_base, scrape
from tests.support.waiting import eventually
from webhooks.v1 import delivery_pb2, webhook_pb2

FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
PENDING = delivery_pb2.WEBHOOK_DELIVERY_STATE_PENDING
# Every label any series has: none names a webhook, an organization or a delivery.
LABELS = {"kind", "outcome", "code_class", "method", "code", "reason", "le"}

Start = Callable[..., RunningServer]
Expected = dict[tuple[str, tuple[tuple[str, str], ...]], float | None]


def series(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def scraped_once(base: str, expected: Expected, timeout: float = 20) -> Scrape:
    """The first scrape with every expected value (None: the sample is absent). Counters move when the
    dispatcher has recorded an outcome, a moment after the state the tests wait for, and the backlog
    gauges are read again every few seconds, so the values are waited for."""

    def wrong(found: Scrape) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float | None, float | None]]:
        return {
            key: (found.value(key[0], **dict(key[1])), value)
            for key, value in expected.items()
            if found.value(key[0], **dict(key[1])) != value
        }

    return eventually(
        lambda: None if wrong(found := scrape(base)) else found,
        timeout,
        lambda: f"every expected value; (found, expected): {wrong(scrape(base))}",
        every=0.2,
    )


def test_every_series_after_a_publish_a_success_a_failure_and_a_retry(
    start_server: Start, receiver: Receiver, org: str
) -> None:
    server = start_server(retry_schedule=(0.0, 0.3), disable_after=0.1)
    base = http_base(server)
    parent = f"organizations/{org}"
    paths = {name: f"/{org}/{name}" for name in ("ok", "flaky", "gone", "later")}
    receiver.script(paths["flaky"], [Reply(500), Reply(200)])
    receiver.script(paths["gone"], [Reply(410)])
    # A failure whose retry is an hour away: the delivery stays pending.
    receiver.script(paths["later"], [Reply(503, headers={"Retry-After": "3600"})])

    with server.client() as client:
        hooks = {name: make_webhook(client, parent, receiver.url(path)) for name, path in paths.items()}
        hooks["refused"] = make_webhook(client, parent, "http://127.0.0.1:9/closed")
        event = seed.update_event(stack=f"{parent}/projects/website/stacks/prod")
        published = publish(client, event, request_id="metrics")
        # The same request again answers the same, and stores (and counts) nothing new.
        assert publish(client, event, request_id="metrics") == published
        delivery = {
            key: next(name for name in published.deliveries if name.startswith(hook.name + "/"))
            for key, hook in hooks.items()
        }
        wait_for_delivery(client, delivery["ok"])
        wait_for_delivery(client, delivery["flaky"])
        wait_for_delivery(client, delivery["gone"], FAILED)
        wait_for_delivery(client, delivery["refused"], FAILED)
        eventually(
            lambda: get_delivery(client, delivery["later"]).attempt_count >= 1,
            15,
            "the delivery that is retried later is tried",
            every=0.05,
        )
        assert get_delivery(client, delivery["later"]).state == PENDING
        missing = rpc_error(client.webhooks.GetWebhook, WS.GetWebhookRequest(name=f"{parent}/webhooks/missing"))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
    with server.client(token="not-a-token") as stranger:
        refused = rpc_error(stranger.webhooks.GetWebhook, WS.GetWebhookRequest(name=hooks["ok"].name))
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED

    attempts = "webhooks_delivery_attempts_total"
    metrics = scraped_once(
        base,
        {
            series("webhooks_events_published_total", kind="stack_update"): 1,
            # ok, and flaky's second attempt
            series(attempts, outcome="succeeded", code_class="2xx"): 2,
            # flaky's first attempt, and later's
            series(attempts, outcome="failed", code_class="5xx"): 2,
            series(attempts, outcome="failed", code_class="4xx"): 1,
            # refused, twice: no response at all
            series(attempts, outcome="error", code_class="none"): 2,
            series(attempts, outcome="failed", code_class="none"): None,
            series("webhooks_delivery_attempt_duration_seconds_count"): 7,
            # ok and flaky: a first success each
            series("webhooks_delivery_latency_seconds_count"): 2,
            series("webhooks_webhooks_deactivated_total", reason="gone"): 1,
            # refused failed for longer than --disable-after
            series("webhooks_webhooks_deactivated_total", reason="failing"): 1,
            series("webhooks_deliveries_pending"): 1,
            series("webhooks_rpc_requests_total", method="CreateWebhook", code="OK"): 5,
            series("webhooks_rpc_requests_total", method="PublishEvent", code="OK"): 2,
            series("webhooks_rpc_requests_total", method="GetWebhook", code="NOT_FOUND"): 1,
            series("webhooks_rpc_requests_total", method="GetWebhook", code="UNAUTHENTICATED"): 1,
            series("webhooks_rpc_duration_seconds_count", method="CreateWebhook"): 5,
            series("webhooks_rpc_duration_seconds_count", method="PublishEvent"): 2,
        },
    )

    latency = metrics.value("webhooks_delivery_latency_seconds_sum")
    # flaky succeeded on its retry, scheduled 0.3 s (less up to 20 % jitter) after its first attempt.
    assert latency is not None and latency >= 0.2, latency
    assert metrics.value("webhooks_delivery_latency_seconds_bucket", le="+Inf") == 2
    age = metrics.value("webhooks_oldest_pending_delivery_age_seconds")
    assert age is not None and 0 < age < 600, age
    assert metrics.label_names("webhooks_") <= LABELS, metrics.label_names("webhooks_")
    assert "# TYPE webhooks_delivery_attempt_duration_seconds histogram" in metrics.text

    # A deactivated webhook's deliveries wait for nobody until it is active again: they are not the backlog.
    with server.client() as client:
        client.webhooks.UpdateWebhook(
            WS.UpdateWebhookRequest(webhook=webhook_pb2.Webhook(name=hooks["later"].name, active=False))
        )
    scraped_once(
        base,
        {series("webhooks_deliveries_pending"): 0, series("webhooks_oldest_pending_delivery_age_seconds"): 0},
    )


def test_two_services_in_one_process_keep_their_series_apart(start_server: Start, org: str) -> None:
    first, second = start_server(), start_server()
    with first.client() as client:
        publish(client, seed.deployment_event(stack=f"organizations/{org}/projects/website/stacks/prod"))

    scraped_once(http_base(first), {series("webhooks_events_published_total", kind="deployment"): 1})
    other = scrape(http_base(second))
    assert other.value("webhooks_events_published_total", kind="deployment") is None
    assert other.value("webhooks_rpc_requests_total", method="PublishEvent", code="OK") is None


def test_a_dispatch_process_serves_the_series_of_its_own_attempts(
    start_server: Start, receiver: Receiver, org: str, tmp_path: Path
) -> None:
    """`webhooks dispatch` beside an API-only `serve`, on one database: the API counts the publish, the
    dispatcher the attempt, each on its own HTTP listener."""
    api = start_server(concurrency=0)
    dispatch = ServiceProcess(
        [
            "dispatch",
            "--database",
            api.settings.database,
            "--secret-key-file",
            str(api.settings.secret_key_file),
            "--allow-network",
            "127.0.0.0/8,::1/128",  # what the in-process server opens: processes sharing a database agree
        ],
        wait_for_port=False,
        cwd=tmp_path,
    )
    try:
        dispatch_base = dispatch.wait_for_log(r"dispatcher ready, HTTP on (http://127\.0\.0\.1:\d+)", 30)[1]
        path = f"/{org}/dispatched"
        with api.client() as client:
            make_webhook(client, f"organizations/{org}", receiver.url(path))
            [name] = publish(
                client, seed.stack_event(stack=f"organizations/{org}/projects/website/stacks/prod")
            ).deliveries
            wait_for_delivery(client, name)

        scraped_once(
            dispatch_base,
            {
                series("webhooks_delivery_attempts_total", outcome="succeeded", code_class="2xx"): 1,
                series("webhooks_delivery_latency_seconds_count"): 1,
                series("webhooks_events_published_total", kind="stack"): None,
                series("webhooks_rpc_requests_total", method="PublishEvent", code="OK"): None,
            },
        )
        scraped_once(
            http_base(api),
            {
                series("webhooks_events_published_total", kind="stack"): 1,
                series("webhooks_delivery_attempts_total", outcome="succeeded", code_class="2xx"): None,
            },
        )
        assert get(f"{dispatch_base}/healthz")[0] == 200
        assert get(f"{dispatch_base}/readyz")[0] == 200
    finally:
        dispatch.terminate()


def test_rest_calls_count_in_the_same_series_as_grpc(start_server: Start, org: str) -> None:
    """The same method and code labels whichever door a call came through."""
    server = start_server()
    rest = Rest(server, token_auth(server.admin_token))
    rest.ok("GET", f"/orgs/{org}/hooks")
    assert rest.call("GET", f"/orgs/{org}/hooks/nope").status == 404
    assert Rest(server, token_auth("whk_" + "x" * 43)).call("GET", f"/orgs/{org}/hooks").status == 401
    scraped_once(
        http_base(server),
        {
            series("webhooks_rpc_requests_total", method="ListWebhooks", code="OK"): 1,
            series("webhooks_rpc_requests_total", method="GetWebhook", code="NOT_FOUND"): 1,
            series("webhooks_rpc_requests_total", method="ListWebhooks", code="UNAUTHENTICATED"): 1,
        },
    )
