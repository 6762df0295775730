"""The service under test: the installed `webhooks serve` console script as a child process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LISTENING = re.compile(r"listening on (\S+):(\d+)")
FAILED = re.compile(r"delivery \S+ to \S+ failed")
# Where a service that authenticates callers leaves its first admin token, relative to its working folder.
ADMIN_TOKEN = Path("data/admin-token")
# The receiver is on loopback, which the request-forgery guard opens only when told; the bench publishes
# faster than a token's default rate limit allows.
SERVE_FLAGS = ("--grace", "2s", "--allow-network", "127.0.0.0/8", "--rate-limit", "0")


def webhooks_command() -> str:
    found = Path(sys.executable).parent / "webhooks"
    if found.exists():
        return str(found)
    on_path = shutil.which("webhooks")
    if on_path is None:
        raise RuntimeError("the webhooks console script is not installed; run `make setup`")
    return on_path


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now), VmHWM (peak resident) and RssAnon (the resident heap and stacks, without mapped
    files such as shared libraries) of a process, in KiB, from /proc."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                found[key] = int(value.split()[0])
    return found


def start_profiler(pid: int, output: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling `pid` until it exits, as collapsed stacks (`--format raw`), when py-spy is installed."""
    py_spy = Path(sys.executable).parent / "py-spy"
    command = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if command is None:
        print("py-spy is not installed (pip install py-spy): not profiling", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            command,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--gil",
            "--nonblocking",
            "-o",
            output,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5), counted from the state field, which is the third.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServiceProcess:
    """`webhooks serve --listen 127.0.0.1:0` on `database`; `target` is read from its `listening on` line.

    It runs in `home`, so whatever it keeps beside itself by default (its `data/` folder: keys, tokens) stays
    in the bench's temporary folder; an admin token it writes there on a first start becomes `metadata`.
    """

    def __init__(self, database: str, home: Path, extra: Sequence[str] = (), profile: str = "") -> None:
        self.lines: list[str] = []
        self.started = time.time()
        home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [webhooks_command(), "serve", "--listen", "127.0.0.1:0", "--database", database, *SERVE_FLAGS, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=home,
        )
        self.pid = self.process.pid
        self._listening = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(60):
            self.kill()
            raise RuntimeError("the service did not start:\n" + self.log)
        self.target = f"127.0.0.1:{self.port}"
        token_file = home / ADMIN_TOKEN
        self.metadata: tuple[tuple[str, str], ...] = ()
        if token_file.exists():
            self.metadata = (("authorization", "Bearer " + token_file.read_text().strip()),)
        self._profiler: subprocess.Popen[bytes] | None = None
        if profile:
            self._profiler = start_profiler(self.pid, profile)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and not self._listening.is_set():
                self.port = int(match[2])
                self._listening.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def rss_mib(self) -> float:
        return memory_kib(self.pid)["VmRSS"] / 1024

    def anon_rss_mib(self) -> float:
        return memory_kib(self.pid)["RssAnon"] / 1024

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mib(self) -> float:
        return memory_kib(self.pid)["VmHWM"] / 1024

    def errors(self) -> list[str]:
        """Log lines at WARNING or above, and failed delivery attempts, which a clean run should not have."""
        return [line.rstrip() for line in self.lines if " WARNING " in line or " ERROR " in line or FAILED.search(line)]

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        self._reader.join(5)
        if self._profiler is not None:
            try:
                self._profiler.wait(30)
            except subprocess.TimeoutExpired:
                self._profiler.kill()
                self._profiler.wait(10)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(5)
