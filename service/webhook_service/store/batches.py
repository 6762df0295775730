"""Large deletions in short transactions, so retention or a deleted webhook never holds the write lock long."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import peewee

from webhook_service.store.database import transaction

BATCH_ROWS = 1000


def delete_in_batches(
    model: type[peewee.Model],
    condition: peewee.Expression,
    batch: int = BATCH_ROWS,
    then: tuple[peewee.Field, Callable[[list[Any]], None]] | None = None,
) -> int:
    """Deletes the rows of `model` matching `condition`, `batch` at a time; returns how many went.

    With `then`, a column and a call: each batch's transaction ends with the call, given that column of the
    rows the batch deleted, for what goes with them."""
    key = cast(peewee.Field, model._meta.primary_key)
    gone = 0
    while True:
        with transaction():
            chosen = model.select(key).where(condition).limit(batch)
            deleting = model.delete().where(key.in_(chosen))
            if then is None:
                deleted = int(deleting.execute())
            else:
                column, call = then
                values = [value for (value,) in deleting.returning(column).tuples()]
                call(values)
                deleted = len(values)
        gone += deleted
        if deleted < batch:
            return gone
