"""The phases of `make bench` and the table they end with.

Once: the ceiling, a bare aiohttp loop posting the service's signed body to the receiver; and, before the
live phase, the gRPC floor, the live phase's publisher against a server that answers at once (bench/floor.py).
Then, for each mode of `--modes`:

1. drain: deliveries queued in the database before the service starts, delivered by its dispatcher(s);
2. live: events published over gRPC as fast as the service takes them, with one webhook per event, then ten;
3. paced: events published at a steady rate (`--rate`), with the publish and publish-to-receipt latencies;
4. memory: the service's resident size with an empty database and with a large backlog pending;
5. backlog, only when `--backlog N` asks for it (a million rows take minutes to queue): a fresh webhook's
   drain beside N deliveries parked on an inactive webhook, between two of the same drain without them, and
   the service's resident size with the N pending.

Modes: `sqlite` is one `webhooks serve` with its built-in dispatcher, on a SQLite file per phase.
`postgresql-N` is an API-only `webhooks serve --dispatch-concurrency 0` plus N `webhooks dispatch` processes,
on a fresh database per phase of one throwaway PostgreSQL cluster that the bench starts once and destroys at
the end. With several PostgreSQL modes, the table ends with how their throughput scales with the dispatchers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.ceiling import post_loop
from bench.floor import Floor, measure_floor
from bench.live import Published, create_webhooks, publish_burst, publish_paced
from bench.postgres import PostgresServer
from bench.prefill import activate, prefill, sample_event
from bench.receiver import ReceiverProcess
from bench.report import Heading, Row, percentile, table
from bench.service import Deployment, Memory, PerProcess, Topology, cpu_seconds
from webhook_service.domain.model import WebhookFormat
from webhook_service.domain.payloads import event_kind, render_event

SECRET = "bench-secret"
# The targets of issue 14, for a 2-core machine.
# Drain, deliveries per second over the ceiling, by the webhooks the backlog is spread over.
DRAIN_TARGETS = {1: 0.8, 10: 0.9}
# Live, deliveries per second over the ceiling, by the webhooks each event goes to.
LIVE_TARGETS = {1: 0.4, 10: 0.7}
# Service CPU per event published to one webhook.
PUBLISH_CPU_TARGET_US = 350.0
PUBLISH_P99_TARGET_MS = 10.0
RECEIPT_P99_TARGET_MS = 50.0
# A fresh webhook's drain beside a parked backlog, over the same drain without it.
PARKED_DRAIN_TARGET = 0.9
PARKED_RSS_TARGET_MIB = 250.0
# PostgreSQL drain with two dispatchers over with one.
SCALING_TARGET = 1.7
# "Memory flat": a backlog of pending deliveries may not grow the service by more than this.
FLAT_MEMORY_MIB = 10.0
SETTLE_SECONDS = 3.0
# After the last expected delivery, time for any duplicate to show up before the receipts are read.
DUPLICATES_GRACE = 0.3
# Due tomorrow: queued, but not for the dispatchers yet.
NOT_DUE = 86_400.0
DEFAULT_MODES = "sqlite,postgresql-1,postgresql-2"
DEFAULT_PHASES = "drain,live,paced,memory"
PHASES = ("drain", "live", "paced", "memory", "backlog")
POSTGRESQL_MODE = re.compile(r"postgresql-([1-9][0-9]*)")


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


def exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument(
        "--modes",
        default=DEFAULT_MODES,
        help="comma-separated: sqlite, and postgresql-N for N `webhooks dispatch` processes (default %(default)s)",
    )
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
    parser.add_argument("--rate", type=float, default=500.0, help="events per second of the paced run")
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="length of the paced run")
    parser.add_argument("--pending", type=int, default=100_000, help="deliveries pending in the memory run")
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        metavar="N",
        help="adds the backlog phase: N deliveries parked on an inactive webhook while a fresh one drains "
        "--drain deliveries (the issue's figure is for 1000000)",
    )
    postgresql = parser.add_argument_group(
        "PostgreSQL modes",
        "sizes of the postgresql-N modes when they differ from the SQLite mode's (default: the same)",
    )
    postgresql.add_argument("--pg-drain", type=int, help="--drain of the PostgreSQL modes")
    postgresql.add_argument("--pg-events-one", type=int, help="--events-one of the PostgreSQL modes")
    postgresql.add_argument("--pg-events-ten", type=int, help="--events-ten of the PostgreSQL modes")
    postgresql.add_argument("--pg-paced-seconds", type=float, help="--paced-seconds of the PostgreSQL modes")
    postgresql.add_argument("--pg-pending", type=int, help="--pending of the PostgreSQL modes")
    parser.add_argument(
        "--service-arg",
        action="append",
        default=[],
        help="extra `webhooks serve` flag, repeatable; e.g. --service-arg=--webhook-concurrency=64",
    )
    parser.add_argument(
        "--dispatcher-arg",
        action="append",
        default=[],
        help="extra `webhooks dispatch` flag for the PostgreSQL modes, repeatable; "
        "e.g. --dispatcher-arg=--database-pool-size=8",
    )
    parser.add_argument(
        "--phases",
        default=DEFAULT_PHASES,
        help=f"comma-separated phases to run after the ceiling, of {', '.join(PHASES)} (default %(default)s; "
        "--backlog adds backlog)",
    )
    parser.add_argument("--profile", default="", help="folder for py-spy profiles of the service (collapsed stacks)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Mode:
    """An engine and how the service is deployed on it."""

    name: str
    engine: str  # "sqlite" or "postgresql"
    topology: Topology

    @property
    def postgresql(self) -> bool:
        return self.engine == "postgresql"


def parse_modes(text: str, service_args: Sequence[str] = ()) -> list[Mode]:
    """The modes `--modes` names; the SQLite mode's server starts as many dispatcher processes as
    `service_args` say (--dispatch-processes), 1 unless they say otherwise."""
    beside = 1
    words = [part for arg in service_args for part in arg.split("=", 1)]
    for flag, value in itertools.pairwise(words):
        if flag == "--dispatch-processes":
            beside = int(value)
    modes = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        found = POSTGRESQL_MODE.fullmatch(name)
        if name == "sqlite":
            modes.append(Mode(name, "sqlite", Topology(0, beside)))
        elif found:
            modes.append(Mode(name, "postgresql", Topology(int(found[1]))))
        else:
            raise SystemExit(f"unknown mode {name!r}: sqlite or postgresql-N (N dispatcher processes)")
    if len({mode.name for mode in modes}) != len(modes):
        raise SystemExit(f"a mode is named twice in --modes {text}")
    return modes


@dataclass(frozen=True)
class Sizes:
    drain: int
    events_one: int
    events_ten: int
    paced_seconds: float
    pending: int

    def __str__(self) -> str:
        return (
            f"drain {self.drain:,} queued; live {self.events_one:,} events with 1 webhook, "
            f"{self.events_ten:,} with 10; paced {self.paced_seconds:g}s; memory {self.pending:,} pending"
        )


def sizes_for(mode: Mode, args: argparse.Namespace) -> Sizes:
    """The SQLite mode's sizes, with those given for the PostgreSQL modes in their place there."""

    def size(name: str) -> Any:
        own = getattr(args, "pg_" + name) if mode.postgresql else None
        return getattr(args, name) if own is None else own

    return Sizes(size("drain"), size("events_one"), size("events_ten"), size("paced_seconds"), size("pending"))


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far, read at one moment."""

    wall: float
    service: PerProcess  # each process of the deployment
    database: float  # the PostgreSQL server, all its processes (0 on SQLite, which runs inside the service)
    machine: float  # every process on the machine


@dataclass(frozen=True)
class CpuUse:
    """CPU microseconds per delivery between two samples, and how busy the machine was meanwhile."""

    service: PerProcess
    database: float
    machine_busy: float  # CPUs busy on average

    @property
    def service_us(self) -> float:
        return self.service.total

    @classmethod
    def between(cls, start: CpuSample, end: CpuSample, deliveries: int) -> CpuUse:
        per_delivery = 1e6 / max(1, deliveries)
        service = [(b - a) * per_delivery for a, b in zip(start.service.values, end.service.values, strict=True)]
        return cls(
            PerProcess(tuple(service)),
            (end.database - start.database) * per_delivery,
            (end.machine - start.machine) / max(1e-9, end.wall - start.wall),
        )


@dataclass(frozen=True)
class Ceiling:
    rate: float
    cpu_us: float  # CPU microseconds the loop spends per post
    receiver_us: float  # and the receiver


class ModeRun:
    """What the phases of one mode share: the receiver, where each phase's database and home folder are,
    and how the mode's deployment starts. Log lines of the PostgreSQL modes are tagged with the mode."""

    def __init__(
        self,
        mode: Mode,
        args: argparse.Namespace,
        receiver: ReceiverProcess,
        folder: str,
        ceiling: Ceiling,
        floor: Floor | None,
        server: PostgresServer | None,
    ) -> None:
        assert (server is not None) == mode.postgresql
        self.mode = mode
        self.args = args
        self.sizes = sizes_for(mode, args)
        self.receiver = receiver
        self.folder = folder
        self.ceiling = ceiling
        self.floor = floor
        self.server = server
        self.tag = f"{mode.name}: " if mode.postgresql else ""

    def say(self, message: str) -> None:
        say(self.tag + message)

    def database(self, phase: str) -> str:
        if self.server is not None:
            return self.server.new_database()
        return f"sqlite:///{self.folder}/{phase}.db"

    def home(self, phase: str) -> Path:
        return Path(self.folder) / (f"{self.mode.name}-{phase}" if self.mode.postgresql else phase)

    def deploy(self, database: str, home: Path, profile: bool = True) -> Deployment:
        prefix = ""
        if profile and self.args.profile:
            Path(self.args.profile).mkdir(parents=True, exist_ok=True)
            prefix = str(Path(self.args.profile) / home.name)
        return Deployment(database, home, self.mode.topology, self.args.service_arg, self.args.dispatcher_arg, prefix)

    def cpu_sample(self, service: Deployment) -> CpuSample:
        """The CPU used so far by the service's processes, the PostgreSQL server and the whole machine."""
        database = self.server.cpu_seconds() if self.server is not None else 0.0
        return CpuSample(time.perf_counter(), service.cpu_seconds(), database, machine_busy_seconds())

    def cpu_text(self, cpu: CpuUse) -> str:
        """For a log line: the CPU per delivery of the service and of the PostgreSQL server, the machine's use."""
        database = f", {cpu.database:.0f} us PostgreSQL CPU" if self.server is not None else ""
        return f"{cpu.service_us:.0f} us service CPU{database} per delivery, {cpu.machine_busy:.1f} CPUs busy"

    def cpu_rows(self, label: str, cpu: CpuUse, target_us: float | None = None) -> list[Row]:
        """Service CPU per delivery: all processes together, and each one's share when there are several;
        the PostgreSQL server's beside it. `target_us` bounds all processes together."""
        target = f"<= {target_us:g} us" if target_us is not None else ""
        met = cpu.service_us <= target_us if target_us is not None else None
        if self.processes == 1:
            return [Row(f"{label}: service CPU per delivery", f"{cpu.service_us:.0f} us", target, met)]
        rows = [
            Row(
                f"{label}: service CPU per delivery, {self.processes} processes together",
                cpu.service.text("us", 0),
                target,
                met,
            ),
        ]
        if self.server is not None:
            rows.append(Row(f"{label}: PostgreSQL server CPU per delivery", f"{cpu.database:.0f} us"))
        return rows

    @property
    def processes(self) -> int:
        return self.mode.topology.processes

    def warn_about(self, service: Deployment, phase: str) -> None:
        errors = service.errors()
        for line in errors[:5]:
            self.say(f"{phase}: service logged: {line}")
        if len(errors) > 5:
            self.say(f"{phase}: ... and {len(errors) - 5} more such lines")


