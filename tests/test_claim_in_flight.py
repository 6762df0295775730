"""A claim beside this dispatcher's deliveries still in flight: those are never taken again, even once their
lease ran out, and while their leases hold they cost the claim nothing."""

from __future__ import annotations

import time
from typing import Any

import peewee
import pytest

from tests.support.rows import on_the_store_thread, queue_deliveries, webhook_row
from tests.support.statements import logged_by
from webhook_service.domain.scheduling import Capacity
from webhook_service.store import deliveries
from webhook_service.store.models import DeliveryRow, SequenceLeaseRow, database

Start = Any

ROOM = Capacity(free=4, per_webhook=4, per_organization=64)


def _queue(count: int, ordering: str = "unordered") -> None:
    """A webhook with `count` due deliveries, each of a stack of its own."""
    moment = time.time()
    webhook = webhook_row("inflight", "hook", moment, ordering=ordering)
    each_a_stack = ordering != "unordered"
    queue_deliveries(webhook, count, moment, lambda n: {"sequence": f"website/stack-{n}" if each_a_stack else ""})


def _leases_run_out(row_ids: list[int]) -> None:
    """As when the store was slower than the lease: the rows still out look free to any claim."""
    DeliveryRow.update(lease_expires=time.time() - 1).where(DeliveryRow.id.in_(row_ids)).execute()
    SequenceLeaseRow.update(lease_expires=time.time() - 1).where(SequenceLeaseRow.delivery.in_(row_ids)).execute()


@pytest.mark.parametrize("ordering", ["unordered", "per_stack"])
def test_deliveries_in_flight_whose_lease_ran_out_are_not_taken_again_nor_take_others_room(
    start_server: Start, ordering: str
) -> None:
    def work(_db: Any) -> None:
        _queue(12, ordering)
        out = [claim.row_id for claim in deliveries.claim("me", 60.0, ROOM)]
        assert len(out) == ROOM.free
        _leases_run_out(out)

        again = [claim.row_id for claim in deliveries.claim("me", 60.0, ROOM, frozenset(out))]

        assert len(again) == ROOM.free
        assert not set(again) & set(out)

    on_the_store_thread(start_server, work)


def test_a_claim_reads_no_more_due_rows_than_it_may_take_while_leases_in_flight_hold(start_server: Start) -> None:
    def work(_db: Any) -> None:
        _queue(200)
        out = [claim.row_id for claim in deliveries.claim("me", 60.0, Capacity(64, 64, 64))]
        assert len(out) == 64

        logged = logged_by(lambda: deliveries.claim("me", 60.0, ROOM, frozenset(out)))

        # Asking for room beside all 64 in flight made every claim read 68 rows to take 4.
        assert _due_limits(logged) == [ROOM.free]

    on_the_store_thread(start_server, work)


def _due_limits(logged: list[Any]) -> list[int]:
    """The row limits the claim's reads of due deliveries asked for, one per webhook."""
    limits: list[int] = []
    for sql, params in (entry for entry in logged if isinstance(entry, tuple)):
        if '"next_attempt_time" <=' not in sql or "LIMIT" not in sql:
            continue
        if isinstance(database.obj, peewee.SqliteDatabase):
            limits += params[3::4]  # (webhook, moment, moment, limit) per webhook
        else:
            limits += params[1]  # (webhooks, limits, moment, moment, in flight)
    return limits
