"""Attempts finished together are written together: one UPDATE of the deliveries for the whole flush, whatever
their outcomes, retry times and attempt counts, each still fenced by its own claim."""

from __future__ import annotations

import time
from typing import Any

from tests.support.rows import on_the_store_thread, outcome_of, queue_deliveries, webhook_row
from tests.support.statements import statements_of
from webhook_service.domain.scheduling import Capacity
from webhook_service.store import deliveries
from webhook_service.store.models import DeliveryRow

Start = Any


def test_a_flush_of_mixed_outcomes_is_one_update_and_a_stale_claim_is_still_dropped(start_server: Start) -> None:
    on_the_store_thread(start_server, _record_mixed)


def _record_mixed(_db: Any) -> None:
    moment = time.time()
    webhook = webhook_row("batches", "hook", moment)
    # Earlier attempts differ, so no two outcomes share a statement by their values.
    queue_deliveries(webhook, 12, moment, lambda n: {"attempt_count": n % 3})
    claims = deliveries.claim("batcher", 60.0, Capacity(free=64, per_webhook=64, per_organization=64))
    assert len(claims) == 12
    # One claim went stale: its row moved on (another dispatcher took it after its lease ran out).
    stale = claims[0]
    DeliveryRow.update(lease_owner="someone-else").where(DeliveryRow.id == stale.row_id).execute()

    # Every other one failed, each failure with its own retry time, as jittered schedules give.
    outcomes = [outcome_of(claim, moment + 60 + n if n % 2 == 1 else None) for n, claim in enumerate(claims)]

    ran = statements_of(lambda: deliveries.record(outcomes))

    updates = [statement for statement in ran if 'UPDATE "delivery"' in statement]
    assert len(updates) == 1, updates
    rows = {row.id: row for row in DeliveryRow.select().where(DeliveryRow.webhook == webhook)}
    assert rows[stale.row_id].lease_owner == "someone-else"
    assert rows[stale.row_id].attempt_count == stale.attempt_count
    for n, outcome in enumerate(outcomes[1:], start=1):
        row = rows[outcome.claim.row_id]
        assert row.state == ("pending" if n % 2 else "succeeded")
        assert row.attempt_count == outcome.claim.attempt_count + 1
        assert row.next_attempt_time == outcome.next_attempt_time
        assert row.lease_owner is None
