"""/healthz and /readyz as Kubernetes probes them: ready while serving with a database that answers, not
ready while it does not or once shutdown has begun, and healthy throughout."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import seed
from tests.helpers import make_webhook, publish
from tests.support.postgres import PostgresCluster
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer, settings_in
from tests.support.scrape import get, http_base
from tests.support.stall import stalled_store
from tests.support.waiting import eventually
from tests.test_readme import section

Start = Callable[..., RunningServer]


def wait_for_status(url: str, status: int, timeout: float = 15) -> str:
    """The body of the first answer with `status`."""

    def answered() -> str | None:
        found, _, body = get(url)
        return body if found == status else None

    def instead() -> str:
        found, _, body = get(url)
        return f"{url} answers {status}; it still answers {found}: {body}"

    return eventually(answered, timeout, instead)


def test_healthy_and_ready_while_serving(start_server: Start) -> None:
    base = http_base(start_server())

    assert get(f"{base}/healthz")[::2] == (200, "ok\n")
    assert get(f"{base}/readyz")[::2] == (200, "ready\n")


def test_not_ready_while_the_database_does_not_answer(start_server: Start, org: str) -> None:
    """Another client holds the database's write lock and a write waits for it on the server's only query
    thread: the database answers nobody in this process, so the process is not ready, yet alive."""
    server = start_server(database_pool_size=1)
    base = http_base(server)

    with stalled_store(server, org):
        status, _, body = get(f"{base}/readyz")
        assert status == 503, body
        assert "the database did not answer within" in body
        assert get(f"{base}/healthz")[0] == 200

    wait_for_status(f"{base}/readyz", 200)


def test_not_ready_while_postgresql_is_down(tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    server = RunningServer(settings_in(tmp_path, postgres_cluster.new_database()))
    base = http_base(server)
    try:
        assert get(f"{base}/readyz")[0] == 200
        postgres_cluster.stop()
        try:
            body = wait_for_status(f"{base}/readyz", 503)
            assert "database" in body
            assert get(f"{base}/healthz")[0] == 200
        finally:
            postgres_cluster.start()
        # The same process, on fresh connections.
        wait_for_status(f"{base}/readyz", 200)
    finally:
        server.stop()


def test_not_ready_once_shutdown_begins(start_server: Start, receiver: Receiver, org: str) -> None:
    """A delivery in flight holds the shutdown in its grace period: meanwhile the process is alive, and not
    ready, so no new traffic is routed to it."""
    server = start_server(grace=30.0)
    base = http_base(server)
    path = f"/{org}/held"
    released = threading.Event()

    async def hold() -> None:
        await asyncio.to_thread(released.wait, 60)

    receiver.script(path, [Reply(before=hold)])
    with server.client() as client:
        make_webhook(client, f"organizations/{org}", receiver.url(path))
        publish(client, seed.stack_event(stack=f"organizations/{org}/projects/website/stacks/prod"))
    receiver.wait_for(path, 1)
    assert get(f"{base}/readyz")[0] == 200

    stopping = threading.Thread(target=server.stop)
    stopping.start()
    try:
        assert wait_for_status(f"{base}/readyz", 503) == "not ready: shutting down\n"
        assert get(f"{base}/healthz")[0] == 200
        assert stopping.is_alive()
    finally:
        released.set()
        stopping.join(60)
    with pytest.raises(urllib.error.URLError):
        get(f"{base}/healthz", timeout=5)


def test_the_readme_commands_run_as_written(start_server: Start) -> None:
    [script] = re.findall(r"```sh\n(.*?)```", section("Metrics and probes"), re.S)
    script = script.replace("http://127.0.0.1:8080", http_base(start_server()))

    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok\nready\n"), done.stdout
    assert "\nwebhooks_deliveries_pending 0.0\n" in done.stdout, done.stdout
