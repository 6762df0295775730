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
