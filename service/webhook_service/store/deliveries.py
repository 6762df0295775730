"""The delivery queue and log: claiming under a lease, recording attempts, reading, pruning."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import peewee

from webhook_service.domain.errors import FailedPrecondition, NotFound, Reason
from webhook_service.domain.idempotency import RequestKey
from webhook_service.domain.model import Attempt, Delivery, DeliveryState, WebhookOrdering
from webhook_service.domain.names import DeliveryName, Parent, WebhookName
from webhook_service.domain.responses import cap_headers, printable
from webhook_service.domain.scheduling import Candidates, Capacity, share
from webhook_service.store import health, idempotency, notify, secrets, sequences, statements
from webhook_service.store import webhooks as webhook_rows
from webhook_service.store.batches import BATCH_ROWS, delete_in_batches
from webhook_service.store.database import transaction
from webhook_service.store.events import IDEMPOTENCY_WINDOW
from webhook_service.store.models import (
    AttemptRow,
    BodyRow,
    DeliveryRow,
    EventRow,
    SequenceLeaseRow,
    WebhookRow,
    database,
)
from webhook_service.store.times import now, to_datetime

PENDING = DeliveryState.PENDING.value
FAILED = DeliveryState.FAILED.value
PER_STACK = WebhookOrdering.PER_STACK.value


@dataclass(frozen=True)
class Claim:
    """A delivery handed to one sender, with what it needs to make the request.

    `lease`, `attempt_count` and `state` fence the claim: its outcome is recorded only while the row
    still carries that lease, count and state, so a late or duplicate outcome can never overwrite a newer
    one. `unreadable` says why the request cannot be made at all (a secret sealed by another key).
    `previous_secret` is the secret a rotation replaced while its overlap lasts; `schedule_start` the
    attempts made before the retry schedule last began (a recovered delivery starts it afresh). `sequence`
    is the stack sequence of an ordered webhook the claim holds until its outcome is recorded; empty for a
    delivery that holds none.
    """

    row_id: int
    delivery_id: str
    webhook_row: int
    webhook_name: str
    organization: str
    kind: str
    payload: bytes
    payload_url: str
    secret: str = field(repr=False)
    attempt_count: int
    lease: str
    state: str = PENDING
    unreadable: str = ""
    # When the delivery was made (seconds since the epoch): publish-to-success latency starts here.
    create_time: float = 0.0
    previous_secret: str = field(default="", repr=False)
    schedule_start: int = 0
    sequence: str = ""


@dataclass(frozen=True)
class Outcome:
    """An attempt's result and what it does to the delivery and its webhook.

    `queued` outcomes come from the queue and tell on the webhook's health; direct sends (ping,
    redeliver) leave the webhook as it is. A `disable_reason` deactivates the webhook with that reason.
    """

    claim: Claim
    attempt: Attempt
    state: DeliveryState
    next_attempt_time: float | None
    succeeded: bool
    disable_reason: str = ""
    queued: bool = True


# What senders need of each claimed delivery: read for every delivery, so fixed SQL.
_CLAIMED = (
    'SELECT d."id", d."delivery_id", d."kind", COALESCE(b."payload", d."payload"), d."attempt_count", d."state",'
    ' d."create_time", d."schedule_start", w."id", w."organization", w."project", w."stack", w."webhook_id",'
    ' w."payload_url", w."secret", w."previous_secret", w."previous_secret_expire_time"'
    ' FROM "delivery" d JOIN "webhook" w ON w."id" = d."webhook_id" LEFT JOIN "body" b ON b."id" = d."body_id"'
    ' WHERE d."id" {among}'
)
_LEASE = 'UPDATE "delivery" SET "lease_owner" = ?, "lease_expires" = ? WHERE "id" {among}'
# Each attempt's outcome, written only while the row still holds the claim's lease, attempt count and state;
# every outcome of a flush in one statement, whatever their states and retry times.
_CLOSE = (
    'UPDATE "delivery" SET "state" = t."state", "attempt_count" = t."attempts" + 1, "next_attempt_time" = t."next",'
    ' "lease_owner" = NULL, "lease_expires" = NULL FROM {outcomes}'
    ' WHERE "delivery"."id" = t."id" AND "delivery"."lease_owner" = t."lease"'
    ' AND "delivery"."attempt_count" = t."attempts" AND "delivery"."state" = t."claimed" RETURNING "delivery"."id"'
)
_SQLITE_CLOSE = _CLOSE.format(
    outcomes="(SELECT json_extract(value, '$[0]') AS \"id\", json_extract(value, '$[1]') AS \"state\","
    " json_extract(value, '$[2]') AS \"next\", json_extract(value, '$[3]') AS \"attempts\","
    " json_extract(value, '$[4]') AS \"claimed\", json_extract(value, '$[5]') AS \"lease\" FROM json_each(?)) AS t"
)
_POSTGRES_CLOSE = _CLOSE.format(
    outcomes="unnest(?::int[], ?::text[], ?::float8[], ?::int[], ?::text[], ?::text[])"
    ' AS t("id", "state", "next", "attempts", "claimed", "lease")'
)


def _tuples(query: peewee.BaseQuery) -> Iterable[tuple[Any, ...]]:
    """A query's rows as plain tuples, skipping model objects where speed counts."""
    return cast(Iterable[tuple[Any, ...]], query.tuples())


