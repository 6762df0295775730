"""The delivery queue and log: claiming under a lease, recording attempts, reading, pruning."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import peewee

from webhook_service.domain.errors import NotFound
from webhook_service.domain.model import Attempt, Delivery, DeliveryState
from webhook_service.domain.names import DeliveryName, Parent, WebhookName
from webhook_service.store import idempotency, secrets, statements
from webhook_service.store import webhooks as webhook_rows
from webhook_service.store.database import transaction
from webhook_service.store.models import AttemptRow, DeliveryRow, EventRow, WebhookRow, database
from webhook_service.store.times import now, to_datetime

PENDING = DeliveryState.PENDING.value


@dataclass(frozen=True)
class Claim:
    """A delivery handed to one sender, with what it needs to make the request."""

    row_id: int
    delivery_id: str
    webhook_row: int
    webhook_name: str
    kind: str
    payload: bytes
    payload_url: str
    secret: str
    attempt_count: int


@dataclass(frozen=True)
class Outcome:
    """An attempt's result and what it does to the delivery and its webhook.

    `queued` outcomes come from the queue: they count only while the lease is
    still this dispatcher's, and they tell on the webhook's health. Direct
    sends (ping, redeliver) hold no lease and leave the webhook as it is.
    A `disable_reason` deactivates the webhook with that reason.
    """

    claim: Claim
    attempt: Attempt
    state: DeliveryState
    next_attempt_time: float | None
    succeeded: bool
    disable_reason: str = ""
    queued: bool = True


_CLAIM_COLUMNS = (
    DeliveryRow.id,
    DeliveryRow.delivery_id,
    DeliveryRow.kind,
    DeliveryRow.payload,
    DeliveryRow.attempt_count,
    WebhookRow.id,
    WebhookRow.organization,
    WebhookRow.project,
    WebhookRow.stack,
    WebhookRow.webhook_id,
    WebhookRow.payload_url,
    WebhookRow.secret,
)


def _tuples(query: peewee.BaseQuery) -> Iterable[tuple[Any, ...]]:
    """A query's rows as plain tuples, skipping model objects where speed counts."""
    return cast(Iterable[tuple[Any, ...]], query.tuples())


def _claims(row_ids: list[int]) -> list[Claim]:
    """What senders need for these deliveries, read as plain tuples: this runs for every delivery."""
    query = _tuples(DeliveryRow.select(*_CLAIM_COLUMNS).join(WebhookRow).where(DeliveryRow.id.in_(row_ids)))
    box = secrets.box()
    return [
        Claim(
            row_id=row_id,
            delivery_id=delivery_id,
            webhook_row=webhook_row,
            webhook_name=str(WebhookName(Parent(organization, project, stack), webhook_id)),
            kind=kind,
            payload=bytes(payload),
            payload_url=payload_url,
            secret=box.open(secret),
            attempt_count=attempt_count,
        )
        for (
            row_id,
            delivery_id,
            kind,
            payload,
            attempt_count,
            webhook_row,
            organization,
            project,
            stack,
            webhook_id,
            payload_url,
            secret,
        ) in query
    ]


