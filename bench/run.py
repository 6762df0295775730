"""The phases of `make bench` and the table they end with.

1. ceiling: a bare aiohttp loop posting the service's signed body to the receiver;
2. drain: deliveries queued in the database before the service starts, delivered by its dispatcher;
3. live: events published over gRPC with one webhook per event, then ten, then at a steady rate;
4. memory: the service's resident size with an empty database and with a large backlog pending.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ceiling import post_loop
from bench.live import Published, create_webhooks, publish_burst, publish_paced
from bench.prefill import prefill, sample_event
from bench.receiver import ReceiverProcess
from bench.report import Row, percentile, table
from bench.service import ServiceProcess
from webhook_service.domain.model import WebhookFormat
from webhook_service.domain.payloads import event_kind, render_event

SECRET = "bench-secret"
# The targets of the issue, for a 2-core machine.
DRAIN_TARGET = 0.7
LIVE_ONE_TARGET = 0.4
PUBLISH_P99_TARGET_MS = 20.0
# "Memory flat": a backlog of pending deliveries may not grow the service by more than this.
FLAT_MEMORY_MIB = 10.0
SETTLE_SECONDS = 3.0
# After the last expected delivery, time for any duplicate to show up before the receipts are read.
DUPLICATES_GRACE = 0.3


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_busy_seconds() -> float:
    """CPU seconds of this process and of its children that have exited (the receiver, the services)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--ceiling-posts", type=int, default=10_000, help="posts per round of the bare aiohttp loop")
    parser.add_argument("--ceiling-rounds", type=int, default=3, help="rounds of the ceiling loop (the median counts)")
    parser.add_argument("--concurrency", type=int, default=64, help="posts in flight in the ceiling loop")
    parser.add_argument("--drain", type=int, default=30_000, help="deliveries queued before the drain")
    parser.add_argument(
        "--drain-webhooks",
        default="1,10",
        help="comma-separated: one drain per entry, its deliveries spread over that many webhooks",
    )
    parser.add_argument("--events-one", type=int, default=3_000, help="events published with one webhook each")
    parser.add_argument("--events-ten", type=int, default=1_000, help="events published with ten webhooks each")
    parser.add_argument("--publishers", type=int, default=32, help="PublishEvent RPCs in flight in the live bursts")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second of the paced run")
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="length of the paced run")
    parser.add_argument("--pending", type=int, default=100_000, help="deliveries pending in the memory run")
    parser.add_argument(
        "--service-arg",
        action="append",
        default=[],
        help="extra `webhooks serve` flag, repeatable; e.g. --service-arg=--webhook-concurrency=64",
    )
    parser.add_argument(
        "--phases", default="drain,live,memory", help="comma-separated phases to run after the ceiling (default all)"
    )
    parser.add_argument("--profile", default="", help="folder for py-spy profiles of the service (collapsed stacks)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Memory:
    rss: float  # MiB resident
    anon: float  # MiB of it that the process allocated (RssAnon: heap, stacks), without mapped files

    def __str__(self) -> str:
        return f"RSS {self.rss:.1f} MiB, {self.anon:.1f} MiB of it anonymous"


def idle_memory(service: ServiceProcess) -> Memory:
    """The service's memory once it has been idle for a few dispatcher polls."""
    time.sleep(SETTLE_SECONDS)
    return Memory(service.rss_mib(), service.anon_rss_mib())


@dataclass(frozen=True)
class Ceiling:
    rate: float
    cpu_us: float  # CPU microseconds the loop spends per post


def measure_ceiling(receiver: ReceiverProcess, args: argparse.Namespace) -> Ceiling:
    """A warm-up, then the median of `--ceiling-rounds` rounds (the machine may be busy with other work)."""
    event = sample_event("ceiling")
    body = render_event(WebhookFormat.RAW, event)
    kind = event_kind(event)
    asyncio.run(post_loop(receiver.url, body, kind, SECRET, min(2_000, args.ceiling_posts), args.concurrency))
    rounds = []
    for _ in range(args.ceiling_rounds):
        receiver.reset()
        posted, seconds, cpu = asyncio.run(
            post_loop(receiver.url, body, kind, SECRET, args.ceiling_posts, args.concurrency)
        )
        arrived = receiver.count()
        if arrived != args.ceiling_posts or posted != args.ceiling_posts:
            say(f"ceiling: {posted} posts answered 200 and {arrived} arrived, of {args.ceiling_posts}")
        rounds.append(Ceiling(posted / seconds, cpu / posted * 1e6))
    rounds.sort(key=lambda r: r.rate)
    median = rounds[len(rounds) // 2]
    say(
        f"ceiling: rounds of {args.ceiling_posts:,} posts at {', '.join(f'{r.rate:,.0f}' for r in rounds)}/s; "
        f"median {median.rate:,.0f}/s, {median.cpu_us:.0f} us CPU per post"
    )
    return median


@dataclass(frozen=True)
class Drain:
    rate: float
    cpu_us: float  # service CPU microseconds per delivery
    peak_rss: float
    end_rss: float


def measure_drain(receiver: ReceiverProcess, folder: str, args: argparse.Namespace, hooks: int) -> Drain:
    """Deliveries per second from the first to the last arrival, with the service's CPU and memory."""
    database = f"sqlite:///{folder}/drain-{hooks}.db"
    clock = time.perf_counter()
    home = Path(folder) / f"drain-{hooks}"
    prefill(database, home, args.drain, receiver.url, SECRET, due_in=0.0, hooks=hooks)
    say(
        f"drain: {args.drain:,} deliveries to {hooks} webhook(s) queued in "
        f"{time.perf_counter() - clock:.1f}s; starting the service"
    )
    receiver.reset()
    service = ServiceProcess(database, home, args.service_arg, profile_path(args, f"drain-{hooks}"))
    timeout = max(60.0, args.drain / 200)
    try:
        receiver.wait_for(1, timeout)
        cpu_start, count_start = service.cpu_seconds(), receiver.count()
        receiver.wait_for(args.drain, timeout)
        cpu = service.cpu_seconds() - cpu_start
        cpu_count = receiver.count() - count_start
        time.sleep(DUPLICATES_GRACE)
        end_rss, peak_rss = service.rss_mib(), service.peak_rss_mib()
        receipts = receiver.receipts()
    finally:
        service.stop()
        warn_about(service, "drain")
    unique = len(set(receipts.ids))
    if unique < args.drain:
        say(f"drain: only {unique:,} of {args.drain:,} deliveries arrived")
    spread = receipts.times[-1] - receipts.times[0] if len(receipts.times) > 1 else math.nan
    drain = Drain((len(receipts.times) - 1) / spread, cpu / max(1, cpu_count) * 1e6, peak_rss, end_rss)
    say(
        f"drain: {len(receipts.ids):,} requests ({unique:,} unique) in {spread:.2f}s = {drain.rate:,.0f}/s, "
        f"{drain.cpu_us:.0f} us service CPU per delivery; first arrival "
        f"{receipts.times[0] - service.started:.2f}s after the service was spawned"
    )
    return drain


@dataclass(frozen=True)
class LiveFigures:
    events: int
    failures: int
    failure_codes: str
    deliveries: int
    received: int
    duplicates: int
    accepted_per_second: float
    delivered_per_second: float
    cpu_us: float  # service CPU microseconds per delivery, publishing included
    rpc_p50_ms: float
    rpc_p99_ms: float
    receipt_p50_ms: float
    receipt_p99_ms: float


def run_live(
    name: str,
    service: ServiceProcess,
    receiver: ReceiverProcess,
    per_event: int,
    publishing: Coroutine[Any, Any, Published],
) -> LiveFigures:
    """Publishes, waits until the receiver has every delivery the answers named, and works out the figures."""
    receiver.reset()
    cpu_start = service.cpu_seconds()
    published = asyncio.run(publishing)
    expected = len(published.sent)
    if expected != published.events * per_event:
        say(f"{name}: {published.events} events queued {expected} deliveries, expected {per_event} each")
    receiver.wait_for(expected, timeout=max(60.0, expected / 100))
    cpu = service.cpu_seconds() - cpu_start
    time.sleep(DUPLICATES_GRACE)
    receipts = receiver.receipts()
    arrival: dict[str, float] = {}
    for delivery_id, at in zip(receipts.ids, receipts.times, strict=True):
        arrival.setdefault(delivery_id, at)
    latencies = [arrival[d] - sent for d, sent in published.sent.items() if d in arrival]
    last = max((arrival[d] for d in published.sent if d in arrival), default=math.nan)
    figures = LiveFigures(
        events=published.events,
        failures=sum(published.failures.values()),
        failure_codes=", ".join(f"{count} {code}" for code, count in published.failures.most_common()),
        deliveries=expected,
        received=len(latencies),
        duplicates=len(receipts.ids) - len(arrival),
        accepted_per_second=published.events / published.seconds,
        delivered_per_second=len(latencies) / (last - published.first_send),
        cpu_us=cpu / max(1, len(latencies)) * 1e6,
        rpc_p50_ms=percentile(published.latencies, 0.5) * 1000,
        rpc_p99_ms=percentile(published.latencies, 0.99) * 1000,
        receipt_p50_ms=percentile(latencies, 0.5) * 1000,
        receipt_p99_ms=percentile(latencies, 0.99) * 1000,
    )
    failed = f": {figures.failure_codes}" if figures.failures else ""
    say(
        f"{name}: {figures.events:,} events ({figures.failures} RPCs failed{failed}) in {published.seconds:.2f}s = "
        f"{figures.accepted_per_second:,.0f}/s; {figures.received:,}/{figures.deliveries:,} deliveries at "
        f"{figures.delivered_per_second:,.0f}/s, {figures.cpu_us:.0f} us service CPU per delivery; "
        f"publish p50/p99 {figures.rpc_p50_ms:.1f}/{figures.rpc_p99_ms:.1f} ms; "
        f"receipt p50/p99 {figures.receipt_p50_ms:.0f}/{figures.receipt_p99_ms:.0f} ms"
    )
    return figures


@dataclass(frozen=True)
class Live:
    one: LiveFigures
    ten: LiveFigures
    paced: LiveFigures
    peak_rss: float


def measure_live(receiver: ReceiverProcess, folder: str, args: argparse.Namespace) -> Live:
    """The three live runs on one service that starts with an empty database, and its peak RSS over them."""
    home = Path(folder) / "live"
    service = ServiceProcess(f"sqlite:///{folder}/live.db", home, args.service_arg, profile_path(args, "live"))
    try:
        target, metadata = service.target, service.metadata
        asyncio.run(create_webhooks(target, metadata, "bench-one", 1, receiver.url, SECRET))
        asyncio.run(create_webhooks(target, metadata, "bench-ten", 10, receiver.url, SECRET))
        one = run_live(
            "live, 1 webhook/event",
            service,
            receiver,
            1,
            publish_burst(target, metadata, "bench-one", args.events_one, args.publishers),
        )
        ten = run_live(
            "live, 10 webhooks/event",
            service,
            receiver,
            10,
            publish_burst(target, metadata, "bench-ten", args.events_ten, args.publishers),
        )
        paced = run_live(
            f"live, {args.rate:g} events/s",
            service,
            receiver,
            1,
            publish_paced(target, metadata, "bench-one", args.rate, args.paced_seconds),
        )
        peak_rss = service.peak_rss_mib()
    finally:
        service.stop()
        warn_about(service, "live")
    return Live(one, ten, paced, peak_rss)


def measure_backlog(receiver: ReceiverProcess, folder: str, args: argparse.Namespace) -> tuple[Memory, float]:
    """Memory of an idle service holding `--pending` deliveries that are queued but not yet due, and its peak."""
    database = f"sqlite:///{folder}/backlog.db"
    clock = time.perf_counter()
    home = Path(folder) / "backlog"
    prefill(database, home, args.pending, receiver.url, SECRET, due_in=86_400.0, hooks=10)
    say(f"memory: {args.pending:,} deliveries queued (due tomorrow) in {time.perf_counter() - clock:.1f}s")
    receiver.reset()
    service = ServiceProcess(database, home, args.service_arg)
    try:
        backlog = idle_memory(service)
        peak = service.peak_rss_mib()
    finally:
        service.stop()
        warn_about(service, "memory")
    if receiver.count():
        say(f"memory: {receiver.count()} deliveries were sent early")
    say(f"memory: service idle with {args.pending:,} pending: {backlog} (peak RSS {peak:.1f} MiB)")
    return backlog, peak


def profile_path(args: argparse.Namespace, phase: str) -> str:
    if not args.profile:
        return ""
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    return str(Path(args.profile) / f"{phase}.txt")


def warn_about(service: ServiceProcess, phase: str) -> None:
    errors = service.errors()
    for line in errors[:5]:
        say(f"{phase}: service logged: {line}")
    if len(errors) > 5:
        say(f"{phase}: ... and {len(errors) - 5} more such lines")


def live_rows(label: str, figures: LiveFigures, ceiling: float, target: float | None) -> list[Row]:
    ratio = figures.delivered_per_second / ceiling
    rows = [
        Row(f"{label}: events accepted", f"{figures.accepted_per_second:,.0f}/s"),
        Row(
            f"{label}: deliveries completed",
            f"{figures.delivered_per_second:,.0f}/s = {ratio:.2f} x ceiling",
            f">= {target:g} x ceiling" if target is not None else "",
            ratio >= target if target is not None else None,
        ),
        Row(f"{label}: service CPU per delivery", f"{figures.cpu_us:.0f} us"),
        Row(f"{label}: publish RPC p50 / p99", f"{figures.rpc_p50_ms:.1f} / {figures.rpc_p99_ms:.1f} ms"),
        Row(
            f"{label}: publish-to-receipt p50 / p99", f"{figures.receipt_p50_ms:.0f} / {figures.receipt_p99_ms:.0f} ms"
        ),
    ]
    rows += problems(label, figures)
    return rows


def problems(label: str, figures: LiveFigures) -> list[Row]:
    if figures.received == figures.deliveries and not figures.failures and not figures.duplicates:
        return []
    return [
        Row(
            f"{label}: problems",
            f"{figures.failures} RPCs failed ({figures.failure_codes or 'none'}), "
            f"{figures.deliveries - figures.received} deliveries missing, {figures.duplicates} duplicates",
            "none",
            False,
        )
    ]


def paced_rows(rate: float, paced: LiveFigures) -> list[Row]:
    label = f"paced {rate:g} events/s"
    return [
        Row(f"{label}: events accepted", f"{paced.accepted_per_second:,.0f}/s"),
        Row(
            f"{label}: publish RPC p50 / p99",
            f"{paced.rpc_p50_ms:.1f} / {paced.rpc_p99_ms:.1f} ms",
            f"p99 < {PUBLISH_P99_TARGET_MS:g} ms",
            paced.rpc_p99_ms < PUBLISH_P99_TARGET_MS,
        ),
        Row(f"{label}: publish-to-receipt p50 / p99", f"{paced.receipt_p50_ms:.0f} / {paced.receipt_p99_ms:.0f} ms"),
        *problems(label, paced),
    ]


def measure_empty(folder: str, args: argparse.Namespace) -> Memory:
    """Memory of an idle service on an empty database."""
    service = ServiceProcess(f"sqlite:///{folder}/empty.db", Path(folder) / "empty", args.service_arg)
    try:
        return idle_memory(service)
    finally:
        service.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    phases = {phase.strip() for phase in args.phases.split(",") if phase.strip()}
    unknown = phases - {"drain", "live", "memory"}
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    began = time.perf_counter()
    machine_before, own_before = machine_busy_seconds(), own_busy_seconds()
    receiver = ReceiverProcess()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="webhooks-bench-") as folder:
            ceiling = measure_ceiling(receiver, args)
            rows.append(
                Row(
                    "ceiling: bare aiohttp loop",
                    f"{ceiling.rate:,.0f} posts/s, {ceiling.cpu_us:.0f} us CPU/post",
                    f"{args.concurrency} in flight",
                )
            )
            peaks: list[str] = []
            for hooks in [int(count) for count in args.drain_webhooks.split(",")] if "drain" in phases else []:
                drain = measure_drain(receiver, folder, args, hooks)
                label = f"drain: {args.drain:,} queued, {hooks} webhook(s)"
                rows += [
                    Row(
                        f"{label}: deliveries completed",
                        f"{drain.rate:,.0f}/s = {drain.rate / ceiling.rate:.2f} x ceiling",
                        f">= {DRAIN_TARGET:g} x ceiling",
                        drain.rate / ceiling.rate >= DRAIN_TARGET,
                    ),
                    Row(f"{label}: service CPU per delivery", f"{drain.cpu_us:.0f} us"),
                    Row(f"{label}: RSS at the end", f"{drain.end_rss:.1f} MiB"),
                ]
                peaks.append(f"drain-{hooks} {drain.peak_rss:.1f}")
            if "live" in phases:
                live = measure_live(receiver, folder, args)
                rows += live_rows("live 1 webhook", live.one, ceiling.rate, LIVE_ONE_TARGET)
                rows += live_rows("live 10 webhooks", live.ten, ceiling.rate, None)
                rows += paced_rows(args.rate, live.paced)
                peaks.append(f"live {live.peak_rss:.1f}")
            if "memory" in phases:
                empty = measure_empty(folder, args)
                backlog, backlog_peak = measure_backlog(receiver, folder, args)
                peaks.append(f"backlog {backlog_peak:.1f}")
                growth = backlog.anon - empty.anon
                rows.append(Row("memory idle, empty database", str(empty)))
                rows.append(
                    Row(
                        f"memory idle, {args.pending:,} pending",
                        f"{backlog} ({growth:+.1f} MiB anonymous)",
                        f"flat: anonymous +{FLAT_MEMORY_MIB:g} MiB at most",
                        growth <= FLAT_MEMORY_MIB,
                    )
                )
            if peaks:
                rows.append(Row("peak RSS (VmHWM) by phase", " / ".join(peaks) + " MiB"))
    finally:
        receiver.close()
    elapsed = time.perf_counter() - began
    others = (machine_busy_seconds() - machine_before) - (own_busy_seconds() - own_before)
    share = max(0.0, others) / (elapsed * (os.cpu_count() or 1))
    rows.append(
        Row(
            "CPU used by other processes during the run",
            f"{share:.0%} of {os.cpu_count()} CPUs",
            "~0% for clean figures",
        )
    )
    if share > 0.05:
        say(f"other processes used {share:.0%} of the machine's CPU during the run: the figures are pessimistic")
    print()
    print(table(rows))
    missed = sum(r.met is False for r in rows)
    print(f"\n{missed} target(s) missed; the run took {elapsed:.0f}s")
    return 1 if args.strict and missed else 0