@functools.lru_cache(maxsize=4096)
def _webhook_name(organization: str, project: str, stack: str, webhook_id: str) -> str:
    """A webhook's name, made once for all of its claimed deliveries."""
    return str(WebhookName(Parent(organization, project, stack), webhook_id))


def _claims(row_ids: list[int], lease: str, held: Mapping[int, str] | None = None) -> list[Claim]:
    """What senders need for these deliveries, read as plain tuples: this runs for every delivery.

    A secret this process cannot open fails only the deliveries of its webhook, each with the reason. A
    previous secret signs until its overlap ends, erased or not. `held` are the sequences the claim holds
    for deliveries of ordered webhooks, by row ID.
    """
    held = held or {}
    among, ids = statements.any_of(row_ids)
    query = statements.execute(_CLAIMED.format(among=among), (ids,)).fetchall()
    box = secrets.box()
    moment = now()
    made = []

    for (
        row_id,
        delivery_id,
        kind,
        payload,
        attempt_count,
        state,
        create_time,
        schedule_start,
        webhook_row,
        organization,
        project,
        stack,
        webhook_id,
        payload_url,
        sealed,
        sealed_previous,
        previous_expires,
    ) in query:
        still_valid = previous_expires is not None and previous_expires > moment
        try:
            secret, unreadable = box.open(sealed), ""
            previous = box.open(sealed_previous) if still_valid else ""
        except ValueError as error:
            secret, previous, unreadable = "", "", f"not sent: {error}"
        made.append(
            Claim(
                row_id=row_id,
                delivery_id=delivery_id,
                webhook_row=webhook_row,
                webhook_name=_webhook_name(organization, project, stack, webhook_id),
                organization=organization,
                kind=kind,
                payload=bytes(payload),
                payload_url=payload_url,
                secret=secret,
                attempt_count=attempt_count,
                lease=lease,
                state=state,
                unreadable=unreadable,
                create_time=create_time,
                previous_secret=previous,
                schedule_start=schedule_start,
                sequence=held.get(row_id, ""),
            )
        )
    return made


# The webhooks with pending deliveries, found by skipping through the pending index one webhook at a time:
# the cost grows with the number of such webhooks, not with their backlogs, so a million deliveries parked
# on an inactive webhook cost one index probe. 'pending' is written out so the partial index applies, and each
# step is ordered as that index is: ordered by webhook alone, the plain webhook index serves as well, and
# PostgreSQL takes it once its statistics, gathered while a backlog was all pending, say every row is: it then
# reads through every delivered row of the webhook to find a pending one (a 20,000-delivery drain to one
# webhook spent 45% of its database CPU there, 2 ms a claim on average).
_PENDING_WEBHOOKS = """WITH RECURSIVE pending(webhook) AS (
    SELECT (SELECT "webhook_id" FROM "delivery" WHERE "state" = 'pending'
            ORDER BY "webhook_id", "next_attempt_time" LIMIT 1)
    UNION ALL
    SELECT (SELECT "webhook_id" FROM "delivery" WHERE "state" = 'pending' AND "webhook_id" > pending.webhook
            ORDER BY "webhook_id", "next_attempt_time" LIMIT 1)
    FROM pending WHERE pending.webhook IS NOT NULL)
SELECT "webhook"."id", "webhook"."organization", "webhook"."ordering"
FROM pending JOIN "webhook" ON "webhook"."id" = pending.webhook
WHERE "webhook"."active" = ?"""

_DUE = (
    'SELECT "id", "webhook_id" FROM "delivery" WHERE "state" = \'pending\' AND "webhook_id" = {webhook}'
    ' AND "next_attempt_time" <= ? AND ("lease_expires" IS NULL OR "lease_expires" < ?){mine}'
    ' ORDER BY "next_attempt_time" LIMIT {limit}'
)
# SQLite has no LATERAL: one limited index range per webhook, joined with UNION ALL (at most 500 terms).
_SQLITE_DUE_TERMS = 200
# PostgreSQL takes every webhook's range in one statement, locking what it returns; rows another
# dispatcher is claiming right now are skipped rather than waited for. The claiming dispatcher's own rows
# in flight are left out here, not dropped afterwards: room for them would lock as many more rows of every
# webhook, which the claim then leaves (a 10-webhook drain locked 1,600 rows a claim to lease 70).
_POSTGRES_DUE = (
    'SELECT d."id", d."webhook_id" FROM unnest(?::int[], ?::int[]) AS w("id", "wanted") CROSS JOIN LATERAL ('
    + _DUE.format(webhook='w."id"', limit='w."wanted"', mine=' AND "id" <> ALL(?::int[])')
    + " FOR UPDATE SKIP LOCKED) d"
)