def idle_memory(service: Deployment) -> Memory:
    """The service's memory once it has been idle for a few dispatcher polls."""
    time.sleep(SETTLE_SECONDS)
    return service.memory()


def measure_ceiling(receiver: ReceiverProcess, args: argparse.Namespace) -> Ceiling:
    """A warm-up, then the median of `--ceiling-rounds` rounds (the machine may be busy with other work)."""
    event = sample_event("ceiling")
    body = render_event(WebhookFormat.RAW, event)
    kind = event_kind(event)
    asyncio.run(post_loop(receiver.url, body, kind, SECRET, min(2_000, args.ceiling_posts), args.concurrency))
    rounds = []
    for _ in range(args.ceiling_rounds):
        receiver.reset()
        received = cpu_seconds(receiver.pid)
        posted, seconds, cpu = asyncio.run(
            post_loop(receiver.url, body, kind, SECRET, args.ceiling_posts, args.concurrency)
        )
        arrived = receiver.count()
        received = cpu_seconds(receiver.pid) - received
        if arrived != args.ceiling_posts or posted != args.ceiling_posts:
            say(f"ceiling: {posted} posts answered 200 and {arrived} arrived, of {args.ceiling_posts}")
        rounds.append(Ceiling(posted / seconds, cpu / posted * 1e6, received / max(1, arrived) * 1e6))
    rounds.sort(key=lambda r: r.rate)
    median = rounds[len(rounds) // 2]
    say(
        f"ceiling: rounds of {args.ceiling_posts:,} posts at {', '.join(f'{r.rate:,.0f}' for r in rounds)}/s; "
        f"median {median.rate:,.0f}/s, {median.cpu_us:.0f} us CPU per post, the receiver {median.receiver_us:.0f}"
    )
    return median


def floor_row(floor: Floor, args: argparse.Namespace) -> Row:
    return Row(
        "gRPC floor: PublishEvent answered at once",
        f"{floor.rate:,.0f} calls/s; CPU per call: server {floor.server_us:.0f} us, publisher {floor.publisher_us:.0f}",
        f"{args.publishers} in flight",
    )


@dataclass(frozen=True)
class Drain:
    rate: float
    cpu: CpuUse
    peak_rss: PerProcess
    end_rss: PerProcess


@dataclass(frozen=True)
class Queued:
    """A drain's database, its deliveries queued, and the folder its service runs in."""

    phase: str
    database: str
    home: Path


def queue_drain(run: ModeRun, hooks: int, parked: int = 0, phase: str = "drain") -> Queued:
    """`--drain` deliveries queued for `hooks` fresh webhooks, due already.

    With separate dispatcher processes, they are queued for inactive webhooks, which are activated once every
    process is up, so that no dispatcher starts ahead of the others; the single SQLite service finds its
    backlog due as it starts. `parked` more deliveries, due already, wait beside them on a webhook of another
    organization that stays inactive: work the dispatchers must pass over. `phase` names the run's database."""
    count = run.sizes.drain
    phase = f"{phase}-{hooks}" + (f"-parked-{parked}" if parked else "")
    database = run.database(phase)
    separate = run.mode.topology.dispatchers > 0
    clock = time.perf_counter()
    home = run.home(phase)
    if parked:
        prefill(database, home, parked, run.receiver.url, SECRET, due_in=0.0, active=False, organization="parked")
        run.say(f"{phase}: {parked:,} deliveries parked on an inactive webhook in {time.perf_counter() - clock:.1f}s")
        clock = time.perf_counter()
    prefill(database, home, count, run.receiver.url, SECRET, due_in=0.0, hooks=hooks, active=not separate)
    run.say(f"{phase}: {count:,} deliveries to {hooks} webhook(s) queued in {time.perf_counter() - clock:.1f}s")
    return Queued(phase, database, home)


def measure_drain(run: ModeRun, queued: Queued) -> Drain:
    """Deliveries per second from the first to the last arrival, with the service's CPU and memory."""
    count = run.sizes.drain
    receiver = run.receiver
    phase, database, home = queued.phase, queued.database, queued.home
    separate = run.mode.topology.dispatchers > 0
    # What the queueing wrote goes to disk first, rather than while the service runs: the kernel writes back
    # a large prefill for a while after it, and the service's own syncs wait behind that.
    os.sync()
    run.say(f"{phase}: starting the service")
    receiver.reset()
    service = run.deploy(database, home)
    timeout = max(60.0, count / 200)
    try:
        released = service.started
        if separate:
            activate(database)
            released = time.time()
        receiver.wait_for(1, timeout)
        cpu_start, count_start = run.cpu_sample(service), receiver.count()
        receiver.wait_for(count, timeout)
        cpu_end = run.cpu_sample(service)
        cpu_count = receiver.count() - count_start
        time.sleep(DUPLICATES_GRACE)
        end_rss, peak_rss = service.rss_mib(), service.peak_rss_mib()
        receipts = receiver.receipts()
    finally:
        service.stop()
        run.warn_about(service, "drain")
    unique = len(set(receipts.ids))
    if unique < count:
        run.say(f"{phase}: only {unique:,} of {count:,} deliveries arrived")
    spread = receipts.times[-1] - receipts.times[0] if len(receipts.times) > 1 else math.nan
    drain = Drain((len(receipts.times) - 1) / spread, CpuUse.between(cpu_start, cpu_end, cpu_count), peak_rss, end_rss)
    since = "the webhooks were activated" if separate else "the service was spawned"
    run.say(
        f"{phase}: {len(receipts.ids):,} requests ({unique:,} unique) in {spread:.2f}s = {drain.rate:,.0f}/s, "
        f"{run.cpu_text(drain.cpu)}; first arrival {receipts.times[0] - released:.2f}s after {since}; "
        f"RSS at the end {drain.end_rss}, peak {drain.peak_rss}"
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
    cpu: CpuUse  # per delivery, publishing included
    rpc_p50_ms: float
    rpc_p99_ms: float
    receipt_p50_ms: float
    receipt_p99_ms: float


def run_live(
    run: ModeRun,
    name: str,
    service: Deployment,
    per_event: int,
    publishing: Coroutine[Any, Any, Published],
) -> LiveFigures:
    """Publishes, waits until the receiver has every delivery the answers named, and works out the figures."""
    receiver = run.receiver
    receiver.reset()
    cpu_start = run.cpu_sample(service)
    published = asyncio.run(publishing)
    expected = len(published.sent)
    if expected != published.events * per_event:
        run.say(f"{name}: {published.events} events queued {expected} deliveries, expected {per_event} each")
    receiver.wait_for(expected, timeout=max(60.0, expected / 100))
    cpu_end = run.cpu_sample(service)
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
        cpu=CpuUse.between(cpu_start, cpu_end, len(latencies)),
        rpc_p50_ms=percentile(published.latencies, 0.5) * 1000,
        rpc_p99_ms=percentile(published.latencies, 0.99) * 1000,
        receipt_p50_ms=percentile(latencies, 0.5) * 1000,
        receipt_p99_ms=percentile(latencies, 0.99) * 1000,
    )
    failed = f": {figures.failure_codes}" if figures.failures else ""
    run.say(
        f"{name}: {figures.events:,} events ({figures.failures} RPCs failed{failed}) in {published.seconds:.2f}s = "
        f"{figures.accepted_per_second:,.0f}/s; {figures.received:,}/{figures.deliveries:,} deliveries at "
        f"{figures.delivered_per_second:,.0f}/s, {run.cpu_text(figures.cpu)}; "
        f"publish p50/p99 {figures.rpc_p50_ms:.1f}/{figures.rpc_p99_ms:.1f} ms; "
        f"receipt p50/p99 {figures.receipt_p50_ms:.0f}/{figures.receipt_p99_ms:.0f} ms"
    )
    return figures


@dataclass(frozen=True)
class Live:
    one: LiveFigures
    ten: LiveFigures
    peak_rss: PerProcess


def measure_live(run: ModeRun) -> Live:
    """The two bursts on one service that starts with an empty database, and its peak RSS over them."""
    args, sizes, receiver = run.args, run.sizes, run.receiver
    service = run.deploy(run.database("live"), run.home("live"))
    try:
        target, metadata = service.target, service.metadata
        asyncio.run(create_webhooks(target, metadata, "bench-one", 1, receiver.url, SECRET))
        asyncio.run(create_webhooks(target, metadata, "bench-ten", 10, receiver.url, SECRET))
        one = run_live(
            run,
            "live, 1 webhook/event",
            service,
            1,
            publish_burst(target, metadata, "bench-one", sizes.events_one, args.publishers),
        )
        ten = run_live(
            run,
            "live, 10 webhooks/event",
            service,
            10,
            publish_burst(target, metadata, "bench-ten", sizes.events_ten, args.publishers),
        )
        peak_rss = service.peak_rss_mib()
    finally:
        service.stop()
        run.warn_about(service, "live")
    return Live(one, ten, peak_rss)


def measure_paced(run: ModeRun) -> tuple[LiveFigures, PerProcess]:
    """Events to one webhook at `--rate` per second on a service of its own, and its peak RSS."""
    args, receiver = run.args, run.receiver
    service = run.deploy(run.database("paced"), run.home("paced"))
    try:
        target, metadata = service.target, service.metadata
        asyncio.run(create_webhooks(target, metadata, "bench-paced", 1, receiver.url, SECRET))
        paced = run_live(
            run,
            f"paced, {args.rate:g} events/s",
            service,
            1,
            publish_paced(target, metadata, "bench-paced", args.rate, run.sizes.paced_seconds),
        )
        peak_rss = service.peak_rss_mib()
    finally:
        service.stop()
        run.warn_about(service, "paced")
    return paced, peak_rss


def measure_backlog(run: ModeRun) -> tuple[Memory, PerProcess]:
    """Memory of an idle service holding `--pending` deliveries that are queued but not yet due, and its peak."""
    pending, receiver = run.sizes.pending, run.receiver
    database = run.database("backlog")
    clock = time.perf_counter()
    home = run.home("backlog")
    prefill(database, home, pending, receiver.url, SECRET, due_in=NOT_DUE, hooks=10)
    run.say(f"memory: {pending:,} deliveries queued (due tomorrow) in {time.perf_counter() - clock:.1f}s")
    receiver.reset()
    service = run.deploy(database, home, profile=False)
    try:
        backlog = idle_memory(service)
        peak = service.peak_rss_mib()
    finally:
        service.stop()
        run.warn_about(service, "memory")
    if receiver.count():
        run.say(f"memory: {receiver.count()} deliveries were sent early")
    run.say(f"memory: service idle with {pending:,} pending: {backlog} (peak RSS {peak})")
    return backlog, peak


def measure_empty(run: ModeRun) -> Memory:
    """Memory of an idle service on an empty database."""
    service = run.deploy(run.database("empty"), run.home("empty"), profile=False)
    try:
        return idle_memory(service)
    finally:
        service.stop()


def live_rows(run: ModeRun, label: str, figures: LiveFigures, target: float, cpu_target_us: float | None) -> list[Row]:
    ratio = figures.delivered_per_second / run.ceiling.rate
    rows = [
        Row(f"{label}: events accepted", f"{figures.accepted_per_second:,.0f}/s"),
        Row(
            f"{label}: deliveries completed",
            f"{figures.delivered_per_second:,.0f}/s = {ratio:.2f} x ceiling",
            f">= {target:g} x ceiling",
            ratio >= target,
        ),
        *run.cpu_rows(label, figures.cpu, cpu_target_us),
        Row(f"{label}: publish RPC p50 / p99", f"{figures.rpc_p50_ms:.1f} / {figures.rpc_p99_ms:.1f} ms"),
        Row(
            f"{label}: publish-to-receipt p50 / p99", f"{figures.receipt_p50_ms:.0f} / {figures.receipt_p99_ms:.0f} ms"
        ),
    ]
    rows += problems(label, figures)
    return rows


def live_bounds(run: ModeRun, drain: Drain) -> list[Row]:
    """What live publishing to one webhook could reach if the service did nothing for an event beyond gRPC's
    own work: every delivery still costs a PublishEvent call on both sides (the floor), a post to the receiver,
    and its dispatch (with PostgreSQL's share) at least as much as in the drain to one webhook."""
    floor, ceiling = run.floor, run.ceiling
    if floor is None:
        return []
    least = floor.server_us + drain.cpu.service_us
    dispatch = drain.cpu.service_us + drain.cpu.database
    cpus = os.cpu_count() or 1
    spent = floor.server_us + floor.publisher_us + ceiling.receiver_us + dispatch
    most = cpus * 1e6 / spent
    return [
        Row(
            "live 1 webhook: service CPU per delivery, with no work per event",
            f"{least:.0f} us at least (gRPC floor {floor.server_us:.0f} + drain {drain.cpu.service_us:.0f})",
        ),
        Row(
            "live 1 webhook: deliveries completed, with no work per event",
            f"{most:,.0f}/s = {most / ceiling.rate:.2f} x ceiling at most ({cpus} CPUs / {spent:.0f} us)",
        ),
    ]


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
        Row(
            f"{label}: publish-to-receipt p50 / p99",
            f"{paced.receipt_p50_ms:.0f} / {paced.receipt_p99_ms:.0f} ms",
            f"p99 < {RECEIPT_P99_TARGET_MS:g} ms",
            paced.receipt_p99_ms < RECEIPT_P99_TARGET_MS,
        ),
        *problems(label, paced),
    ]


