"""A busy webhook's next deliveries are claimed while its current ones are out, and held: it never has more out
than its bound, each held delivery starts when one of its requests ends, and stopping gives held ones back
unsent."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests import seed
from tests.helpers import make_webhook, publish
from tests.support import sql
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer
from tests.support.waiting import eventually

Start = Callable[..., RunningServer]
BOUND = 2
EVENTS = 6


@pytest.fixture
def answers() -> Iterator[threading.Event]:
    """Set to let the receiver answer the requests it holds."""
    answer = threading.Event()
    yield answer
    answer.set()


def _holding_receiver(receiver: Receiver, path: str, answer: threading.Event) -> None:
    async def until_answered() -> None:
        await asyncio.to_thread(answer.wait)

    receiver.script(path, [Reply(before=until_answered)])


def _leased(server: RunningServer) -> int:
    [(count,)] = sql.execute(
        server.settings.database, "SELECT COUNT(*) FROM delivery WHERE lease_owner IS NOT NULL AND state = 'pending'"
    )
    return int(count)


def _queue_behind_a_busy_webhook(start_server: Start, receiver: Receiver, path: str, org: str) -> RunningServer:
    """EVENTS deliveries to one webhook whose receiver holds every request, with BOUND slots: BOUND go out,
    BOUND more are held, the rest wait in the queue."""
    # No poll within the test: every claim comes from a publish or a finished request.
    server = start_server(per_webhook=BOUND, poll_interval=600.0, grace=0.5)
    client = server.client()
    make_webhook(client, f"organizations/{org}", receiver.url(path))
    for _ in range(EVENTS):
        publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s"))
    receiver.wait_for(path, BOUND)
    eventually(lambda: _leased(server) == 2 * BOUND, 30, lambda: f"{_leased(server)} deliveries claimed")
    time.sleep(0.5)  # room for more requests, were the bound not kept
    assert len(receiver.received(path)) == BOUND
    assert _leased(server) == 2 * BOUND
    return server


def test_a_busy_webhook_holds_its_next_deliveries_and_sends_each_as_a_request_ends(
    start_server: Start, receiver: Receiver, answers: threading.Event, org: str
) -> None:
    path = f"/held/{org}"
    _holding_receiver(receiver, path, answers)
    _queue_behind_a_busy_webhook(start_server, receiver, path, org)

    answers.set()

    assert len(receiver.wait_for(path, EVENTS, timeout=60)) == EVENTS


def test_stopping_gives_held_deliveries_back_unsent(
    start_server: Start, receiver: Receiver, answers: threading.Event, org: str
) -> None:
    path = f"/held/{org}"
    _holding_receiver(receiver, path, answers)
    server = _queue_behind_a_busy_webhook(start_server, receiver, path, org)

    server.stop()  # the requests out are cut off by the grace; the held ones must not start meanwhile

    assert len(receiver.received(path)) == BOUND
    assert _leased(server) == 0
    [(pending,)] = sql.execute(server.settings.database, "SELECT COUNT(*) FROM delivery WHERE state = 'pending'")
    assert pending == EVENTS