def _due(wanted: dict[int, int], moment: float, in_flight: Set[int]) -> list[tuple[int, int]]:
    """Up to `wanted[webhook]` due, unleased deliveries of each webhook, oldest first, as (id, webhook). On
    PostgreSQL none of them is `in_flight`; SQLite, which locks nothing it reads, may return rows of
    `in_flight` whose lease ran out, for the caller to drop."""
    if not wanted:
        return []
    if isinstance(database.obj, peewee.SqliteDatabase):
        term = f"SELECT * FROM ({_DUE.format(webhook='?', limit='?', mine='')})"
        found: list[tuple[int, int]] = []
        for chunk in statements.batches(list(wanted.items()), _SQLITE_DUE_TERMS):
            params = [value for webhook, limit in chunk for value in (webhook, moment, moment, limit)]
            found += statements.execute(" UNION ALL ".join([term] * len(chunk)), params).fetchall()
        return found
    rows = statements.execute(_POSTGRES_DUE, (list(wanted), list(wanted.values()), moment, moment, list(in_flight)))
    return [(row_id, webhook) for row_id, webhook in rows.fetchall()]


# The deliveries an ordered webhook may send next: the oldest pending delivery of each of its sequences
# (publish order is ID order), when it is due, not leased, and no other delivery of its sequence is out.
# The sequences are found by skipping through the sequence index one at a time, so the cost grows with the
# sequences that have pending deliveries, not with their backlogs: a stack held back by a failing delivery
# costs two index probes however much waits behind it.
_HEADS = """WITH RECURSIVE wanted("id", "room") AS ({wanted}),
sequences("webhook", "sequence") AS (
    SELECT w."id", (SELECT d."sequence" FROM "delivery" d WHERE d."state" = 'pending' AND d."sequence" <> ''
                    AND d."webhook_id" = w."id" ORDER BY d."sequence" LIMIT 1)
    FROM wanted w
    UNION ALL
    SELECT s."webhook", (SELECT d."sequence" FROM "delivery" d WHERE d."state" = 'pending' AND d."sequence" <> ''
                         AND d."webhook_id" = s."webhook" AND d."sequence" > s."sequence"
                         ORDER BY d."sequence" LIMIT 1)
    FROM sequences s WHERE s."sequence" IS NOT NULL),
heads AS (
    SELECT d."id", d."webhook_id", d."sequence",
           ROW_NUMBER() OVER (PARTITION BY d."webhook_id" ORDER BY d."next_attempt_time", d."id") AS "rank"
    FROM sequences s JOIN "delivery" d ON d."id" = (
        SELECT o."id" FROM "delivery" o WHERE o."state" = 'pending' AND o."sequence" <> ''
        AND o."webhook_id" = s."webhook" AND o."sequence" = s."sequence" ORDER BY o."id" LIMIT 1)
    WHERE d."next_attempt_time" <= ? AND (d."lease_expires" IS NULL OR d."lease_expires" < ?)
    AND NOT EXISTS (SELECT 1 FROM "sequence_lease" l WHERE l."webhook_id" = s."webhook"
                    AND l."sequence" = s."sequence" AND l."lease_expires" >= ?))
SELECT h."id", h."webhook_id", h."sequence" FROM heads h JOIN wanted w ON w."id" = h."webhook_id"
WHERE h."rank" <= w."room" ORDER BY h."webhook_id", h."rank\""""
_SQLITE_HEADS = _HEADS.format(
    wanted="SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)"
)
_POSTGRES_HEADS = _HEADS.format(wanted="SELECT * FROM unnest(?::int[], ?::int[])")


def _heads(wanted: dict[int, int], moment: float) -> list[tuple[int, int, str]]:
    """Up to `wanted[webhook]` deliveries each ordered webhook may send next, oldest first, as (id, webhook,
    sequence)."""
    if not wanted:
        return []
    if isinstance(database.obj, peewee.SqliteDatabase):
        rows = statements.execute(_SQLITE_HEADS, (json.dumps(list(wanted.items())), moment, moment, moment))
    else:
        rows = statements.execute(_POSTGRES_HEADS, (list(wanted), list(wanted.values()), moment, moment, moment))
    return [(row_id, webhook, sequence) for row_id, webhook, sequence in rows.fetchall()]


