"""Large deletions in short transactions, so retention or a deleted webhook never holds the write lock long."""

from __future__ import annotations

from typing import cast

import peewee

from webhook_service.store.database import transaction

BATCH_ROWS = 1000


def delete_in_batches(model: type[peewee.Model], condition: peewee.Expression, batch: int = BATCH_ROWS) -> int:
    """Deletes the rows of `model` matching `condition`, `batch` at a time; returns how many went."""
    key = cast(peewee.Field, model._meta.primary_key)
    gone = 0
    while True:
        with transaction():
            chosen = model.select(key).where(condition).limit(batch)
            deleted = int(model.delete().where(key.in_(chosen)).execute())
        gone += deleted
        if deleted < batch:
            return gone
