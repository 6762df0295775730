"""Deleting deliveries with the shared bodies only they sent.

A body belongs to its event and goes with it, so retention, which deletes old events, needs nothing here.
A webhook's deliveries go long before their events: a body only they sent goes with them, one another
webhook's delivery still sends stays.
"""

from __future__ import annotations

import peewee

from webhook_service.store import statements
from webhook_service.store.batches import BATCH_ROWS, delete_in_batches
from webhook_service.store.models import DeliveryRow

# Bodies are looked for among their own event's deliveries, through the index on the event.
_UNUSED_BODIES = (
    'DELETE FROM "body" WHERE "id" {among} AND NOT EXISTS (SELECT 1 FROM "delivery" d'
    ' WHERE d."event_id" = "body"."event_id" AND d."body_id" = "body"."id")'
)


def delete_deliveries(condition: peewee.Expression, batch: int = BATCH_ROWS) -> int:
    """Deletes the deliveries matching `condition`, `batch` at a time, each batch in a transaction with the
    bodies no delivery sends any more; returns how many deliveries went.

    On PostgreSQL two deletions that take an event's last deliveries at the same moment may each still see
    the other's and keep the body: it then goes with its event, as retention prunes it.
    """
    return delete_in_batches(DeliveryRow, condition, batch, then=(DeliveryRow.body_id, _delete_unused))


def _delete_unused(sent: list[int | None]) -> None:
    bodies = {body for body in sent if body is not None}
    if bodies:
        among, ids = statements.any_of(sorted(bodies))
        statements.execute(_UNUSED_BODIES.format(among=among), (ids,))
