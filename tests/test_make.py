"""The Makefile's own rules, read with `make -n` (which only prints what it would run) from the repository."""

from __future__ import annotations

import re
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


def test_make_run_takes_the_addresses_and_networks_the_readme_shows() -> None:
    readme = (ROOT / "README.md").read_text()
    first_section = readme[: readme.index("\n## ")]
    lines = re.findall(r"^make run ([A-Z].*)$", first_section, re.M)
    assert lines == ["LISTEN=127.0.0.1:50061 HTTP_LISTEN=127.0.0.1:8090", "ALLOW_NETWORK="]
    moved, closed = (
        subprocess.run(
            ["make", "--no-print-directory", "-n", "run", *line.split()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for line in lines
    )
    assert "webhooks serve --listen 127.0.0.1:50061 --http-listen 127.0.0.1:8090" in moved
    assert 'WEBHOOKS_ALLOW_NETWORK="127.0.0.0/8"' in moved
    assert 'WEBHOOKS_ALLOW_NETWORK=""' in closed
    assert "--listen 127.0.0.1:50051 --http-listen 127.0.0.1:8080" in closed