def claim(owner: str, lease: float, limit: int, per_webhook: int, busy: Mapping[int, int]) -> list[Claim]:
    """Leases up to `limit` due deliveries of active webhooks, at most `per_webhook` in flight for each.

    `busy` counts what this dispatcher already has in flight per webhook row, so
    one slow receiver's backlog never fills the batch. Candidates are bare
    (id, webhook) pairs; only the chosen deliveries are read whole.
    """
    with transaction():
        moment = now()
        saturated = [webhook for webhook, count in busy.items() if count >= per_webhook]
        query = (
            DeliveryRow.select(DeliveryRow.id, DeliveryRow.webhook)
            .join(WebhookRow)
            .where(
                (DeliveryRow.state == PENDING)
                & (DeliveryRow.next_attempt_time <= moment)
                & (DeliveryRow.lease_expires.is_null() | (DeliveryRow.lease_expires < moment))
                & (WebhookRow.active == True)  # noqa: E712 - peewee builds SQL from ==
            )
            .order_by(DeliveryRow.next_attempt_time)
            .limit(limit * 4)
        )
        if saturated:
            query = query.where(DeliveryRow.webhook.not_in(saturated))
        if not isinstance(database.obj, peewee.SqliteDatabase):
            query = query.for_update(of=DeliveryRow, skip_locked=True)
        counts = Counter(busy)
        chosen: list[int] = []
        for row_id, webhook_row in _tuples(query):
            if counts[webhook_row] < per_webhook:
                counts[webhook_row] += 1
                chosen.append(row_id)
                if len(chosen) == limit:
                    break
        if not chosen:
            return []
        DeliveryRow.update(lease_owner=owner, lease_expires=moment + lease).where(DeliveryRow.id.in_(chosen)).execute()
        return _claims(chosen)


def release(owner: str) -> int:
    """Gives back every claim `owner` still holds, so another dispatcher need not wait for the leases to expire."""
    with transaction():
        return int(
            DeliveryRow.update(lease_owner=None, lease_expires=None)
            .where((DeliveryRow.lease_owner == owner) & (DeliveryRow.state == PENDING))
            .execute()
        )


def record(
    owner: str,
    outcomes: list[Outcome],
    disable_after: float | None = None,
    failing_reason: Callable[[datetime], str] = str,
) -> list[str]:
    """Stores attempts and their effects in one transaction; returns the names of webhooks it deactivated.

    With `disable_after`, webhooks failing for longer than that are deactivated with `failing_reason`.
    """
    if not outcomes:
        return []
    with transaction():
        moment = now()
        kept = _close_attempts(owner, outcomes)
        if kept:
            _insert_attempts(kept)
        queued = [o for o in kept if o.queued]
        succeeded = {o.claim.webhook_row for o in queued if o.succeeded}
        failed = {o.claim.webhook_row for o in queued if not o.succeeded} - succeeded
        if succeeded:
            WebhookRow.update(failing_since=None).where(
                WebhookRow.id.in_(succeeded) & WebhookRow.failing_since.is_null(False)
            ).execute()
        if failed:
            WebhookRow.update(failing_since=moment).where(
                WebhookRow.id.in_(failed) & WebhookRow.failing_since.is_null()
            ).execute()
        disabled = []
        for outcome in queued:
            if outcome.disable_reason:
                disabled += _deactivate(WebhookRow.id == outcome.claim.webhook_row, _fixed(outcome.disable_reason))
        if failed and disable_after is not None:
            disabled += _deactivate(
                WebhookRow.id.in_(failed) & (WebhookRow.failing_since <= moment - disable_after), failing_reason
            )
        return disabled


def _close_attempts(owner: str, outcomes: list[Outcome]) -> list[Outcome]:
    """Writes each delivery's new state, one statement per group of like outcomes; returns the outcomes
    that count. A queued outcome whose lease expired meanwhile belongs to another dispatcher now, which
    records its own attempt, so it is dropped."""
    groups: dict[tuple[str, float | None, bool], list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.state.value, outcome.next_attempt_time, outcome.queued), []).append(outcome)
    kept: list[Outcome] = []
    for (state, next_attempt_time, queued), members in groups.items():
        for batch in peewee.chunked(members, 500):
            update = DeliveryRow.update(
                state=state,
                attempt_count=DeliveryRow.attempt_count + 1,
                next_attempt_time=next_attempt_time,
                lease_owner=None,
                lease_expires=None,
            ).where(DeliveryRow.id.in_([o.claim.row_id for o in batch]))
            if queued:
                update = update.where(DeliveryRow.lease_owner == owner)
            updated = {row_id for (row_id,) in _tuples(update.returning(DeliveryRow.id))}
            kept += [o for o in batch if o.claim.row_id in updated]
    return kept