# A sequence is taken when it has no lease or only an expired one (its dispatcher died or gave up on it).
_TAKE_TURNS = (
    'INSERT INTO "sequence_lease" ("webhook_id", "sequence", "delivery", "lease_owner", "lease_expires")'
    ' VALUES {values} ON CONFLICT ("webhook_id", "sequence") DO UPDATE SET "delivery" = excluded."delivery",'
    ' "lease_owner" = excluded."lease_owner", "lease_expires" = excluded."lease_expires"'
    ' WHERE "sequence_lease"."lease_expires" < ? RETURNING "delivery"'
)
_LOCK_HEADS = (
    'SELECT "id" FROM "delivery" WHERE "id" = ANY(?) AND "state" = \'pending\''
    ' AND ("lease_expires" IS NULL OR "lease_expires" < ?) FOR UPDATE SKIP LOCKED'
)
_TURNS_PER_STATEMENT = 100


def _take_turns(heads: list[tuple[int, int, str]], owner: str, expires: float, moment: float) -> set[int]:
    """The row IDs among `heads` (id, webhook, sequence) whose sequences this claim now holds until `expires`.

    Under SQLite's write lock the heads were found by the only claim running, and each gets its sequence.
    On PostgreSQL other dispatchers claim at the same moment and may have read the sequence before a
    delivery of it went out: its primary key lets one claim at a time hold a sequence (a second waits for
    the first to commit, then finds it held), and the head itself is locked and checked again so that a
    redelivery leasing it meanwhile wins. Sequences are taken in one order, so two claims never wait on
    each other.
    """
    if not isinstance(database.obj, peewee.SqliteDatabase):
        locked = {row_id for (row_id,) in statements.execute(_LOCK_HEADS, ([h[0] for h in heads], moment)).fetchall()}
        heads = [head for head in heads if head[0] in locked]
    taken: set[int] = set()
    for batch in statements.batches(sorted(heads, key=lambda head: (head[1], head[2])), _TURNS_PER_STATEMENT):
        values = ", ".join(["(?, ?, ?, ?, ?)"] * len(batch))
        params = [value for row_id, webhook, sequence in batch for value in (webhook, sequence, row_id, owner, expires)]
        taken |= {row_id for (row_id,) in statements.execute(_TAKE_TURNS.format(values=values), [*params, moment])}
    return taken


_END_TURN = (
    'DELETE FROM "sequence_lease" WHERE "webhook_id" = ? AND "sequence" = ? AND "delivery" = ? AND "lease_owner" = ?'
)


def _end_turns(claims: list[Claim]) -> None:
    """Frees the sequences these claims held, so the next delivery of each may go; one another claim took
    over after the lease expired stays with it."""
    if claims:
        statements.execute_many(_END_TURN, [(c.webhook_row, c.sequence, c.row_id, c.lease) for c in claims])


def _candidates(
    wanted: dict[int, int], ordered: Set[int], moment: float, in_flight: Set[int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int, str]]]:
    """Up to `wanted[webhook]` due deliveries of each webhook, and heads of each ordered one, as `_due` and
    `_heads` find them, with room beside this dispatcher's own rows in `in_flight` that come back.

    A row of `in_flight` comes back only when its lease ran out while it was still out, which a slow store
    rarely lets happen, and never from PostgreSQL's `_due`, which leaves them out: the webhooks it came back
    for are read again with room for all of `in_flight`. (Room for them in every claim made each claim read
    hundreds of rows to take a few.)
    """
    found = _due({w: room for w, room in wanted.items() if w not in ordered}, moment, in_flight)
    heads = _heads({w: room for w, room in wanted.items() if w in ordered}, moment)
    back = {webhook for row_id, webhook in found if row_id in in_flight}
    back |= {webhook for row_id, webhook, _ in heads if row_id in in_flight}
    if back:
        wider = {w: wanted[w] + len(in_flight) for w in back}
        found = [row for row in found if row[1] not in back]
        found += _due({w: room for w, room in wider.items() if w not in ordered}, moment, in_flight)
        heads = [head for head in heads if head[1] not in back]
        heads += _heads({w: room for w, room in wider.items() if w in ordered}, moment)
    return found, heads


