"""The installed `webhooks` console script run as a child process, exactly as `make run` does."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.waiting import eventually

LISTENING = re.compile(r"listening on (\S+):(\d+)")


def webhooks_command() -> str:
    """The console script of the virtual environment running the tests."""
    found = Path(sys.executable).parent / "webhooks"
    if found.exists():
        return str(found)
    on_path = shutil.which("webhooks")
    assert on_path, "the webhooks console script is not installed"
    return on_path


class ServiceProcess:
    """`webhooks serve` (or another subcommand) with its log collected; `port` is read from its start line."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        wait_for_port: bool = True,
        cwd: Path | None = None,
    ) -> None:
        """Runs in `cwd`, where the service keeps its default `data/` files (key, admin token)."""
        self.cwd = cwd
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [webhooks_command(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # A free HTTP port unless the test names one: several services run side by side.
            env={**os.environ, "WEBHOOKS_HTTP_LISTEN": "127.0.0.1:0", **(env or {})},
            cwd=cwd,
        )
        self._listening = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait_for_port:
            if not self._listening.wait(30):
                self.kill()
                raise AssertionError("the service did not start:\n" + self.log)
            self.target = f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and not self._listening.is_set():
                self.port = int(match[2])
                self._listening.set()

    @property
    def admin_token(self) -> str:
        assert self.cwd is not None
        return (self.cwd / "data" / "admin-token").read_text().strip()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """The first match of `pattern` in the log, once the process has written it."""
        return eventually(
            lambda: re.search(pattern, self.log),
            timeout,
            lambda: f"the log matches {pattern!r}:\n{self.log}",
            every=0.05,
        )

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(5)


@contextmanager
def serving(database: str, *flags: str, cwd: Path | None = None) -> Iterator[ServiceProcess]:
    """`webhooks serve` on a free port, allowed to deliver to local receivers; killed on the way out unless
    the test already stopped it."""
    service = ServiceProcess(
        ["serve", "--listen", "127.0.0.1:0", "--database", database, "--allow-network", "127.0.0.0/8", *flags],
        cwd=cwd,
    )
    try:
        yield service
    finally:
        if service.process.poll() is None:
            service.kill()