_ATTEMPT_COLUMNS = (
    "delivery_id",
    "attempt_number",
    "start_time",
    "request_url",
    "request_headers",
    "response_code",
    "response_headers",
    "response_body",
    "duration",
    "error",
)


_INSERT_ATTEMPT = (
    f'INSERT INTO "delivery_attempt" ({statements.columns(_ATTEMPT_COLUMNS)})'
    f" VALUES ({statements.placeholders(len(_ATTEMPT_COLUMNS))})"
)


def _insert_attempts(outcomes: list[Outcome]) -> None:
    """One prepared INSERT run for every attempt: building a statement per row costs more than sending it."""
    statements.execute_many(_INSERT_ATTEMPT, [_attempt_values(outcome) for outcome in outcomes])


def _fixed(reason: str) -> Callable[[datetime], str]:
    return lambda _since: reason


def _deactivate(where: peewee.Expression, reason: Callable[[datetime], str]) -> list[str]:
    names = []
    for row in WebhookRow.select().where(where & (WebhookRow.active == True)):  # noqa: E712
        since = to_datetime(row.failing_since or now())
        assert since is not None
        WebhookRow.update(active=False, disabled_reason=reason(since), update_time=now()).where(
            WebhookRow.id == row.id
        ).execute()
        names.append(webhook_rows.name_of(row))
    return names


def _attempt_values(outcome: Outcome) -> tuple[object, ...]:
    """An attempt row in the order of _ATTEMPT_COLUMNS."""
    attempt = outcome.attempt
    return (
        outcome.claim.row_id,
        outcome.claim.attempt_count + 1,
        attempt.start_time.timestamp(),
        attempt.request_url,
        json.dumps(attempt.request_headers),
        attempt.response_code,
        json.dumps(attempt.response_headers),
        attempt.response_body,
        attempt.duration,
        attempt.error,
    )


def create_direct(webhook: WebhookName, kind: str, payload: bytes, delivery_id: str) -> Claim:
    """A delivery sent at once rather than queued (a ping): stored first, so its attempt has a home."""
    with transaction():
        row = webhook_rows.find_row(webhook)
        moment = now()
        delivery = DeliveryRow.create(
            delivery_id=delivery_id,
            webhook=row.id,
            kind=kind,
            payload=payload,
            state=PENDING,
            next_attempt_time=None,
            create_time=moment,
        )
        [made] = _claims([delivery.id])
        return made


def _joined() -> peewee.ModelSelect[DeliveryRow]:
    """Deliveries with their webhook and event, read in the same query."""
    return (
        DeliveryRow.select(DeliveryRow, WebhookRow, EventRow)
        .join(WebhookRow)
        .switch(DeliveryRow)
        .join(EventRow, peewee.JOIN.LEFT_OUTER)
    )


def _delivery_row(name: DeliveryName) -> DeliveryRow:
    webhook = webhook_rows.find_row(name.webhook)
    row = _joined().where((DeliveryRow.delivery_id == name.delivery_id) & (DeliveryRow.webhook == webhook.id)).first()
    if row is None:
        raise NotFound(f"delivery {name} does not exist")
    found: DeliveryRow = row
    return found


def for_redelivery(name: DeliveryName) -> tuple[Claim, Delivery]:
    row = _delivery_row(name)
    [again] = _claims([row.id])
    return again, _to_delivery(row, [])


def get(name: DeliveryName) -> Delivery:
    return _with_attempts(_delivery_row(name))


def get_by_id(row_id: int) -> Delivery:
    return _with_attempts(
        DeliveryRow.select(DeliveryRow, WebhookRow).join(WebhookRow).where(DeliveryRow.id == row_id).get()
    )


def _with_attempts(row: DeliveryRow) -> Delivery:
    attempts = AttemptRow.select().where(AttemptRow.delivery == row.id).order_by(AttemptRow.attempt_number)
    return _to_delivery(row, list(attempts))