def claim(owner: str, lease: float, capacity: Capacity, in_flight: Set[int] = frozenset()) -> list[Claim]:
    """Leases due deliveries of active webhooks, shared fairly within `capacity`; of a webhook that keeps
    order, only the next delivery of each stack sequence with none out.

    `in_flight` are this dispatcher's deliveries still being sent or not yet recorded: never taken again,
    even when their lease ran out while the store was slow.
    """
    if capacity.free <= 0:
        return []
    with transaction():
        moment = now()
        hooks = statements.execute(_PENDING_WEBHOOKS, (True,)).fetchall()
        wanted = {webhook: capacity.room(webhook, organization) for webhook, organization, _ in hooks}
        wanted = {webhook: room for webhook, room in wanted.items() if room > 0}
        if not wanted:
            return []
        organizations = {webhook: organization for webhook, organization, _ in hooks}
        sequences.number_queues(webhook for webhook, _, ordering in hooks if ordering == sequences.NUMBERING)
        ordered = {webhook for webhook, _, ordering in hooks if ordering in (PER_STACK, sequences.NUMBERING)}
        found, heads = _candidates(wanted, ordered, moment, in_flight)
        turn_of = {row_id: (webhook, sequence) for row_id, webhook, sequence in heads}
        due: dict[int, list[int]] = {}
        for row_id, webhook in [*found, *((row_id, webhook) for row_id, webhook, _ in heads)]:
            if row_id not in in_flight:
                due.setdefault(webhook, []).append(row_id)
        chosen = share(capacity, [Candidates(webhook, organizations[webhook], rows) for webhook, rows in due.items()])
        turns = [(row_id, *turn_of[row_id]) for row_id in chosen if row_id in turn_of]
        if turns:
            taken = _take_turns(turns, owner, moment + lease, moment)
            chosen = [row_id for row_id in chosen if row_id not in turn_of or row_id in taken]
        if not chosen:
            return []
        among, ids = statements.any_of(chosen)
        statements.execute(_LEASE.format(among=among), (owner, moment + lease, ids))
        return _claims(chosen, owner, {row_id: turn_of[row_id][1] for row_id in chosen if row_id in turn_of})


# Only the rows named are read: a dispatcher knows what it claimed, and every other pending row, however many are
# parked, stays untouched.
_RELEASE = (
    'UPDATE "delivery" SET "lease_owner" = NULL, "lease_expires" = NULL'
    ' WHERE "lease_owner" = ? AND "state" = \'pending\' AND "id" {among}'
)


def release(owner: str, row_ids: Collection[int]) -> int:
    """Gives back the claims `owner` still holds of the deliveries `row_ids` (those it claimed and has not
    recorded), so another dispatcher need not wait for the leases to expire; returns how many it gave back."""
    with transaction():
        SequenceLeaseRow.delete().where(SequenceLeaseRow.lease_owner == owner).execute()
        if not row_ids:
            return 0
        among, ids = statements.any_of(sorted(row_ids))
        return int(statements.execute(_RELEASE.format(among=among), (owner, ids)).rowcount)


def record(
    outcomes: list[Outcome],
    disable_after: float | None = None,
    failing_reason: Callable[[datetime], str] = str,
) -> list[str]:
    """Stores attempts and their effects in one transaction; returns the names of webhooks it deactivated.

    With `disable_after`, webhooks failing for longer than that are deactivated with `failing_reason`.
    """
    if not outcomes:
        return []
    # Made before the transaction, as encoding the headers needs no lock, and other writers wait for this one.
    attempts = {id(outcome): _attempt_values(outcome) for outcome in outcomes}
    with transaction():
        moment = now()
        health.lock(o.claim.webhook_row for o in outcomes if o.queued)
        kept = _close_attempts(outcomes)
        # After the deliveries' rows, which a claim on PostgreSQL may be holding while it takes sequences.
        _end_turns([o.claim for o in outcomes if o.claim.sequence])
        if kept:
            _insert_attempts([attempts[id(outcome)] for outcome in kept])
            notify.announce_attempts([(o.claim.row_id, o.claim.attempt_count + 1) for o in kept])
        queued = [o for o in kept if o.queued]
        if queued:
            health.record((o.claim.webhook_row, _ended(o.attempt), o.succeeded) for o in queued)
        failed = {o.claim.webhook_row for o in queued if not o.succeeded}
        disabled = []
        for outcome in queued:
            if outcome.disable_reason:
                disabled += _deactivate(WebhookRow.id == outcome.claim.webhook_row, _fixed(outcome.disable_reason))
        if failed and disable_after is not None:
            disabled += _deactivate(
                WebhookRow.id.in_(failed) & (WebhookRow.failing_since <= moment - disable_after), failing_reason
            )
        return disabled


def _ended(attempt: Attempt) -> float:
    return attempt.start_time.timestamp() + attempt.duration


# The most outcomes of a flush one statement writes.
_OUTCOMES_PER_STATEMENT = 500


