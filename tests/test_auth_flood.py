"""A flood of calls with made-up tokens does not slow authenticated callers down."""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable

import grpc

from tests import seed
from tests.helpers import make_webhook, publish
from tests.support.running import RunningServer
from webhooks.v1 import event_service_pb2, event_service_pb2_grpc
from webhooks_client import Client

Start = Callable[..., RunningServer]


def publish_latencies(client: Client, stack: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        publish(client, seed.update_event(stack=stack))
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)
    return latencies


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99) - 1]


def flood(target: str, stop: threading.Event, codes: Counter[grpc.StatusCode]) -> None:
    """Made-up tokens of the right shape, 32 calls in flight, until `stop`."""
    # A connection of its own: gRPC would otherwise share the authenticated client's.
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        request = event_service_pb2.PublishEventRequest(
            event=seed.update_event(stack="organizations/x/projects/p/stacks/s")
        )
        while not stop.is_set():
            calls = [
                stub.PublishEvent.future(
                    request, metadata=(("authorization", f"Bearer whk_{secrets.token_urlsafe(32)}"),), timeout=10
                )
                for _ in range(32)
            ]
            for call in calls:
                try:
                    call.result()
                    codes[grpc.StatusCode.OK] += 1
                except grpc.RpcError as error:
                    codes[error.code()] += 1


def test_made_up_tokens_are_cheap_and_slow_nobody(start_server: Start, org: str) -> None:
    server = start_server(concurrency=0, rate_limit=0.0)
    stack = f"organizations/{org}/projects/p/stacks/s"
    with server.client() as client:
        make_webhook(client, f"organizations/{org}", "https://example.com/hook")
        quiet = publish_latencies(client, stack, 100)

        stop, codes = threading.Event(), Counter[grpc.StatusCode]()
        flooding = threading.Thread(target=flood, args=(server.target, stop, codes), daemon=True)
        flooding.start()
        try:
            time.sleep(0.5)
            loud = publish_latencies(client, stack, 100)
        finally:
            stop.set()
            flooding.join(30)
    print(
        f"authenticated PublishEvent: quiet median {statistics.median(quiet) * 1000:.1f} ms, p99"
        f" {p99(quiet) * 1000:.1f} ms; beside {sum(codes.values())} made-up-token calls median"
        f" {statistics.median(loud) * 1000:.1f} ms, p99 {p99(loud) * 1000:.1f} ms; flood answers {dict(codes)}"
    )
    assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    # After a burst of failures the connection is refused without a lookup at all.
    assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] > codes[grpc.StatusCode.UNAUTHENTICATED]
    # Before, every made-up token was a query queued with the publishes: the median went from 3 ms to 336 ms.
    # What is left is the flood's share of the processor.
    assert statistics.median(loud) < 0.15
