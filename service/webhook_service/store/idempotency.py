"""Request IDs already answered: a repeat of a call gets the first answer."""

from __future__ import annotations

from peewee import Expression

from webhook_service.store.batches import delete_in_batches
from webhook_service.store.models import IdempotencyRow
from webhook_service.store.times import now

CREATE_WEBHOOK = "CreateWebhook"
PUBLISH_EVENT = "PublishEvent"


def _key(scope: str, request_id: str) -> Expression:
    return (IdempotencyRow.scope == scope) & (IdempotencyRow.request_id == request_id)


def recall(scope: str, request_id: str, since: float = 0.0) -> str | None:
    """The answer remembered for `request_id`, if it was given after `since`."""
    row = IdempotencyRow.get_or_none(_key(scope, request_id) & (IdempotencyRow.create_time >= since))
    return None if row is None else str(row.response)


def remember(scope: str, request_id: str, response: str, expired_before: float = 0.0) -> None:
    """Stores the answer; the unique key makes a concurrent first use of the same request_id fail here.

    A key older than `expired_before` that the pruner has not reached yet gives way to the new answer;
    a live one never does, or two racing calls could both win.
    """
    IdempotencyRow.delete().where(_key(scope, request_id) & (IdempotencyRow.create_time < expired_before)).execute()
    IdempotencyRow.create(scope=scope, request_id=request_id, response=response, create_time=now())


def forget_before(cutoff: float) -> int:
    return delete_in_batches(IdempotencyRow, IdempotencyRow.create_time < cutoff)