def _close_attempts(outcomes: list[Outcome]) -> list[Outcome]:
    """Writes each delivery's new state, in one statement for every _OUTCOMES_PER_STATEMENT outcomes; returns
    the outcomes that count.

    An outcome counts only while its row still holds the claim's lease, attempt count and state: one
    whose lease ran out and went to another dispatcher, or that another attempt overtook, is dropped.
    """
    kept: list[Outcome] = []
    for batch in statements.batches(outcomes, _OUTCOMES_PER_STATEMENT):
        rows = [
            (o.claim.row_id, o.state.value, o.next_attempt_time, o.claim.attempt_count, o.claim.state, o.claim.lease)
            for o in batch
        ]
        if isinstance(database.obj, peewee.SqliteDatabase):
            found = statements.execute(_SQLITE_CLOSE, (json.dumps(rows),))
        else:
            found = statements.execute(_POSTGRES_CLOSE, statements.arrays(rows))
        updated = {row_id for (row_id,) in found.fetchall()}
        kept += [o for o in batch if o.claim.row_id in updated]
    return kept


# Each column with its PostgreSQL type, which the arrays of a flush's attempts are cast to.
_ATTEMPT_COLUMNS = (
    ("delivery_id", "int"),
    ("attempt_number", "int"),
    ("start_time", "float8"),
    ("request_url", "text"),
    ("request_headers", "text"),
    ("response_code", "int"),
    ("response_headers", "text"),
    ("response_body", "text"),
    ("duration", "float8"),
    ("error", "text"),
    ("state", "text"),
)
_ATTEMPT_NAMES = statements.columns(name for name, _ in _ATTEMPT_COLUMNS)
_INSERT_ATTEMPT = (
    f'INSERT INTO "delivery_attempt" ({_ATTEMPT_NAMES}) VALUES ({statements.placeholders(len(_ATTEMPT_COLUMNS))})'
)
# PostgreSQL takes a flush's attempts in one statement, a column an array: one INSERT an attempt, even sent
# together, was parsed and planned once an attempt, which cost more of the database's CPU than the rows.
_POSTGRES_INSERT_ATTEMPTS = (
    f'INSERT INTO "delivery_attempt" ({_ATTEMPT_NAMES})'
    f" SELECT * FROM unnest({', '.join(f'?::{kind}[]' for _, kind in _ATTEMPT_COLUMNS)})"
)


def _insert_attempts(rows: list[tuple[object, ...]]) -> None:
    """SQLite runs one prepared INSERT for every attempt: building a statement per row costs more than sending
    it. PostgreSQL takes every _OUTCOMES_PER_STATEMENT in one."""
    if isinstance(database.obj, peewee.SqliteDatabase):
        statements.execute_many(_INSERT_ATTEMPT, rows)
        return
    for batch in statements.batches(rows, _OUTCOMES_PER_STATEMENT):
        statements.execute(_POSTGRES_INSERT_ATTEMPTS, statements.arrays(batch))


def _fixed(reason: str) -> Callable[[datetime], str]:
    return lambda _since: reason


def _deactivate(where: peewee.Expression, reason: Callable[[datetime], str]) -> list[str]:
    names = []
    for row in WebhookRow.select().where(where & (WebhookRow.active == True)):  # noqa: E712
        since = to_datetime(row.failing_since or now())
        assert since is not None
        WebhookRow.update(
            active=False, disabled_reason=reason(since), update_time=now(), revision=WebhookRow.revision + 1
        ).where(WebhookRow.id == row.id).execute()
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
        outcome.state.value,
    )


def create_direct(webhook: WebhookName, kind: str, payload: bytes, delivery_id: str, owner: str, lease: float) -> Claim:
    """A delivery sent at once rather than queued (a ping): stored first, so its attempt has a home, and
    leased to `owner` like any claim."""
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
            lease_owner=owner,
            lease_expires=moment + lease,
        )
        [made] = _claims([delivery.id], owner)
        return made


# A delivery's columns but its own payload, which is empty when it sends a shared body.
_DELIVERY_COLUMNS = tuple(column for column in DeliveryRow._meta.sorted_fields if column is not DeliveryRow.payload)


def _joined(payload: peewee.ColumnBase | None = None) -> peewee.ModelSelect[DeliveryRow]:
    """Deliveries with their payload and what names them, read in the same query; `payload` in the payload's
    place when given."""
    selected = DeliveryRow.select(
        *_DELIVERY_COLUMNS,
        (payload or peewee.fn.COALESCE(BodyRow.payload, DeliveryRow.payload)).alias("payload"),
        WebhookRow.organization,
        WebhookRow.project,
        WebhookRow.stack,
        WebhookRow.webhook_id,
        EventRow.event_id,
    )
    joined = selected.join(WebhookRow).switch(DeliveryRow).join(EventRow, peewee.JOIN.LEFT_OUTER)
    if payload is None:
        joined = joined.switch(DeliveryRow).join(BodyRow, peewee.JOIN.LEFT_OUTER, on=BodyRow.id == DeliveryRow.body_id)
    return joined