def mode_heading(run: ModeRun) -> Heading:
    mode = run.mode
    if not mode.postgresql:
        return Heading(f"SQLite: {mode.topology}, a database file per phase")
    assert run.server is not None
    plural = "s" if mode.topology.dispatchers > 1 else ""
    sqlite = sizes_for(Mode("sqlite", "sqlite", Topology()), run.args)
    sizes = "same sizes as the SQLite mode" if run.sizes == sqlite else f"sizes unlike the SQLite mode's: {run.sizes}"
    return Heading(
        f"PostgreSQL {run.server.version}, {mode.topology.dispatchers} dispatcher{plural} ({mode.name}): "
        f"{mode.topology} on one database, a fresh one per phase\n"
        f"  a throwaway local cluster (fsync=off), its tables vacuumed and analyzed after each prefill; {sizes}\n"
        f"  service CPU and RSS: the sum over all {run.processes} processes, then each one's share"
    )


@dataclass
class ModeResult:
    rows: list[Row | Heading] = field(default_factory=list)
    drains: dict[int, Drain] = field(default_factory=dict)
    live: Live | None = None


def run_mode(run: ModeRun, phases: set[str]) -> ModeResult:
    """The phases of one mode and their rows of the table."""
    result = ModeResult([mode_heading(run)])
    rows = result.rows
    several = run.processes > 1
    peaks: list[tuple[str, PerProcess]] = []
    for hooks in [int(count) for count in run.args.drain_webhooks.split(",")] if "drain" in phases else []:
        drain = result.drains[hooks] = measure_drain(run, queue_drain(run, hooks))
        label = f"drain: {run.sizes.drain:,} queued, {hooks} webhook(s)"
        target = DRAIN_TARGETS.get(hooks)
        rows += [
            Row(
                f"{label}: deliveries completed",
                f"{drain.rate:,.0f}/s = {drain.rate / run.ceiling.rate:.2f} x ceiling",
                f">= {target:g} x ceiling" if target is not None else "",
                drain.rate / run.ceiling.rate >= target if target is not None else None,
            ),
            *run.cpu_rows(label, drain.cpu),
            Row(f"{label}: RSS at the end", str(drain.end_rss)),
        ]
        peaks.append((f"drain-{hooks}", drain.peak_rss))
    if "live" in phases:
        live = result.live = measure_live(run)
        rows += live_rows(run, "live 1 webhook", live.one, LIVE_TARGETS[1], PUBLISH_CPU_TARGET_US)
        if 1 in result.drains:
            rows += live_bounds(run, result.drains[1])
        rows += live_rows(run, "live 10 webhooks", live.ten, LIVE_TARGETS[10], None)
        peaks.append(("live", live.peak_rss))
    if "paced" in phases:
        paced, paced_peak = measure_paced(run)
        rows += paced_rows(run.args.rate, paced)
        peaks.append(("paced", paced_peak))
    if "memory" in phases:
        empty = measure_empty(run)
        backlog, backlog_peak = measure_backlog(run)
        peaks.append(("backlog", backlog_peak))
        growth = backlog.anon.total - empty.anon.total
        summed = f", summed over {run.processes} processes" if several else ""
        rows.append(Row(f"memory idle, empty database{summed}", str(empty)))
        if several:
            rows.append(Row("memory idle, empty database: RSS per process", f"{empty.rss.breakdown()} MiB"))
        rows.append(
            Row(
                f"memory idle, {run.sizes.pending:,} pending{summed}",
                f"{backlog} ({growth:+.1f} MiB anonymous)",
                f"flat: anonymous +{FLAT_MEMORY_MIB:g} MiB at most",
                growth <= FLAT_MEMORY_MIB,
            )
        )
        if several:
            rows.append(
                Row(f"memory idle, {run.sizes.pending:,} pending: RSS per process", f"{backlog.rss.breakdown()} MiB")
            )
    if "backlog" in phases:
        # Every database is queued before any drains, so the drains run back to back, not minutes apart on
        # either side of the parked backlog's queueing. The drain beside the backlog runs between two without
        # it, which it is held against: of two drains in a row on a busy machine, the second was the slower by
        # a fifth, whichever it was (1,000,000 parked: 0.76 x beside it second, 1.23 x beside it first).
        beside = queue_drain(run, 1, parked=run.args.backlog, phase="backlog")
        before, after = (queue_drain(run, 1, phase=f"backlog-{when}") for when in ("before", "after"))
        first, parked, last = (measure_drain(run, queued) for queued in (before, beside, after))
        rows += backlog_rows(run, (first, last), parked)
    if peaks and not several:
        rows.append(Row("peak RSS (VmHWM) by phase", " / ".join(f"{p} {f.total:.1f}" for p, f in peaks) + " MiB"))
    elif peaks:
        rows.append(
            Row("peak RSS (VmHWM) by phase, API process", " / ".join(f"{p} {f.api:.1f}" for p, f in peaks) + " MiB")
        )
        each = (" + ".join(f"{value:.1f}" for value in f.dispatchers) for _, f in peaks)
        rows.append(
            Row(
                "peak RSS (VmHWM) by phase, each dispatcher process",
                " / ".join(f"{p} {values}" for (p, _), values in zip(peaks, each, strict=True)) + " MiB",
            )
        )
    return result


