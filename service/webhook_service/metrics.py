"""The process's Prometheus series.

Each process makes one Metrics and hands it down; its registry is its own, not prometheus_client's global
one, so two services in one process (as in the tests) keep their series apart. No series has a per-webhook
label: the number of webhooks is unbounded, and each webhook's health is in the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, exposition, parser
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

MetricT = TypeVar("MetricT", bound=MetricWrapperBase)

CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST
# Every series of the service's own begins so.
SERVICE_PREFIX = "webhooks_"

# A `_created` series beside every counter doubles what a scrape carries and says only when the process
# started; Prometheus has `process_start_time_seconds` for that.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# From a quick local answer to the 15 s default delivery timeout and past it.
ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)
# Publish to first success: milliseconds when the receiver answers, hours when it needed the retry schedule.
LATENCY_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    43200.0,
    86400.0,
)
# Most calls take milliseconds; ping and redeliver wait for the receiver, up to the delivery timeout.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)


@dataclass(frozen=True)
class Backlog:
    """Deliveries waiting, as the database said at one moment."""

    pending: int
    # Seconds since the oldest of them was created; None when none waits.
    oldest_age: float | None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._labelled: dict[tuple[object, ...], MetricWrapperBase] = {}
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._published = Counter(
            "webhooks_events_published",
            "Events stored by PublishEvent (a repeated request_id is not counted again), by Pulumi-Webhook-Kind.",
            ["kind"],
            registry=self.registry,
        )
        self._attempts = Counter(
            "webhooks_delivery_attempts",
            "HTTP attempts the dispatcher made, by outcome (succeeded, failed: a non-2xx answer, error: no answer)"
            " and status class (2xx..5xx, none). Pings and redeliveries are counted as the calls that ask for them.",
            ["outcome", "code_class"],
            registry=self.registry,
        )
        self._attempt_seconds = Histogram(
            "webhooks_delivery_attempt_duration_seconds",
            "How long each attempt the dispatcher made took.",
            buckets=ATTEMPT_BUCKETS,
            registry=self.registry,
        )
        self._latency = Histogram(
            "webhooks_delivery_latency_seconds",
            "From a delivery's creation at publish to the end of its first successful attempt.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._calls = Counter(
            "webhooks_rpc_requests",
            "API calls through gRPC and REST alike, by operation and gRPC status code name.",
            ["method", "code"],
            registry=self.registry,
        )
        self._call_seconds = Histogram(
            "webhooks_rpc_duration_seconds",
            "How long API calls took, by operation.",
            ["method"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self._dispatcher_ends = Counter(
            "webhooks_dispatcher_process_ends",
            "Dispatcher processes of serve that ended without being asked to (each is started again).",
            registry=self.registry,
        )
        self._deactivated = Counter(
            "webhooks_webhooks_deactivated",
            "Webhooks the dispatcher deactivated: gone (the receiver answered 410) or failing (no success for"
            " --disable-after).",
            ["reason"],
            registry=self.registry,
        )

    def _children(self, metric: MetricT, *values: str) -> MetricT:
        """`metric.labels(*values)`, kept: prometheus_client takes a lock and checks the values on every
        `labels()`, a measurable share of an API call at thousands a second. Label values come from fixed
        sets (operations, status codes, kinds), so this holds a few hundred entries at most."""
        key = (metric, *values)
        child = self._labelled.get(key)
        if child is None:
            child = self._labelled[key] = metric.labels(*values)
        return cast(MetricT, child)

    def dispatcher_process_ended(self) -> None:
        self._dispatcher_ends.inc()

    def published(self, kind: str) -> None:
        self._children(self._published, kind).inc()

    def attempted(self, response_code: int, succeeded: bool, seconds: float) -> None:
        """One attempt of a queued delivery; `response_code` 0 when no answer came."""
        outcome = "succeeded" if succeeded else ("error" if response_code == 0 else "failed")
        self._children(self._attempts, outcome, code_class(response_code)).inc()
        self._attempt_seconds.observe(seconds)

    def delivered(self, latency: float) -> None:
        """A delivery's first success, `latency` seconds after it was created."""
        self._latency.observe(latency)

    def deactivated(self, reason: str) -> None:
        self._deactivated.labels(reason).inc()

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """One finished API call: `method` is the operation (CreateWebhook), `code` the gRPC code name (OK)."""
        self._children(self._calls, method, code).inc()
        self._children(self._call_seconds, method).observe(seconds)

    def render(self, backlog: Backlog | None, elsewhere: Sequence[bytes] = ()) -> bytes:
        """Every series in Prometheus' text format, with the backlog gauges when the database gave them, and
        the service's series of other processes (`service_series` of each dispatcher process) added in."""
        return exposition.generate_latest(_WithBacklog(self.registry, backlog, elsewhere))

    def service_series(self) -> bytes:
        """The service's own series (not the process collectors'), for the process that reports them."""
        return exposition.generate_latest(_Own(self.registry))


def code_class(response_code: int) -> str:
    """`2xx` to `5xx`; `none` for no answer, and for the odd status outside those classes."""
    return f"{response_code // 100}xx" if 200 <= response_code < 600 else "none"


class _WithBacklog(Collector):
    """The registry plus the backlog read for this scrape; nothing is kept between scrapes, so a scrape
    while the database is away shows no gauges rather than stale ones. Series that other processes sent
    are added to this process's of the same name and labels: one service, one set of counters."""

    def __init__(self, registry: CollectorRegistry, backlog: Backlog | None, elsewhere: Sequence[bytes]) -> None:
        self._registry = registry
        self._backlog = backlog
        self._elsewhere = elsewhere

    def collect(self) -> Iterable[Metric]:
        added: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for text in self._elsewhere:
            for family in parser.text_string_to_metric_families(text.decode()):
                values = added.setdefault(family.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    values[key] = values.get(key, 0.0) + sample.value
        for metric in self._registry.collect():
            yield _summed(metric, added.get(metric.name, {})) if metric.name in added else metric
        yield from _backlog_gauges(self._backlog)


def _summed(metric: Metric, added: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Metric:
    """`metric` with `added` summed into its samples; samples only `added` has come after this process's."""
    values = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for sample in metric.samples}
    for key, value in added.items():
        values[key] = values.get(key, 0.0) + value
    summed = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    for (name, labels), value in values.items():
        summed.add_sample(name, dict(labels), value)
    return summed


class _Own(Collector):
    """The service's series of a registry, without the process, platform and garbage-collector ones."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return (metric for metric in self._registry.collect() if metric.name.startswith(SERVICE_PREFIX))


def _backlog_gauges(backlog: Backlog | None) -> Iterator[Metric]:
    if backlog is None:
        return
    yield GaugeMetricFamily(
        "webhooks_deliveries_pending",
        "Deliveries of active webhooks not yet finished (due, or waiting for a retry), read at scrape time.",
        value=backlog.pending,
    )
    yield GaugeMetricFamily(
        "webhooks_oldest_pending_delivery_age_seconds",
        "Age of the oldest of those deliveries (0 when none waits), read at scrape time.",
        value=backlog.oldest_age or 0.0,
    )