def _delivery_row(name: DeliveryName, lock: bool = False) -> DeliveryRow:
    webhook = webhook_rows.find_row(name.webhook)
    query = _joined().where((DeliveryRow.delivery_id == name.delivery_id) & (DeliveryRow.webhook == webhook.id))
    if lock and not isinstance(database.obj, peewee.SqliteDatabase):
        query = query.for_update(of=DeliveryRow)
    row = query.first()
    if row is None:
        raise NotFound(f"delivery {name} does not exist", Reason.DELIVERY_NOT_FOUND)
    found: DeliveryRow = row
    return found


def for_redelivery(name: DeliveryName, owner: str, lease: float) -> tuple[Claim, Delivery]:
    """Leases the delivery to `owner` for one more attempt; refused while another attempt is under way,
    so two attempts never overlap and each gets its own number."""
    with transaction():
        row = _delivery_row(name, lock=True)
        moment = now()
        if row.lease_expires is not None and row.lease_expires >= moment:
            raise FailedPrecondition(
                f"delivery {name} is being sent right now; redeliver it once that attempt ends",
                Reason.DELIVERY_IN_FLIGHT,
            )
        DeliveryRow.update(lease_owner=owner, lease_expires=moment + lease).where(DeliveryRow.id == row.id).execute()
        [again] = _claims([row.id], owner)
        return again, _to_delivery(row, [])


def recover(
    target: WebhookName | Parent,
    since: float,
    first_delay: float,
    key: RequestKey | None = None,
    batch: int = BATCH_ROWS,
) -> int:
    """Queues again the FAILED deliveries of `target` (a webhook, or every active webhook of an organization,
    its stacks' included, or of a stack) created at or after `since`: due after `first_delay`, their retry
    schedule started afresh, their attempts kept. Returns how many.

    `batch` deliveries per transaction, so a large recovery never holds the write lock long. A delivery
    being redelivered right now is left to that attempt. Under a `key`, the answer grows with each batch
    in the batch's own transaction: a repeat of a finished request returns it, and one of a request that
    was cut off (or is still running elsewhere) carries on where it stands, adding to the same count.
    """
    try:
        return _recover(target, since, first_delay, key, batch)
    except peewee.IntegrityError:
        if key is None:
            raise
        # Two servers started the same request at once: the loser carries on with the winner's count.
        return _recover(target, since, first_delay, key, batch)


def _recover(target: WebhookName | Parent, since: float, first_delay: float, key: RequestKey | None, batch: int) -> int:
    if key is not None:
        earlier = idempotency.recall(idempotency.RECOVER_DELIVERIES, key, now() - IDEMPOTENCY_WINDOW)
        if earlier is not None and json.loads(earlier)["finished"]:
            return int(json.loads(earlier)["recovered_count"])
    webhooks = _recoverable(target)
    cursor = total = 0
    while True:
        with transaction():
            moment = now()
            if key is not None:
                total = _recovered_so_far(key, moment)
            not_leased = DeliveryRow.lease_expires.is_null() | (DeliveryRow.lease_expires < moment)
            candidates = DeliveryRow.select(DeliveryRow.id).where(
                webhooks
                & (DeliveryRow.state == FAILED)
                & (DeliveryRow.create_time >= since)
                & (DeliveryRow.id > cursor)
                & not_leased
            )
            chosen = [row_id for (row_id,) in _tuples(candidates.order_by(DeliveryRow.id).limit(batch))]
            recovered = 0
            if chosen:
                # The conditions again: on PostgreSQL a redelivery may have leased a row since it was read.
                recovered = int(
                    DeliveryRow.update(
                        state=PENDING,
                        next_attempt_time=moment + first_delay,
                        schedule_start=DeliveryRow.attempt_count,
                        # Named whatever the webhook's ordering: one switched on meanwhile finds it in its queue.
                        sequence=sequences.assigned(),
                        lease_owner=None,
                        lease_expires=None,
                    )
                    .where(DeliveryRow.id.in_(chosen) & (DeliveryRow.state == FAILED) & not_leased)
                    .execute()
                )
            if recovered:
                notify.announce()
            total += recovered
            finished = len(chosen) < batch
            if key is not None:
                answer = json.dumps({"recovered_count": total, "finished": finished})
                idempotency.revise(idempotency.RECOVER_DELIVERIES, key, answer)
        if finished:
            return total
        cursor = chosen[-1]