def list_page(webhook: WebhookName, before_id: int | None, limit: int, full: bool) -> tuple[list[Delivery], int | None]:
    """Newest first: up to `limit` deliveries older than the cursor. `full`, each as `get` returns it;
    otherwise with no payload and only its latest attempt's outcome, and the rest is not even read."""
    webhook_row = webhook_rows.find_row(webhook)
    deliveries_query, attempts_query = _listing(full)
    query = deliveries_query.where(DeliveryRow.webhook == webhook_row.id)
    if before_id is not None:
        query = query.where(DeliveryRow.id < before_id)
    rows = list(query.order_by(DeliveryRow.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    attempts: dict[int, list[AttemptRow]] = {}
    if rows:
        in_page = attempts_query.where(AttemptRow.delivery.in_([r.id for r in rows]))
        for attempt in in_page.order_by(AttemptRow.attempt_number):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    deliveries = []
    for row in rows:
        found = attempts.get(row.id, [])
        deliveries.append(_to_delivery(row, found if full else found[-1:]))
    return deliveries, (rows[-1].id if more else None)


def _listing(full: bool) -> tuple[peewee.ModelSelect[DeliveryRow], peewee.ModelSelect[AttemptRow]]:
    """The queries behind a page of deliveries and their attempts. Short of `full`, the payload, the
    requests and the response bodies stay unread: empty values stand in for them, so rows convert as usual."""
    if full:
        return _joined(), AttemptRow.select()
    deliveries = DeliveryRow.select(
        *(column for column in DeliveryRow._meta.sorted_fields if column is not DeliveryRow.payload),
        peewee.Value(b"").alias("payload"),
        WebhookRow.organization,
        WebhookRow.project,
        WebhookRow.stack,
        WebhookRow.webhook_id,
        EventRow.event_id,
    )
    attempts = AttemptRow.select(
        AttemptRow.delivery,
        AttemptRow.attempt_number,
        AttemptRow.start_time,
        AttemptRow.response_code,
        AttemptRow.duration,
        AttemptRow.error,
        peewee.Value("").alias("request_url"),
        peewee.Value("{}").alias("request_headers"),
        peewee.Value("{}").alias("response_headers"),
        peewee.Value("").alias("response_body"),
    )
    return deliveries.join(WebhookRow).switch(DeliveryRow).join(EventRow, peewee.JOIN.LEFT_OUTER), attempts


def _to_delivery(row: DeliveryRow, attempts: list[AttemptRow]) -> Delivery:
    create_time = to_datetime(row.create_time)
    assert create_time is not None
    return Delivery(
        webhook=webhook_rows.name_of(row.webhook),
        delivery_id=row.delivery_id,
        event_id=row.event.event_id if row.event is not None else "",
        kind=row.kind,
        payload=bytes(row.payload),
        state=DeliveryState(row.state),
        attempt_count=row.attempt_count,
        next_attempt_time=to_datetime(row.next_attempt_time) if row.state == PENDING else None,
        create_time=create_time,
        attempts=tuple(_to_attempt(a) for a in attempts),
    )


def _to_attempt(row: AttemptRow) -> Attempt:
    start = to_datetime(row.start_time)
    assert start is not None
    return Attempt(
        number=row.attempt_number,
        start_time=start,
        request_url=row.request_url,
        request_headers=json.loads(row.request_headers),
        response_code=row.response_code,
        response_headers=json.loads(row.response_headers),
        response_body=row.response_body,
        duration=row.duration,
        error=row.error,
    )


def prune(before: float, idempotency_before: float) -> int:
    """Deletes events and deliveries created before `before`; returns how many deliveries went."""
    with transaction():
        old_events = EventRow.select(EventRow.id).where(EventRow.create_time < before)
        gone = int(
            DeliveryRow.delete().where((DeliveryRow.create_time < before) | DeliveryRow.event.in_(old_events)).execute()
        )
        EventRow.delete().where(EventRow.create_time < before).execute()
        idempotency.forget_before(idempotency_before)
        return gone
