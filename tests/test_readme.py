"""The README's grpcurl walk-through, run as written against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.running import RunningServer

README = Path(__file__).parent.parent / "README.md"


def shell_blocks(section: str) -> str:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return "\n".join(re.findall(r"```sh\n(.*?)```", text[start : end if end > 0 else None], re.S))


def test_walk_through_runs_as_written(server: RunningServer) -> None:
    script = shell_blocks("Walk-through with grpcurl").replace("127.0.0.1:50051", server.target)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"display_name": "Everything"' in done.stdout
    assert '"status": "SERVING"' in done.stdout
