"""Running the README's shell blocks as written, beside the `webhooks receive` of its walk-through."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.process import ServiceProcess
from tests.support.running import RunningServer

README = Path(__file__).parent.parent.parent / "README.md"
BIN = Path(sys.executable).parent


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_script(
    script: str, replacements: Mapping[str, str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`script` under bash -euo pipefail, with each key of `replacements` replaced and .venv/bin on the PATH."""
    for old, new in replacements.items():
        script = script.replace(old, new)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
    )


@contextlib.contextmanager
def walk_through_receiver() -> Iterator[tuple[ServiceProcess, str]]:
    """The walk-through's `webhooks receive` line, run on a free port; yields it and its address."""
    [receive_line] = re.findall(r"```console\n(.*?)\n```", section("Walk-through with grpcurl"), re.S)
    address = f"127.0.0.1:{free_port()}"
    receiver = ServiceProcess(receive_line.replace("127.0.0.1:8000", address).split()[1:], wait_for_port=False)
    try:
        receiver.wait_for_log("receiving on")
        yield receiver, address
    finally:
        receiver.kill()


def grpc_replacements(server: RunningServer, receiver_address: str) -> dict[str, str]:
    """What a gRPC block of the README names, pointed at `server` and the walk-through's receiver."""
    return {
        "127.0.0.1:50051": server.target,
        "127.0.0.1:8000": receiver_address,
        "data/admin-token": str(server.settings.admin_token_file),
    }
