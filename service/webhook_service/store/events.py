"""Publishing: the event and its deliveries stored in one transaction."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import peewee

from webhook_service.domain.idempotency import RequestKey
from webhook_service.domain.model import DeliveryState, Event, Webhook, WebhookOrdering
from webhook_service.store import idempotency, notify, sequences, statements, webhooks
from webhook_service.store.database import savepoint, transaction
from webhook_service.store.times import now

# How long a PublishEvent request_id is remembered.
IDEMPOTENCY_WINDOW = 24 * 3600.0
PENDING = DeliveryState.PENDING.value

# Every publish runs these, so they are fixed SQL.
_INSERT_EVENT = (
    'INSERT INTO "event" ("event_id", "organization", "project", "stack", "kind", "create_time")'
    ' VALUES (?, ?, ?, ?, ?, ?) RETURNING "id"'
)
_INSERT_BODY = 'INSERT INTO "body" ("event_id", "payload") VALUES (?, ?) RETURNING "id"'
_INSERT_DELIVERY = (
    'INSERT INTO "delivery" ("delivery_id", "webhook_id", "event_id", "kind", "payload", "state",'
    ' "attempt_count", "next_attempt_time", "create_time", "sequence", "body_id")'
    " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Published:
    event_id: str
    deliveries: tuple[str, ...]
    # The first answer to a repeated request_id: nothing new was stored.
    replayed: bool = False


def new_id() -> str:
    """24 hex digits: the milliseconds since the epoch, then 48 random bits. IDs drawn later sort later, so a
    publish adds its event's and deliveries' IDs at the end of their unique indexes rather than at random
    pages of them: with 20,000 deliveries stored that took a sixth off a publish's CPU, and a random key's
    cost grows with the table."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Publication:
    """One publish of a group: `event`, with a delivery for each webhook, with its body, that `route` picks
    among the stack's active ones; `key` its request's, when it has a request_id."""

    event: Event
    kind: str
    route: Callable[[list[Webhook]], list[tuple[Webhook, bytes]]]
    first_delay: float
    key: RequestKey | None = None


def publish_all(publications: list[Publication]) -> list[Published | Exception]:
    """Stores each publication, all in one transaction, each in a savepoint of its own: one that fails is
    answered with its error and leaves nothing behind, while the others commit. A repeat of a request under its
    key within the window is answered with the first answer instead. A failure of the transaction itself (the
    database lost, the commit refused) raises, and then none is stored.

    Routing runs inside the transaction, so a webhook created or deactivated concurrently is either fully
    in or fully out. Two servers racing on one request_id meet at its unique key: the loser reads the
    winner's answer.
    """
    answers: list[Published | Exception] = []
    with transaction():
        for publication in publications:
            try:
                answers.append(_publish_alone(publication))
            except (peewee.OperationalError, peewee.InterfaceError):
                raise  # the connection or the transaction, not this publication
            except Exception as error:
                answers.append(error)
        # Once for the group: dispatchers hear it when the transaction commits, and PostgreSQL folds a
        # transaction's identical notifications into one anyway; each publication's own was a round trip.
        if any(isinstance(answer, Published) and answer.deliveries and not answer.replayed for answer in answers):
            notify.announce()
    return answers


def _publish_alone(publication: Publication) -> Published:
    try:
        with savepoint():
            return _publish(publication)
    except peewee.IntegrityError:
        if publication.key is None:
            raise
        with savepoint():
            return _publish(publication)


def _shared_bodies(event_row: int, payloads: list[bytes]) -> dict[bytes, int]:
    """Stores once each body more than one of the event's deliveries send; returns their row IDs by content.
    Routing hands every webhook of a format the same bytes object, whose hash Python keeps: counting them
    hashes each body once."""
    counts = Counter(payloads)
    return {
        payload: statements.execute(_INSERT_BODY, (event_row, payload)).fetchone()[0]
        for payload, count in counts.items()
        if count > 1
    }


def _publish(publication: Publication) -> Published:
    """The answer is remembered under the request's key before the event is stored, as its IDs are drawn here:
    the first statement that touches the key settles whether this is a repeat."""
    event, kind, key, first_delay = publication.event, publication.kind, publication.key, publication.first_delay
    moment = now()
    candidates = webhooks.active_for_stack(event.parent)
    row_ids = {w.name: row_id for row_id, w in candidates}
    outgoing = [(webhook, payload, new_id()) for webhook, payload in publication.route([w for _, w in candidates])]
    published = Published(
        new_id(), tuple(f"{webhook.name}/deliveries/{delivery_id}" for webhook, _, delivery_id in outgoing)
    )
    if key is not None:
        expired_before = moment - IDEMPOTENCY_WINDOW
        answer = json.dumps({"event_id": published.event_id, "deliveries": list(published.deliveries)})
        if not idempotency.try_remember(idempotency.PUBLISH_EVENT, key, answer, expired_before):
            return _replayed(key, expired_before)
    [(event_row,)] = statements.execute(
        _INSERT_EVENT, (published.event_id, event.organization_name, event.project, event.stack, kind, moment)
    ).fetchall()
    sequence = sequences.of_stack(event.project, event.stack)
    shared = _shared_bodies(event_row, [payload for _, payload, _ in outgoing])
    rows = []
    for webhook, payload, delivery_id in outgoing:
        body = shared.get(payload)
        rows.append(
            (
                delivery_id,
                row_ids[webhook.name],
                event_row,
                kind,
                b"" if body is not None else payload,
                PENDING,
                moment + first_delay,
                moment,
                sequence if webhook.ordering is WebhookOrdering.PER_STACK else "",
                body,
            )
        )
    if rows:
        statements.execute_many(_INSERT_DELIVERY, rows)
    return published


def _replayed(key: RequestKey, expired_before: float) -> Published:
    """The first answer to a request whose key holds a live one; raises InvalidArgument for another request."""
    earlier = idempotency.recall(idempotency.PUBLISH_EVENT, key, expired_before)
    if earlier is None:
        # The key was pruned since it was found live: the retry starts over.
        raise peewee.IntegrityError("the PublishEvent request_id was forgotten while it was read")
    answer = json.loads(earlier)
    return Published(answer["event_id"], tuple(answer["deliveries"]), replayed=True)
