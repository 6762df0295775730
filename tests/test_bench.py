"""`python -m bench`, at a tiny size: its phases run, and its table shows each figure beside its target."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from bench.run import parse_args
from tests.support.readme import section

ROOT = Path(__file__).parent.parent


def bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_readme_commands_are_the_benchs_own() -> None:
    commands = re.findall(r"^\.venv/bin/python -m bench (.*)$", section("Benchmark"), re.M)
    assert len(commands) >= 4
    for command in commands:
        if command != "--help":
            parse_args(shlex.split(command))
    helped = bench("--help")
    assert helped.returncode == 0, helped.stderr
    assert "--backlog N" in helped.stdout


def test_drain_backlog_and_paced_phases_print_their_targets() -> None:
    done = bench(
        *(
            "--modes",
            "sqlite",
            "--phases",
            "drain,paced",
            "--backlog",
            "300",
            "--drain",
            "200",
            "--drain-webhooks",
            "1",
        ),
        *("--ceiling-posts", "100", "--ceiling-rounds", "1", "--rate", "50", "--paced-seconds", "1"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split("  ")[0]: line for line in done.stdout.splitlines()}
    assert ">= 0.8 x ceiling" in rows["drain: 200 queued, 1 webhook(s): deliveries completed"]
    paced = "paced 50 events/s"
    assert "p99 < 10 ms" in rows[f"{paced}: publish RPC p50 / p99"]
    assert "p99 < 50 ms" in rows[f"{paced}: publish-to-receipt p50 / p99"]
    assert f"{paced}: problems" not in rows, done.stdout
    parked = rows["backlog: 200 to a fresh webhook beside 300 parked: deliveries completed"]
    assert re.search(r"/s without = \d+\.\d\d x +>= 0\.9 x without", parked), parked
    assert "< 250 MiB, flat" in rows["backlog: RSS with 300 pending, at the end (peak)"]
    assert "deliveries arrived" not in done.stderr, done.stderr  # each drain delivered all it queued


def test_backlog_phase_needs_its_size() -> None:
    done = bench("--modes", "sqlite", "--phases", "backlog")
    assert done.returncode != 0
    assert "--backlog N" in done.stderr


def test_default_run_leaves_the_backlog_out() -> None:
    defaults = parse_args([])
    assert (defaults.phases, defaults.backlog) == ("drain,live,paced,memory", 0)


def test_live_phase_prints_the_grpc_floor_and_what_it_leaves_reachable() -> None:
    done = bench(
        *("--modes", "sqlite", "--phases", "drain,live", "--drain", "200", "--drain-webhooks", "1"),
        *("--events-one", "100", "--events-ten", "10", "--ceiling-posts", "100", "--ceiling-rounds", "1"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split("  ")[0]: line for line in done.stdout.splitlines()}
    ceiling = re.search(r"CPU per post: loop \d+ us, receiver (\d+)", rows["ceiling: bare aiohttp loop"])
    floor = re.search(
        r"[\d,]+ calls/s; CPU per call: server (\d+) us, publisher (\d+)",
        rows["gRPC floor: PublishEvent answered at once"],
    )
    drain = re.search(
        r"dispatcher (\d+)", rows["drain: 200 queued, 1 webhook(s): service CPU per delivery, 2 processes together"]
    )
    assert ceiling and floor and drain, done.stdout
    server, publisher, receiver, dispatcher = (
        int(found[group]) for found, group in ((floor, 1), (floor, 2), (ceiling, 1), (drain, 1))
    )
    assert server > 0 and publisher > 0 and receiver > 0
    least = re.search(
        r"(\d+) us at least \(gRPC floor (\d+) \+ drain (\d+)\)",
        rows["live 1 webhook: service CPU per delivery, with no work per event"],
    )
    assert least, done.stdout
    assert int(least[2]) == server
    # The drain's figure is the whole service's, the API process's share included.
    assert abs(int(least[1]) - (server + int(least[3]))) <= 1
    assert int(least[3]) >= dispatcher
    most = re.search(
        r"([\d,]+)/s = \d+\.\d\d x ceiling at most \((\d+) CPUs / (\d+) us\)",
        rows["live 1 webhook: deliveries completed, with no work per event"],
    )
    assert most, done.stdout
    spent = int(most[3])
    assert abs(spent - (server + publisher + receiver + int(least[3]))) <= 3
    assert abs(int(most[1].replace(",", "")) - int(most[2]) * 1e6 / spent) <= 0.01 * int(most[2]) * 1e6 / spent
