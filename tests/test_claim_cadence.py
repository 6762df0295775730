"""A dispatcher claims again as soon as a webhook at its bound frees half its slots, however requests and claims
interleave: a queue drains at the pace of its receiver, never at the pace of the idle poll."""

from __future__ import annotations

from pathlib import Path

from tests import seed
from tests.helpers import make_webhook, publish
from tests.support.databases import Databases
from tests.support.receiver import Receiver
from tests.support.running import LOOPBACK, RunningServer, settings_in
from webhook_service.dispatch.settings import DispatchSettings


def test_a_queue_for_one_webhook_drains_without_waiting_for_the_poll(
    tmp_path: Path, databases: Databases, receiver: Receiver, org: str
) -> None:
    database = databases.new(tmp_path)
    path = f"/cadence/{org}"
    events = 200
    # The queue is made first, by a server that dispatches nothing, so no publish wakes the dispatcher below.
    queuing = RunningServer(settings_in(tmp_path, database, DispatchSettings(concurrency=0, allow_network=LOOPBACK)))
    try:
        client = queuing.client()
        make_webhook(client, f"organizations/{org}", receiver.url(path))
        for _ in range(events):
            publish(client, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s"))
    finally:
        queuing.stop()
    # Two slots, so each completion asks for a claim while the other request is still out, and that one may end
    # while the claim runs; and a poll that never comes within the test, so any wait for it fails the test.
    dispatch = DispatchSettings(per_webhook=2, poll_interval=600.0, allow_network=LOOPBACK)
    draining = RunningServer(settings_in(tmp_path, database, dispatch))
    try:
        # Minutes of slack for a busy machine: the receiver answers at once, and the drain takes a second or two.
        assert len(receiver.wait_for(path, events, timeout=120)) == events
    finally:
        draining.stop()
