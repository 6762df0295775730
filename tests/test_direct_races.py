"""Ping and redeliver against deletes and against attempts in flight: precise answers, unique attempt numbers."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from tests import seed
from tests.helpers import WS, get_delivery, make_webhook, publish, wait_for_delivery
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer
from webhooks_client import Client

Start = Callable[..., RunningServer]


def ping(client: Client, name: str, codes: list[grpc.StatusCode]) -> None:
    try:
        client.webhooks.PingWebhook(WS.PingWebhookRequest(name=name))
        codes.append(grpc.StatusCode.OK)
    except grpc.RpcError as error:
        codes.append(error.code())


def test_pings_racing_a_delete_answer_ok_or_not_found(start_server: Start, receiver: Receiver, org: str) -> None:
    server = start_server()
    with server.client() as client:
        for round in range(5):
            path = f"/{org}/race-{round}"
            receiver.script(path, [Reply(delay=0.2)])
            hook = make_webhook(client, f"organizations/{org}", receiver.url(path))
            codes: list[grpc.StatusCode] = []
            pinging = [threading.Thread(target=ping, args=(client, hook.name, codes)) for _ in range(3)]
            for thread in pinging:
                thread.start()
            receiver.wait_for(path, 1)
            client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=hook.name))
            for thread in pinging:
                thread.join(30)
            assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}, codes
            assert len(codes) == 3


def test_a_redelivery_during_an_attempt_in_flight_is_refused(start_server: Start, receiver: Receiver, org: str) -> None:
    server = start_server(delivery_timeout=5.0)
    path = f"/{org}/slow"
    with server.client() as client:
        make_webhook(client, f"organizations/{org}", receiver.url(path))
        receiver.script(path, [Reply(delay=1.5), Reply()])
        [name] = publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")).deliveries
        receiver.wait_for(path, 1)  # the first attempt is waiting for its answer
        try:
            client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=name))
            raise AssertionError("a redelivery overlapped an attempt in flight")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
            assert "being sent right now" in (error.details() or "")
        wait_for_delivery(client, name)
        again = client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=name))
        assert [attempt.attempt_number for attempt in get_delivery(client, name).attempts] == [1, 2]
        assert again.attempt_count == 2
