"""Live traffic: webhooks created and events published over gRPC, as an internal service would."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from webhooks.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc, webhook_pb2, webhook_service_pb2
from webhooks.v1 import webhook_service_pb2_grpc as webhook_grpc

RPC_TIMEOUT = 30.0


@dataclass
class Published:
    """What a publishing run sent: each delivery ID with the wall-clock time its event's RPC was sent."""

    sent: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    events: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    first_send: float = 0.0
    last_answer: float = 0.0

    @property
    def seconds(self) -> float:
        return self.last_answer - self.first_send


def event_request(organization: str, serial: int) -> event_service_pb2.PublishEventRequest:
    """An event as an internal service publishes it: with a request_id, so a retry after a lost answer is
    not published twice."""
    return event_service_pb2.PublishEventRequest(
        request_id=f"bench-{organization}-{serial}",
        event=event_pb2.Event(
            stack=f"organizations/{organization}/projects/website/stacks/production",
            user=event_pb2.Identity(name="Bench User", github_login="bench-user"),
            organization=event_pb2.Identity(name=organization, github_login=organization),
            update_event=event_pb2.UpdateEvent(
                update_url=f"https://app.pulumi.com/{organization}/website/production/updates/{serial}",
                kind=event_pb2.UPDATE_KIND_UPDATE,
                result=event_pb2.UPDATE_RESULT_SUCCEEDED,
                resource_changes={"create": 3, "update": 2, "same": 40},
            ),
        ),
    )


Metadata = tuple[tuple[str, str], ...]


async def create_webhooks(
    target: str, metadata: Metadata, organization: str, count: int, url: str, secret: str
) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = webhook_grpc.WebhookServiceStub(channel)
        made = []
        for number in range(count):
            webhook = await stub.CreateWebhook(
                webhook_service_pb2.CreateWebhookRequest(
                    parent=f"organizations/{organization}",
                    webhook_id=f"hook-{number}",
                    webhook=webhook_pb2.Webhook(display_name=f"bench {number}", payload_url=url, secret=secret),
                ),
                timeout=RPC_TIMEOUT,
                metadata=metadata,
            )
            made.append(webhook.name)
        return made


class _Publisher:
    def __init__(
        self, stub: event_service_pb2_grpc.EventServiceAsyncStub, metadata: Metadata, organization: str
    ) -> None:
        self.stub = stub
        self.metadata = metadata
        self.organization = organization
        self.result = Published()

    async def publish(self, serial: int) -> None:
        request = event_request(self.organization, serial)
        result = self.result
        wall = time.time()
        if not result.first_send:
            result.first_send = wall
        clock = time.perf_counter()
        try:
            response = await self.stub.PublishEvent(request, timeout=RPC_TIMEOUT, metadata=self.metadata)
        except grpc.aio.AioRpcError as error:
            result.failures[error.code().name] += 1
            return
        result.latencies.append(time.perf_counter() - clock)
        result.last_answer = time.time()
        result.events += 1
        for name in response.deliveries:
            result.sent[name.rsplit("/", 1)[-1]] = wall


async def publish_burst(target: str, metadata: Metadata, organization: str, count: int, concurrency: int) -> Published:
    """`count` events as fast as the service takes them, `concurrency` RPCs in flight."""
    async with grpc.aio.insecure_channel(target) as channel:
        publisher = _Publisher(event_service_pb2_grpc.EventServiceStub(channel), metadata, organization)
        serials = iter(range(count))

        async def worker() -> None:
            for serial in serials:
                await publisher.publish(serial)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return publisher.result


async def publish_paced(target: str, metadata: Metadata, organization: str, rate: float, seconds: float) -> Published:
    """Events at a steady `rate` per second for `seconds`, each sent on schedule whether or not earlier ones
    have been answered (an open loop, so a slow answer cannot hide by slowing the sender)."""
    async with grpc.aio.insecure_channel(target) as channel:
        publisher = _Publisher(event_service_pb2_grpc.EventServiceStub(channel), metadata, organization)
        await channel.channel_ready()
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for serial in range(round(rate * seconds)):
            delay = start + serial / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(publisher.publish(serial)))
        await asyncio.gather(*tasks)
        return publisher.result
