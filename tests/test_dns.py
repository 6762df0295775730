"""Name resolution for deliveries: receivers whose DNS never answers hold up no other webhook's delivery."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import seed
from tests.helpers import WS, make_webhook, publish, wait_for_delivery
from tests.support.dns import BlackHoleDns
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.waiting import eventually

# More than the six threads of the event loop's default executor on two cores, which getaddrinfo would share.
HOLES = [f"hole-{number}.test" for number in range(8)]
FAST = "fast.test"


@pytest.fixture
def dns() -> Iterator[BlackHoleDns]:
    server = BlackHoleDns({FAST: "127.0.0.1"})
    yield server
    server.close()


@pytest.fixture
def system_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The system resolver (getaddrinfo) black-holed for the same names, so that no query for them leaves the
    machine and the test says the same whichever resolver deliveries use. Yields the names it was asked."""
    asked: set[str] = set()
    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.add(host)
        if host in HOLES:
            released.wait()
            raise socket.gaierror(socket.EAI_AGAIN, "no answer")
        return real("127.0.0.1" if host == FAST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield asked
    released.set()


def test_names_whose_dns_never_answers_do_not_hold_up_other_webhooks(
    start_server: Callable[..., RunningServer], receiver: Receiver, dns: BlackHoleDns, system_resolver: set[str]
) -> None:
    client = start_server(nameservers=[dns.address], delivery_timeout=60.0, retry_schedule=(0.0,)).client()
    stuck = "organizations/acme/projects/website/stacks/stuck"
    for host in HOLES:
        make_webhook(client, stuck, f"http://{host}:{receiver.port}/{host}")
    make_webhook(client, "organizations/acme/projects/website/stacks/prod", f"http://{FAST}:{receiver.port}/fast")

    holes = publish(client, seed.update_event(stack=stuck)).deliveries
    # Six lookups waiting would take every thread getaddrinfo shares.
    eventually(
        lambda: sum(bool(dns.asked(host)) or host in system_resolver for host in HOLES) >= 6,
        15,
        "the deliveries look their hosts up",
        every=0.02,
    )
    [fast] = publish(client, seed.update_event(stack="organizations/acme/projects/website/stacks/prod")).deliveries

    assert wait_for_delivery(client, fast).response_code == 200
    receiver.wait_for("/fast", 1)
    waiting = [client.webhooks.GetWebhookDelivery(WS.GetWebhookDeliveryRequest(name=name)) for name in holes]
    assert [delivery.attempt_count for delivery in waiting] == [0] * len(HOLES)
    assert all(dns.asked(host) for host in HOLES)