def _recoverable(target: WebhookName | Parent) -> peewee.Expression:
    """Which deliveries' webhooks a recovery covers; a webhook named on its own must be active."""
    if isinstance(target, WebhookName):
        row = webhook_rows.find_row(target)
        if not row.active:
            raise FailedPrecondition(
                f"webhook {target} is inactive, so nothing would be sent: set active to true, then recover",
                Reason.WEBHOOK_INACTIVE,
            )
        return DeliveryRow.webhook == row.id
    where = (WebhookRow.organization == target.organization) & (WebhookRow.active == True)  # noqa: E712
    if target.is_stack:
        where &= (WebhookRow.project == target.project) & (WebhookRow.stack == target.stack)
    return DeliveryRow.webhook.in_(WebhookRow.select(WebhookRow.id).where(where))


def _recovered_so_far(key: RequestKey, moment: float) -> int:
    """The count of the request under `key`, locked until the batch commits; remembered as 0 on its first
    batch. A unique key settles two servers starting it at once (IntegrityError for the loser)."""
    expired_before = moment - IDEMPOTENCY_WINDOW
    earlier = idempotency.recall(idempotency.RECOVER_DELIVERIES, key, expired_before, lock=True)
    if earlier is None:
        idempotency.remember(
            idempotency.RECOVER_DELIVERIES,
            key,
            json.dumps({"recovered_count": 0, "finished": False}),
            expired_before,
        )
        return 0
    return int(json.loads(earlier)["recovered_count"])


def get(name: DeliveryName) -> Delivery:
    return _with_attempts(_delivery_row(name))


def get_by_id(row_id: int) -> Delivery:
    row = _joined().where(DeliveryRow.id == row_id).first()
    if row is None:
        # Its webhook was deleted while the attempt was under way.
        raise NotFound("the delivery no longer exists: its webhook was deleted", Reason.DELIVERY_NOT_FOUND)
    return _with_attempts(row)


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
    return _joined(peewee.Value(b"")), attempts


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
        # Rows written before receivers' answers were escaped and capped may hold bytes that are not
        # text, and headers without bound: they are made readable here.
        response_headers=cap_headers(
            (printable(key), printable(value)) for key, value in json.loads(row.response_headers).items()
        ),
        response_body=printable(row.response_body),
        duration=row.duration,
        error=printable(row.error),
    )


# The active webhooks' pending deliveries, counted through the pending index one active webhook at a time, so a
# backlog parked on an inactive webhook is never read (grouping every pending row by webhook, then dropping the
# inactive, read 1,000,000 parked index entries in 0.45 s on SQLite, on the only query thread). Only the oldest
# row is read for its time: IDs grow with create_time, so the first ID is the oldest. COUNT beside MIN keeps
# either engine from finding the MIN by walking the primary key from the lowest ID, the parked rows first.
# SQLite keeps the webhooks outside in a CROSS JOIN; PostgreSQL runs an aggregating LATERAL once per webhook.
_BACKLOG = """SELECT a."waiting", d."create_time" FROM ({counted}) a LEFT JOIN "delivery" d ON d."id" = a."first\""""
_SQLITE_BACKLOG = _BACKLOG.format(
    counted="""SELECT COUNT(*) AS "waiting", MIN(p."id") AS "first" FROM "webhook" w
    CROSS JOIN "delivery" p ON p."webhook_id" = w."id" AND p."state" = 'pending' WHERE w."active" = ?"""
)
_POSTGRES_BACKLOG = _BACKLOG.format(
    counted="""SELECT SUM(p."waiting") AS "waiting", MIN(p."first") AS "first" FROM "webhook" w
    CROSS JOIN LATERAL (SELECT COUNT(*) AS "waiting", MIN(d."id") AS "first" FROM "delivery" d
                        WHERE d."state" = 'pending' AND d."webhook_id" = w."id") p WHERE w."active" = ?"""
)


def backlog() -> tuple[int, float | None]:
    """How many deliveries of active webhooks are pending, and when the oldest of them was created (None
    when none is). A backlog parked on an inactive webhook is left out: nothing sends it until the webhook
    is active again, so it says nothing about whether the dispatchers keep up."""
    sqlite = isinstance(database.obj, peewee.SqliteDatabase)
    [(waiting, oldest)] = statements.execute(_SQLITE_BACKLOG if sqlite else _POSTGRES_BACKLOG, (True,)).fetchall()
    return int(waiting or 0), oldest


def prune(before: float, idempotency_before: float) -> int:
    """Deletes events and deliveries created before `before`, a batch per transaction, and the hourly
    attempt counts the 24-hour window has left behind; returns how many deliveries went. Deliveries go
    first, so deleting their events cascades to almost nothing."""
    gone = delete_in_batches(DeliveryRow, DeliveryRow.create_time < before)
    delete_in_batches(EventRow, EventRow.create_time < before)
    idempotency.forget_before(idempotency_before)
    with transaction():
        health.prune()
    return gone