def backlog_rows(run: ModeRun, alone: Sequence[Drain], beside: Drain) -> list[Row]:
    """The drain of a fresh webhook beside the parked backlog against the mean of the same drains without it,
    run back to back, and the service's memory with the backlog pending."""
    alone_rate = statistics.fmean(drain.rate for drain in alone)
    parked, ratio = run.args.backlog, beside.rate / alone_rate
    label = f"backlog: {run.sizes.drain:,} to a fresh webhook beside {parked:,} parked"
    growth = beside.end_rss.total - statistics.fmean(drain.end_rss.total for drain in alone)
    return [
        Row(
            f"{label}: deliveries completed",
            f"{beside.rate:,.0f}/s / {alone_rate:,.0f}/s without = {ratio:.2f} x",
            f">= {PARKED_DRAIN_TARGET:g} x without",
            ratio >= PARKED_DRAIN_TARGET,
        ),
        *run.cpu_rows(label, beside.cpu),
        Row(
            f"backlog: RSS with {parked:,} pending, at the end (peak)",
            f"{beside.end_rss.total:.1f} MiB ({beside.peak_rss.total:.1f}), {growth:+.1f} MiB against without",
            f"< {PARKED_RSS_TARGET_MIB:g} MiB, flat: +{FLAT_MEMORY_MIB:g} MiB at most",
            beside.peak_rss.total < PARKED_RSS_TARGET_MIB and growth <= FLAT_MEMORY_MIB,
        ),
    ]


