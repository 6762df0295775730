"""The Makefile's own rules, read with `make -n` (which only prints what it would run) from the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def would_run(target: str, changed: str) -> str:
    """What `make target` would run if `changed` had just been modified (`-W`), without running it."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", changed, target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("changed", ["clients/python/src/webhooks/v1/__init__.py", "protos/webhooks/v1/webhook.proto"])
def test_code_generated_again_installs_nothing_again(changed: str) -> None:
    """`make proto`, or a change to the protos, leaves the next `make run` to serve at once: the packages are
    installed in editable mode, so they use the new code as it is."""
    commands = would_run("run", changed)
    assert "pip install" not in commands, commands
    assert "webhooks serve" in commands, commands
    if changed.startswith("protos/"):
        assert "grpc_tools.protoc" in commands, "a changed proto is generated again"
