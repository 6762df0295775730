"""A database outage under a running `webhooks serve`: the log says when it began and when it ended, not a line
per failed query; health says NOT_SERVING while the database does not answer and SERVING once it does, and
/readyz agrees. PostgreSQL only: its server can be stopped and started under the service, while an SQLite file
is never unreachable, only locked (tests/test_rest.py covers that)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import seed
from tests.helpers import WS, make_webhook
from tests.support.postgres import PostgresCluster
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver, Reply
from tests.support.waiting import eventually
from webhooks.v1 import event_service_pb2
from webhooks_client import Client

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ORGANIZATION = "organizations/crazy-adventures"  # the organization of seed's events
STARTED = "the database does not answer"
ENDED = re.compile(r"the database answers again after (\d+\.\d)s; (\d+) queries failed meanwhile")


def readyz(base: str) -> int:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("flags", [(), ("--dispatch-concurrency", "0")], ids=["with-dispatcher", "api-only"])
def test_an_outage_is_one_line_when_it_begins_and_one_when_it_ends_and_health_follows_it(
    tmp_path: Path, postgres_cluster: PostgresCluster, receiver: Receiver, flags: tuple[str, ...]
) -> None:
    """An API-only server, with no dispatcher polling the database, notices the outage and its end too."""
    path = f"/outage-{uuid.uuid4().hex[:8]}"
    # Slow answers, so attempts are in flight when the database goes and cannot be recorded.
    receiver.script(path, [Reply(delay=0.5)])
    url = postgres_cluster.new_database()
    service = ServiceProcess(
        ["serve", "--listen", "127.0.0.1:0", "--database", url, "--allow-network", "127.0.0.0/8", *flags], cwd=tmp_path
    )
    http = re.search(r"HTTP on (http://\S+),", service.log)
    assert http, service.log
    try:
        with (
            Client(service.target, token=service.admin_token, attempts=1) as client,
            grpc.insecure_channel(service.target) as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)

            def status() -> int:
                return int(health.Check(health_pb2.HealthCheckRequest(), timeout=10).status)

            make_webhook(client, ORGANIZATION, receiver.url(path))
            request = event_service_pb2.PublishEventRequest(event=seed.update_event())
            for _ in range(10):
                client.events.PublishEvent(request, timeout=10)
            assert status() == SERVING
            assert readyz(http[1]) == 200
            refused = 0
            postgres_cluster.stop()
            try:
                eventually(lambda: status() == NOT_SERVING, 30, lambda: f"health is {status()}\n{service.log}")
                assert readyz(http[1]) == 503
                for _ in range(5):
                    try:
                        client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=ORGANIZATION), timeout=10)
                    except grpc.RpcError as error:
                        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                        refused += 1
            finally:
                postgres_cluster.start()
            eventually(lambda: status() == SERVING, 30, lambda: f"health is {status()}\n{service.log}")
            assert readyz(http[1]) == 200
            client.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=ORGANIZATION), timeout=10)
        assert refused == 5
    finally:
        service.terminate()
    log = service.log
    assert log.count(STARTED) == 1, log
    [(lasted, failed)] = ENDED.findall(log)
    assert float(lasted) > 0
    assert int(failed) >= refused, log
    assert "Traceback" not in log, log
    # Whatever the dispatcher and the calls met meanwhile: the two lines, and at most one about attempts whose
    # outcome could not be recorded.
    told = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(told) <= 3, told