@dataclass(frozen=True)
class Throughput:
    """Deliveries completed per second in one run, and the CPUs the machine kept busy meanwhile."""

    rate: float
    machine_busy: float


def throughputs(result: ModeResult) -> dict[str, Throughput]:
    found = {f"drain {hooks} webhook(s)": Throughput(d.rate, d.cpu.machine_busy) for hooks, d in result.drains.items()}
    if result.live is not None:
        for label, figures in (("live 1 webhook", result.live.one), ("live 10 webhooks", result.live.ten)):
            found[label] = Throughput(figures.delivered_per_second, figures.cpu.machine_busy)
    return found


def scaling_rows(results: Sequence[tuple[Mode, ModeResult]]) -> list[Row | Heading]:
    """Deliveries per second of each PostgreSQL mode divided by those of the one with the fewest dispatchers."""
    postgresql = sorted(
        ((mode, result) for mode, result in results if mode.postgresql), key=lambda pair: pair[0].topology.dispatchers
    )
    if len(postgresql) < 2:
        return []
    (base_mode, base), others = postgresql[0], postgresql[1:]
    fewer = throughputs(base)
    cpus = os.cpu_count() or 1
    rows: list[Row | Heading] = []
    for mode, result in others:
        rows.append(
            Heading(
                f"PostgreSQL scaling: deliveries completed per second with {mode.topology.dispatchers} dispatchers "
                f"divided by with {base_mode.topology.dispatchers} ({mode.name} / {base_mode.name}), "
                f"and the CPUs the whole machine kept busy in each (of {cpus})"
            )
        )
        # The target is for the drains, with two dispatchers against one.
        targeted = mode.topology.dispatchers == 2 and base_mode.topology.dispatchers == 1
        for label, more in throughputs(result).items():
            if label in fewer:
                was = fewer[label]
                target = targeted and label.startswith("drain")
                rows.append(
                    Row(
                        f"scaling, {label}",
                        f"{more.rate:,.0f}/s / {was.rate:,.0f}/s = {more.rate / was.rate:.2f} x "
                        f"({more.machine_busy:.1f} vs {was.machine_busy:.1f} CPUs busy)",
                        f">= {SCALING_TARGET:g} x" if target else "",
                        more.rate / was.rate >= SCALING_TARGET if target else None,
                    )
                )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    modes = parse_modes(args.modes, args.service_arg)
    phases = {phase.strip() for phase in args.phases.split(",") if phase.strip()}
    if args.backlog:
        phases.add("backlog")
    elif "backlog" in phases:
        raise SystemExit("the backlog phase needs --backlog N, the deliveries to park")
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    began = time.perf_counter()
    machine_before, own_before = machine_busy_seconds(), own_busy_seconds()
    server: PostgresServer | None = None
    # A SIGTERM unwinds like Ctrl-C, so that the services, the receiver and the cluster are stopped.
    previous_handler = signal.signal(signal.SIGTERM, exit_on_signal)
    receiver = ReceiverProcess()
    rows: list[Row | Heading] = []
    results: list[tuple[Mode, ModeResult]] = []
    try:
        if any(mode.postgresql for mode in modes):
            # Started first, so that a machine without PostgreSQL fails at once rather than after the SQLite mode.
            clock = time.perf_counter()
            server = PostgresServer()
            say(f"PostgreSQL {server.version} cluster started in {time.perf_counter() - clock:.1f}s")
        with tempfile.TemporaryDirectory(prefix="webhooks-bench-") as folder:
            ceiling = measure_ceiling(receiver, args)
            rows.append(
                Row(
                    "ceiling: bare aiohttp loop",
                    f"{ceiling.rate:,.0f} posts/s; CPU per post: loop {ceiling.cpu_us:.0f} us, "
                    f"receiver {ceiling.receiver_us:.0f}",
                    f"{args.concurrency} in flight",
                )
            )
            floor = measure_floor(args.events_one, args.publishers) if "live" in phases else None
            if floor is not None:
                say(f"gRPC floor: {floor.rate:,.0f} calls/s, {floor.server_us:.0f} us server CPU per call")
                rows.append(floor_row(floor, args))
            for mode in modes:
                run = ModeRun(mode, args, receiver, folder, ceiling, floor, server if mode.postgresql else None)
                result = run_mode(run, phases)
                results.append((mode, result))
                rows += result.rows
            rows += scaling_rows(results)
    finally:
        receiver.close()
        if server is not None:
            server.close()
        signal.signal(signal.SIGTERM, previous_handler)
    elapsed = time.perf_counter() - began
    # The PostgreSQL server is the bench's own load, but not its child: its CPU is counted apart.
    own = own_busy_seconds() - own_before + (server.cpu_seconds() if server is not None else 0.0)
    others = (machine_busy_seconds() - machine_before) - own
    share = max(0.0, others) / (elapsed * (os.cpu_count() or 1))
    rows.append(Heading("The run"))
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
    missed = sum(isinstance(r, Row) and r.met is False for r in rows)
    by_mode = ", ".join(
        f"{mode.name} {sum(r.met is False for r in result.rows if isinstance(r, Row))}" for mode, result in results
    )
    print(f"\n{missed} target(s) missed ({by_mode}); the run took {elapsed:.0f}s")
    return 1 if args.strict and missed else 0
