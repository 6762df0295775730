"""Request IDs already answered: a repeat of a call gets the first answer."""

from __future__ import annotations

from webhook_service.store.models import IdempotencyRow
from webhook_service.store.times import now

CREATE_WEBHOOK = "CreateWebhook"
PUBLISH_EVENT = "PublishEvent"


def recall(scope: str, request_id: str) -> str | None:
    row = IdempotencyRow.get_or_none((IdempotencyRow.scope == scope) & (IdempotencyRow.request_id == request_id))
    return None if row is None else str(row.response)


def remember(scope: str, request_id: str, response: str) -> None:
    IdempotencyRow.create(scope=scope, request_id=request_id, response=response, create_time=now())


def forget_before(cutoff: float) -> int:
    return int(IdempotencyRow.delete().where(IdempotencyRow.create_time < cutoff).execute())
