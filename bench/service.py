"""The service under test: a deployment of the installed `webhooks` console script as child processes.

A deployment is one `webhooks serve` process (the API) and 0..N `webhooks dispatch` processes on one database.
With no `webhooks dispatch` processes the API process dispatches (the SQLite mode): from the dispatcher
processes it starts itself (`--dispatch-processes`, 1 by default), or in its own process with 0; with some, it
is started with `--dispatch-concurrency 0` and serves the API only.
"""

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
from dataclasses import dataclass
from pathlib import Path

LISTENING = re.compile(r"listening on (\S+):(\d+)")
DISPATCHING = re.compile(r"dispatching from database .* as (\S+)")
FAILED = re.compile(r"delivery \S+ to \S+ failed")
# Where a service that authenticates callers leaves its first admin token, relative to its working folder.
ADMIN_TOKEN = Path("data/admin-token")
# The receiver is on loopback, which the request-forgery guard opens only when told.
DISPATCH_FLAGS = ("--grace", "2s", "--allow-network", "127.0.0.0/8")
# The bench publishes faster than a token's default rate limit allows.
SERVE_FLAGS = (*DISPATCH_FLAGS, "--rate-limit", "0", "--http-listen", "127.0.0.1:0")
START_TIMEOUT = 60.0


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


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat from the state field (the third) on."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc/PID/stat."""
    fields = stat_fields(pid)
    # Fields 14 and 15 of stat(5), counted from the state field, which is the third.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class PerProcess:
    """A figure for each process of a deployment, the API process first."""

    values: tuple[float, ...]

    @property
    def total(self) -> float:
        return sum(self.values)

    @property
    def api(self) -> float:
        return self.values[0]

    @property
    def dispatchers(self) -> tuple[float, ...]:
        return self.values[1:]

    def text(self, unit: str, digits: int = 1) -> str:
        """`77.3 MiB` for one process; `210.2 MiB summed: API 70.1, dispatchers 70.0 + 70.1` for several."""
        if len(self.values) == 1:
            return f"{self.values[0]:.{digits}f} {unit}"
        return f"{self.total:.{digits}f} {unit} summed: {self.breakdown(digits)}"

    def breakdown(self, digits: int = 1) -> str:
        """`API 70.1, dispatchers 70.0 + 70.1`, without the unit."""
        dispatchers = " + ".join(f"{value:.{digits}f}" for value in self.dispatchers)
        plural = "s" if len(self.dispatchers) > 1 else ""
        return f"API {self.api:.{digits}f}, dispatcher{plural} {dispatchers}"

    def __str__(self) -> str:
        return self.text("MiB")


@dataclass(frozen=True)
class Memory:
    """Resident memory of a deployment, per process and summed."""

    rss: PerProcess  # MiB resident
    anon: PerProcess  # MiB of it that the process allocated (RssAnon: heap, stacks), without mapped files

    def __str__(self) -> str:
        return f"RSS {self.rss.total:.1f} MiB, {self.anon.total:.1f} MiB of it anonymous"


class Measured:
    """A process of the deployment, by `pid`: its memory and CPU, and its profile."""

    def __init__(self, role: str, pid: int) -> None:
        self.role = role
        self.pid = pid
        self._profiler: subprocess.Popen[bytes] | None = None

    def profile(self, output: str) -> None:
        self._profiler = start_profiler(self.pid, output)

    def rss_mib(self) -> float:
        return memory_kib(self.pid)["VmRSS"] / 1024

    def anon_rss_mib(self) -> float:
        return memory_kib(self.pid)["RssAnon"] / 1024

    def peak_rss_mib(self) -> float:
        return memory_kib(self.pid)["VmHWM"] / 1024

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


class WebhooksProcess(Measured):
    """One `webhooks` command as a child process in `home`; `ready` is matched against its log until it shows.

    It runs in `home`, so whatever it keeps beside itself by default (its `data/` folder: the key that seals
    webhook secrets, the first admin token) stays in the bench's temporary folder, shared by every process
    of a deployment that runs there.
    """

    def __init__(self, role: str, arguments: Sequence[str], home: Path, ready: re.Pattern[str]) -> None:
        self.lines: list[str] = []
        self.ready_match: re.Match[str] | None = None
        self._ready_pattern = ready
        self._ready = threading.Event()
        self.started = time.time()
        home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [webhooks_command(), *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=home,
        )
        super().__init__(role, self.process.pid)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if not self._ready.is_set():
                match = self._ready_pattern.search(line)
                if match:
                    self.ready_match = match
                    self._ready.set()
        self._ready.set()  # it exited: stop waiting

    def wait_ready(self, timeout: float = START_TIMEOUT) -> re.Match[str]:
        self._ready.wait(timeout)
        if self.ready_match is None:
            raise RuntimeError(f"the {self.role} process did not start:\n{self.log}")
        return self.ready_match

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def errors(self) -> list[str]:
        """Log lines at WARNING or above, and failed delivery attempts, which a clean run should not have."""
        return [line.rstrip() for line in self.lines if " WARNING " in line or " ERROR " in line or FAILED.search(line)]

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int:
        self.terminate()
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
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(5)


