"""Request IDs already answered: a repeat of a call gets the first answer, another call under its key is refused."""

from __future__ import annotations

import hmac

import peewee
from peewee import Expression, SqliteDatabase

from webhook_service.domain.errors import InvalidArgument, Reason
from webhook_service.domain.idempotency import RequestKey
from webhook_service.store import secrets, statements
from webhook_service.store.batches import delete_in_batches
from webhook_service.store.models import IdempotencyRow, database
from webhook_service.store.times import now

CREATE_WEBHOOK = "CreateWebhook"
PUBLISH_EVENT = "PublishEvent"
RECOVER_DELIVERIES = "RecoverWebhookDeliveries"


def _key(scope: str, key: RequestKey) -> Expression:
    return (
        (IdempotencyRow.scope == scope)
        & (IdempotencyRow.organization == key.organization)
        & (IdempotencyRow.request_id == key.request_id)
    )


# Every publish with a request_id runs these, so they are fixed SQL.
_KEY = '"scope" = ? AND "organization" = ? AND "request_id" = ?'
_RECALL = f'SELECT "fingerprint", "response" FROM "idempotency_key" WHERE {_KEY} AND "create_time" >= ?'
_LOCKED = " FOR UPDATE"
# An expired key the pruner has not reached yet is taken over in the same statement; a live one is left as it is.
_REMEMBER = (
    'INSERT INTO "idempotency_key" ("scope", "organization", "request_id", "fingerprint", "response", "create_time")'
    ' VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT ("scope", "organization", "request_id") DO UPDATE SET'
    ' "fingerprint" = excluded."fingerprint", "response" = excluded."response", "create_time" = excluded."create_time"'
    ' WHERE "idempotency_key"."create_time" < ?'
)


def recall(scope: str, key: RequestKey, since: float = 0.0, lock: bool = False) -> str | None:
    """The answer remembered for `key`, if it was given after `since`; raises InvalidArgument when the
    request_id was used for another request. With `lock`, the key stays locked until the transaction ends
    (SQLite's write lock does that already), for an answer that is written in steps."""
    text = _RECALL + _LOCKED if lock and not isinstance(database.obj, SqliteDatabase) else _RECALL
    row = statements.execute(text, (scope, key.organization, key.request_id, since)).fetchone()
    if row is None:
        return None
    fingerprint, response = row
    if not hmac.compare_digest(str(fingerprint), secrets.box().fingerprint(key.request)):
        raise InvalidArgument(
            "request_id",
            "was used for a different request; give this one a new request_id",
            Reason.REQUEST_ID_REUSED,
        )
    return str(response)


def remember(scope: str, key: RequestKey, response: str, expired_before: float = 0.0) -> None:
    """Stores the answer; the unique key makes a concurrent first use of the same request_id fail here.

    A key older than `expired_before` that the pruner has not reached yet gives way to the new answer;
    a live one never does, or two racing calls could both win.
    """
    if not try_remember(scope, key, response, expired_before):
        # What the unique key raised before the statement took expired keys over, so callers still retry
        # and read the answer of the call that won.
        raise peewee.IntegrityError(f"the {scope} request_id is already answered")


def try_remember(scope: str, key: RequestKey, response: str, expired_before: float = 0.0) -> bool:
    """`remember`, which returns False, rather than raising, when a live answer is remembered under the key: the
    caller recalls it then. A concurrent first use waits here until its transaction ends."""
    fingerprint = secrets.box().fingerprint(key.request)
    params = (scope, key.organization, key.request_id, fingerprint, response, now(), expired_before)
    return bool(statements.execute(_REMEMBER, params).rowcount)


def revise(scope: str, key: RequestKey, response: str) -> None:
    """Replaces the answer remembered for `key`, for a request whose work takes several transactions."""
    IdempotencyRow.update(response=response).where(_key(scope, key)).execute()


def forget_before(cutoff: float) -> int:
    return delete_in_batches(IdempotencyRow, IdempotencyRow.create_time < cutoff)
