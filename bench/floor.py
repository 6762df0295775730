"""The gRPC floor: what a PublishEvent call costs before the service does any work for it.

`python -m bench.floor` serves the service's EventService on uvloop, as the service does, but answers every
PublishEvent at once with an answer of the same shape, storing nothing and checking nothing; it prints
`floor listening on 127.0.0.1:PORT`. The bench drives it with the live phase's own publisher and reads what
the calls cost on either side. With the receiver's cost per post and the dispatcher's per delivery, that
bounds what the live phase can reach on this machine whatever the service does with each event.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import uvloop

from bench.child import Child, until_signalled
from bench.live import publish_burst
from bench.service import cpu_seconds
from webhooks.v1 import event_service_pb2

WARM_UP_CALLS = 1_000


async def _answer_at_once(
    request: event_service_pb2.PublishEventRequest, context: grpc.aio.ServicerContext[object, object]
) -> event_service_pb2.PublishEventResponse:
    # One delivery's name, as the live phase's webhook gets, with IDs of the service's length.
    return event_service_pb2.PublishEventResponse(
        event_id="0" * 24, deliveries=[f"organizations/floor/webhooks/hook-0/deliveries/{request.request_id}"]
    )


async def serve() -> None:
    server = grpc.aio.server()
    publish = grpc.unary_unary_rpc_method_handler(
        _answer_at_once,
        request_deserializer=event_service_pb2.PublishEventRequest.FromString,
        response_serializer=event_service_pb2.PublishEventResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("webhooks.v1.EventService", {"PublishEvent": publish}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"floor listening on 127.0.0.1:{port}", flush=True)
    await until_signalled()
    await server.stop(None)


@dataclass(frozen=True)
class Floor:
    rate: float  # calls answered per second
    server_us: float  # the server's CPU per call
    publisher_us: float  # the publisher's, in the bench's process


def measure_floor(calls: int, concurrency: int) -> Floor:
    """A warm-up, then `calls` PublishEvent calls with `concurrency` in flight."""
    child = Child("bench.floor")
    target = child.address
    try:
        asyncio.run(publish_burst(target, (), "floor", WARM_UP_CALLS, concurrency))
        server, publisher, wall = cpu_seconds(child.pid), time.process_time(), time.perf_counter()
        published = asyncio.run(publish_burst(target, (), "floor", calls, concurrency))
        wall = time.perf_counter() - wall
        publisher = time.process_time() - publisher
        server = cpu_seconds(child.pid) - server
        if published.events != calls:
            raise RuntimeError(f"the floor server answered {published.events} of {calls} calls")
        return Floor(calls / wall, server / calls * 1e6, publisher / calls * 1e6)
    finally:
        child.close()


if __name__ == "__main__":
    uvloop.run(serve())