@dataclass(frozen=True)
class Topology:
    """`dispatchers` 0: one `webhooks serve` that dispatches too, from `beside` dispatcher processes of its
    own (its --dispatch-processes), or in its own process when that is 0. N > 0: an API-only `webhooks serve
    --dispatch-concurrency 0` plus N `webhooks dispatch` processes."""

    dispatchers: int = 0
    beside: int = 1

    @property
    def processes(self) -> int:
        return 1 + self.dispatchers if self.dispatchers else 1 + self.beside

    def __str__(self) -> str:
        if not self.dispatchers:
            if not self.beside:
                return "one `webhooks serve --dispatch-processes 0`, dispatching in the API process"
            plural = "es" if self.beside > 1 else ""
            return f"one `webhooks serve`: the API process and {self.beside} dispatcher process{plural} it starts"
        plural = "es" if self.dispatchers > 1 else ""
        return f"`webhooks serve --dispatch-concurrency 0` + {self.dispatchers} `webhooks dispatch` process{plural}"


class ServeChild(Measured):
    """A dispatcher process `webhooks serve` started: measured like the others; the server stops it, and its
    log lines are in the server's."""

    def errors(self) -> list[str]:
        return []

    def terminate(self) -> None:
        pass

    def stop(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return 0

    def kill(self) -> None:
        pass


def dispatcher_children(pid: int) -> list[int]:
    """The dispatcher processes `webhooks serve` of `pid` started."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"webhook_service.dispatchers" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


class Deployment:
    """The processes of `topology` on `database`, all running in `home`; `target` is the API's address.

    The API process starts first (it makes the key that seals webhook secrets when there is none yet, and
    the first admin token, which becomes `metadata`); the dispatchers are then spawned together, so they
    come up at about the same moment. `profile`, when given, is a path prefix for py-spy output per process.
    """

    def __init__(
        self,
        database: str,
        home: Path,
        topology: Topology = Topology(),
        serve_args: Sequence[str] = (),
        dispatch_args: Sequence[str] = (),
        profile: str = "",
    ) -> None:
        self.topology = topology
        api_only = ("--dispatch-concurrency", "0") if topology.dispatchers else ()
        self.api = WebhooksProcess(
            "API" if topology.dispatchers else "service",
            ["serve", "--listen", "127.0.0.1:0", "--database", database, *SERVE_FLAGS, *api_only, *serve_args],
            home,
            LISTENING,
        )
        self.started = self.api.started
        self.processes: list[WebhooksProcess | ServeChild] = [self.api]
        try:
            listening = self.api.wait_ready()
            self.target = f"127.0.0.1:{listening[2]}"
            if not topology.dispatchers:
                # The server logs its start once its dispatcher processes dispatch.
                children = dispatcher_children(self.api.pid)
                if len(children) != topology.beside:
                    raise RuntimeError(f"the server runs {len(children)} dispatcher processes, not {topology.beside}")
                self.processes += [ServeChild(f"dispatcher {n}", pid) for n, pid in enumerate(children, 1)]
            separate = [
                WebhooksProcess(
                    f"dispatcher {number}",
                    ["dispatch", "--database", database, *DISPATCH_FLAGS, *dispatch_args],
                    home,
                    DISPATCHING,
                )
                for number in range(1, topology.dispatchers + 1)
            ]
            self.processes += separate
            for process in separate:
                process.wait_ready()
        except BaseException:
            self.kill()
            raise
        self.metadata = (("authorization", "Bearer " + (home / ADMIN_TOKEN).read_text().strip()),)
        if profile:
            for each in self.processes:
                suffix = "" if len(self.processes) == 1 else "-" + each.role.replace(" ", "-").lower()
                each.profile(f"{profile}{suffix}.txt")

    @property
    def dispatchers(self) -> list[WebhooksProcess | ServeChild]:
        return self.processes[1:]

    def cpu_seconds(self) -> PerProcess:
        """CPU time of each of the deployment's processes."""
        return PerProcess(tuple(process.cpu_seconds() for process in self.processes))

    def rss_mib(self) -> PerProcess:
        return PerProcess(tuple(process.rss_mib() for process in self.processes))

    def memory(self) -> Memory:
        return Memory(self.rss_mib(), PerProcess(tuple(process.anon_rss_mib() for process in self.processes)))

    def peak_rss_mib(self) -> PerProcess:
        return PerProcess(tuple(process.peak_rss_mib() for process in self.processes))

    def errors(self) -> list[str]:
        """What `WebhooksProcess.errors` finds in each process, named by process when there are several."""
        if len(self.processes) == 1:
            return self.api.errors()
        return [f"{process.role}: {line}" for process in self.processes for line in process.errors()]

    def stop(self) -> None:
        """SIGTERM to all at once, then waits for each."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.stop()

    def kill(self) -> None:
        for process in self.processes:
            process.kill()
