"""Shutting down: from the first moment, a new call is refused at once with UNAVAILABLE, whichever connection
it comes by, while the calls in progress finish."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import WS
from tests.support.running import RunningServer
from tests.support.stall import connect, stalled_store
from webhooks_client import Client

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_a_call_during_shutdown_is_refused_at_once_while_a_call_in_progress_finishes(
    start_server: Callable[..., RunningServer], org: str
) -> None:
    # The call in progress holds the shutdown open for as long as the test needs: up to the 60 s grace.
    server = start_server(database_pool_size=1, grace=60.0)
    stopping = threading.Thread(target=server.stop)
    with connect(server) as client, grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="webhooks.v1.WebhookService"), timeout=60)
        assert next(watch).status == SERVING
        with stalled_store(server, org) as in_progress:
            stopping.start()
            assert next(watch).status == NOT_SERVING
            watch.cancel()  # type: ignore[attr-defined]
            # Both on the connection a caller already had and on a new one, well before the 10 s deadline.
            with Client(server.target, token=server.admin_token) as newcomer:
                for caller in (client, newcomer):
                    with pytest.raises(grpc.RpcError) as refused:
                        caller.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{org}"), timeout=10)
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
                    assert "shutting down" in refused.value.details(), refused.value
            # Balancers probing on a new connection are told, not turned away.
            with grpc.insecure_channel(server.target) as probe:
                check = health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert check.status == NOT_SERVING
            assert not in_progress.done()
        assert in_progress.result().display_name == "blocked"
    stopping.join(30)
    assert not stopping.is_alive(), "the server did not stop once its last call was done"
