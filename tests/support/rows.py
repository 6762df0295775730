"""Webhooks and queued deliveries written straight into the store's tables, for tests that claim by hand on a
server's store thread: what publishes would leave, made in one statement per 2,000 rows; and the outcomes
such tests record, as a dispatcher would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.support.running import RunningServer
from webhook_service.domain.model import Attempt, DeliveryState
from webhook_service.store.deliveries import Claim, Outcome
from webhook_service.store.models import DeliveryRow, WebhookRow


def on_the_store_thread(start_server: Callable[..., RunningServer], work: Callable[[Any], None]) -> None:
    """`work(db)` on the store thread of a server that sends nothing: the deliveries it makes stay pending, and
    only what `work` claims is claimed."""
    server = start_server(concurrency=0)
    store = server.server.store
    assert store is not None
    server.run(store.run(work, store.db))


def webhook_row(organization: str, webhook_id: str, moment: float, **fields: Any) -> int:
    """A webhook's row ID; `fields` set its other columns (active, ordering...)."""
    return int(
        WebhookRow.create(
            organization=organization,
            webhook_id=webhook_id,
            display_name=webhook_id,
            payload_url="http://example.com/",
            format="raw",
            create_time=moment,
            update_time=moment,
            **fields,
        ).id
    )


def queue_deliveries(
    webhook: int, count: int, moment: float, vary: Callable[[int], dict[str, Any]] = lambda n: {}
) -> None:
    """`count` pending deliveries of `webhook`, all due by `moment`, oldest first; `vary(n)` sets other columns
    of the n-th."""
    rows = [
        {
            "delivery_id": f"{webhook}-{n}",
            "webhook": webhook,
            "kind": "stack_update",
            "payload": b"{}",
            "state": "pending",
            "attempt_count": 0,
            "next_attempt_time": moment - count + n,
            "create_time": moment,
            **vary(n),
        }
        for n in range(count)
    ]
    for batch in range(0, count, 2000):
        DeliveryRow.insert_many(rows[batch : batch + 2000]).execute()


def outcome_of(claim: Claim, retry_at: float | None = None) -> Outcome:
    """What a dispatcher records for `claim`'s attempt: a 200, or with `retry_at` a 500, to be tried again then."""
    failed = retry_at is not None
    attempt = Attempt(
        number=claim.attempt_count + 1,
        start_time=datetime.now(UTC),
        request_url="http://example.com/",
        request_headers={},
        response_code=500 if failed else 200,
        duration=0.01,
    )
    return Outcome(
        claim=claim,
        attempt=attempt,
        state=DeliveryState.PENDING if failed else DeliveryState.SUCCEEDED,
        next_attempt_time=retry_at,
        succeeded=not failed,
    )
