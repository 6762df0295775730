"""A dispatcher claims again as soon as a webhook at its bound has started the deliveries it held, however
requests and claims interleave: a queue drains at the pace of its receiver, never at the pace of the idle poll."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tests import seed
from tests.helpers import make_webhook, publish
from tests.support.databases import Databases
from tests.support.receiver import Receiver
from tests.support.running import LOOPBACK, RunningServer, settings_in
from webhook_service.dispatch.pool import NEWS_SPACING
from webhook_service.dispatch.settings import DispatchSettings

# The first words of the statement every claim starts with (store/deliveries.py).
PENDING_WEBHOOKS = "WITH RECURSIVE pending(webhook)"


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


def test_news_of_work_claims_at_most_once_per_spacing(tmp_path: Path, databases: Databases) -> None:
    """Publishes arriving every millisecond (here, the wakes they give) start a claim, a write transaction,
    at most once per NEWS_SPACING rather than once each."""
    dispatch = DispatchSettings(poll_interval=600.0, allow_network=LOOPBACK)
    running = RunningServer(settings_in(tmp_path, databases.new(tmp_path), dispatch))
    dispatcher = running.server.dispatcher
    assert dispatcher is not None
    claims = []

    class Claims(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if PENDING_WEBHOOKS in str(record.msg):
                claims.append(record.created)

    async def news_every_millisecond() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for _ in range(100):
            dispatcher.wake()
            await asyncio.sleep(0.001)
        # The claim that news still waiting asked for, so the window below holds every claim the news made.
        await asyncio.sleep(2 * NEWS_SPACING)
        return loop.time() - began

    logger = logging.getLogger("peewee")
    handler, level = Claims(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        seconds = running.run(news_every_millisecond())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        running.stop()
    # Each claim begins NEWS_SPACING after the one before it at the earliest, however slow the machine; one may
    # have been under way as the window opened. Without the spacing there was one claim per wake: about 100.
    assert 1 <= len(claims) <= seconds / NEWS_SPACING + 2, (len(claims), seconds)
