"""`webhooks serve` dispatches from processes of its own (--dispatch-processes, 1 by default): they deliver,
report their series through the server's /metrics, are started again when they die, stop with the server,
and never outlive it, even when it is killed with SIGKILL.

Each test runs the installed console script against a database file (or PostgreSQL), with a real receiver.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.support.databases import Databases
from tests.support.process import ServiceProcess, serving, webhooks_command
from tests.support.receiver import Receiver, Reply
from tests.support.terminal import sigint_as_in_a_terminal
from tests.support.waiting import eventually
from tests.test_crash import connect, create_org_webhook, ids_received, publish, unfinished

DISPATCHER = "webhook_service.dispatchers"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def receiver() -> Receiver:
    running = Receiver()
    yield running  # type: ignore[misc]
    running.close()


def dispatcher_pids(service: ServiceProcess, count: int) -> list[int]:
    """The dispatcher processes the server started, once there are `count` of them."""

    def found() -> list[int] | None:
        children = [pid for pid in _children(service.process.pid) if DISPATCHER in _command_line(pid)]
        return children if len(children) == count else None

    return eventually(found, 30, f"{count} dispatcher processes run")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie nobody reaped yet has ended)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def metrics_of(service: ServiceProcess) -> str:
    port = re.search(r"HTTP on http://127\.0\.0\.1:(\d+)", service.log)
    assert port, service.log
    with urllib.request.urlopen(f"http://127.0.0.1:{port[1]}/metrics", timeout=10) as response:
        return str(response.read().decode())


def sample(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_serve_delivers_from_a_dispatcher_process_and_its_metrics_show_the_attempts(
    tmp_path: Path, receiver: Receiver, databases: Databases
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    with serving(databases.new(tmp_path)) as service:
        (child,) = dispatcher_pids(service, 1)
        assert f"started 1 dispatcher process: pid {child}" in service.log
        with connect(service) as client:
            create_org_webhook(client, org, receiver.url("/one"))
            names = publish(client, org, 5)
        receiver.wait_for("/one", 5)
        succeeded = 'webhooks_delivery_attempts_total{code_class="2xx",outcome="succeeded"}'
        eventually(
            lambda: sample(metrics_of(service), succeeded) == 5.0,
            15,
            "the server's /metrics counts the dispatcher process's 5 attempts",
        )
        text = metrics_of(service)
        # The process's own series stay the server's, once each: the exposition stays valid for Prometheus.
        assert text.count("\nprocess_cpu_seconds_total ") == 1
        assert sample(text, "webhooks_delivery_attempt_duration_seconds_count") == 5.0
        assert sample(text, 'webhooks_events_published_total{kind="stack"}') == 5.0
        assert len(names) == 5


def test_several_dispatcher_processes_deliver_each_event_once(
    tmp_path: Path, receiver: Receiver, databases: Databases
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    with serving(databases.new(tmp_path), "--dispatch-processes", "2") as service:
        assert len(set(dispatcher_pids(service, 2))) == 2
        with connect(service) as client:
            create_org_webhook(client, org, receiver.url("/many"))
            names = publish(client, org, 60)
        receiver.wait_for("/many", 60)
        arrived = ids_received(receiver, "/many")
        assert set(arrived) == {name.rsplit("/", 1)[-1] for name in names}
        assert max(Counter(arrived).values()) == 1


def test_dispatch_processes_0_dispatches_in_the_server_itself(tmp_path: Path, receiver: Receiver) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    with serving(f"sqlite:///{tmp_path / 'webhooks.db'}", "--dispatch-processes", "0") as service:
        with connect(service) as client:
            create_org_webhook(client, org, receiver.url("/here"))
            publish(client, org, 3)
        receiver.wait_for("/here", 3)
        assert _children(service.process.pid) == []
        assert f"dispatching from database sqlite {tmp_path / 'webhooks.db'}" in service.log


def test_a_dispatcher_process_never_outlives_a_server_killed_with_sigkill(tmp_path: Path) -> None:
    with serving(f"sqlite:///{tmp_path / 'webhooks.db'}", "--dispatch-processes", "2") as service:
        children = dispatcher_pids(service, 2)
        service.process.send_signal(signal.SIGKILL)
        service.process.wait(10)
        eventually(
            lambda: not any(running(pid) for pid in children),
            10,
            "the dispatcher processes end with the server",
        )


def test_a_dispatcher_process_that_dies_is_started_again_and_delivers(tmp_path: Path, receiver: Receiver) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    with serving(f"sqlite:///{tmp_path / 'webhooks.db'}") as service:
        (first,) = dispatcher_pids(service, 1)
        os.kill(first, signal.SIGKILL)
        service.wait_for_log(rf"dispatcher process 1 \(pid {first}\) was killed by SIGKILL; starting another")
        service.wait_for_log(r"dispatcher process 1 started again: pid \d+", timeout=30)
        (second,) = dispatcher_pids(service, 1)
        assert second != first
        assert sample(metrics_of(service), "webhooks_dispatcher_process_ends_total") == 1.0
        with connect(service) as client:
            create_org_webhook(client, org, receiver.url("/again"))
            publish(client, org, 3)
        receiver.wait_for("/again", 3)


def test_sigterm_lets_the_dispatcher_process_finish_a_slow_delivery_then_both_end(
    tmp_path: Path, receiver: Receiver, databases: Databases
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    receiver.script("/slow", [Reply(status=200, delay=2.0)])
    database = databases.new(tmp_path)
    with serving(database) as service:
        (child,) = dispatcher_pids(service, 1)
        with connect(service) as client:
            webhook = create_org_webhook(client, org, receiver.url("/slow"))
            publish(client, org, 1)
        receiver.wait_for("/slow", 1)
        assert service.terminate() == 0
        assert not running(child)
        assert "dispatcher stopped; 0 unfinished deliveries released (0 cut off by the grace)" in service.log
    # The attempt the SIGTERM found in flight was finished and recorded, not given back to be sent again.
    with serving(database) as service, connect(service) as client:
        assert unfinished(client, webhook.name, 1) is None
    assert len(ids_received(receiver, "/slow")) == 1


def test_ctrl_c_in_a_terminal_stops_the_server_and_its_dispatcher_processes_once(tmp_path: Path) -> None:
    # A terminal sends SIGINT to the whole foreground process group: the server and its dispatcher processes.
    with sigint_as_in_a_terminal():
        service = subprocess.Popen(
            [
                webhooks_command(),
                *("serve", "--listen", "127.0.0.1:0", "--http-listen", "off"),
                *("--database", f"sqlite:///{tmp_path / 'webhooks.db'}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    assert service.stdout is not None
    lines = []
    for line in service.stdout:
        lines.append(line)
        if "listening on" in line:
            break
    children = _children(service.pid)
    os.killpg(service.pid, signal.SIGINT)
    lines += service.stdout.readlines()
    assert service.wait(30) == 0, "".join(lines)
    log = "".join(lines)
    assert "dispatcher stopped" in log
    assert "starting another" not in log, log
    assert not any(running(pid) for pid in children)


def test_how_a_dispatcher_process_ended_is_said_for_any_status() -> None:
    from webhook_service.dispatchers import _ending

    assert _ending(3) == "ended with status 3"
    assert _ending(-signal.SIGKILL) == "was killed by SIGKILL"
    # A real-time signal has no name in Python's enum: the supervisor must still say it, and go on restarting.
    assert _ending(-40) == "was killed by signal 40"
