"""Webhook rows in and out, each call one short transaction."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import peewee

from webhook_service.domain.errors import AlreadyExists, NotFound, Reason, ResourceExhausted
from webhook_service.domain.idempotency import RequestKey
from webhook_service.domain.limits import MAX_WEBHOOKS_PER_ORGANIZATION, MAX_WEBHOOKS_PER_STACK
from webhook_service.domain.model import (
    Webhook,
    WebhookFilter,
    WebhookFormat,
    WebhookGroup,
    WebhookHealth,
    WebhookOrdering,
)
from webhook_service.domain.names import Parent, WebhookName, parse_webhook_name
from webhook_service.domain.webhooks import reactivates
from webhook_service.store import bodies, health, idempotency, secrets, sequences, statements
from webhook_service.store.database import scrub_freed_space, transaction
from webhook_service.store.models import DeliveryRow, TokenRow, WebhookRow, database
from webhook_service.store.times import now, to_datetime

log = logging.getLogger(__name__)

_COLUMNS = (
    "organization",
    "project",
    "stack",
    "webhook_id",
    "display_name",
    "payload_url",
    "secret",
    "active",
    "format",
    "filters",
    "groups",
    "disabled_reason",
    "create_time",
    "update_time",
    "previous_secret",
    "previous_secret_expire_time",
    "revision",
    "ordering",
)


def _webhook(values: Sequence[Any]) -> Webhook:
    """A webhook from its columns, in the order of _COLUMNS.

    A row this release cannot read (a secret sealed by another key, a format or filter written by a newer
    release) fails that webhook alone: it reads as inactive, with the reason, so it receives nothing and
    lists, gets and publishes for its organization carry on. A previous secret whose overlap has ended
    reads as none, whether or not it is erased yet.
    """
    (
        organization,
        project,
        stack,
        webhook_id,
        display_name,
        payload_url,
        secret,
        active,
        format,
        filters,
        groups,
        disabled_reason,
        create_time,
        update_time,
        previous_secret,
        previous_secret_expire_time,
        revision,
        ordering,
    ) = values
    if previous_secret_expire_time is None or previous_secret_expire_time <= now():
        previous_secret, previous_secret_expire_time = "", None
    webhook = Webhook(
        parent=Parent(organization, project, stack),
        webhook_id=webhook_id,
        display_name=display_name,
        payload_url=payload_url,
        active=bool(active),
        disabled_reason=disabled_reason,
        create_time=to_datetime(create_time),
        update_time=to_datetime(update_time),
        etag=etag(create_time, revision),
    )
    try:
        return dataclasses.replace(
            webhook,
            secret=secrets.box().open(secret),
            previous_secret=secrets.box().open(previous_secret),
            previous_secret_expire_time=to_datetime(previous_secret_expire_time),
            format=WebhookFormat(format),
            filters=tuple(WebhookFilter(f) for f in filters.split(",") if f),
            groups=tuple(WebhookGroup(g) for g in groups.split(",") if g),
            ordering=sequences.ordering_of(ordering),
        )
    except ValueError as error:
        log.error("webhook %s cannot be read: %s", webhook.name, error)
        return dataclasses.replace(webhook, active=False, disabled_reason=f"this webhook cannot be read: {error}")


def etag(create_time: float, revision: int) -> str:
    """Opaque, and new with every revision; the creation time tells a webhook from an earlier one of the
    same name that was deleted."""
    return hashlib.sha256(f"{create_time!r}/{revision}".encode()).hexdigest()[:20]


def to_webhook(row: WebhookRow) -> Webhook:
    return _webhook([getattr(row, column) for column in _COLUMNS])


def _with_health(rows: Sequence[WebhookRow]) -> list[Webhook]:
    """The webhooks of `rows` as callers see them, with their health: a fixed number of statements for the
    lot, so a page of a thousand costs what a page of one does."""
    found = health.counts([row.id for row in rows])
    made = []
    for row in rows:
        counted = found.get(row.id, health.Counts())
        state = WebhookHealth(
            last_success_time=to_datetime(row.last_success_time),
            failing_since=to_datetime(row.failing_since),
            pending_deliveries=counted.pending,
            succeeded_attempts_24h=counted.succeeded_24h,
            failed_attempts_24h=counted.failed_24h,
        )
        made.append(dataclasses.replace(to_webhook(row), health=state))
    return made


def _shown(row: WebhookRow) -> Webhook:
    [webhook] = _with_health([row])
    return webhook


def name_of(row: WebhookRow) -> str:
    return str(WebhookName(Parent(row.organization, row.project, row.stack), row.webhook_id))


def _columns(webhook: Webhook) -> dict[str, object]:
    return {
        "display_name": webhook.display_name,
        "payload_url": webhook.payload_url,
        "secret": secrets.box().seal(webhook.secret),
        "active": webhook.active,
        "format": webhook.format.value,
        "filters": ",".join(webhook.filters),
        "groups": ",".join(webhook.groups),
        "ordering": webhook.ordering.value,
        "disabled_reason": webhook.disabled_reason,
        "previous_secret": secrets.box().seal(webhook.previous_secret),
        "previous_secret_expire_time": (
            webhook.previous_secret_expire_time.timestamp() if webhook.previous_secret_expire_time else None
        ),
    }


def _where(name: WebhookName) -> peewee.Expression:
    parent = name.parent
    return (
        (WebhookRow.organization == parent.organization)
        & (WebhookRow.project == parent.project)
        & (WebhookRow.stack == parent.stack)
        & (WebhookRow.webhook_id == name.webhook_id)
    )


def find_row(name: WebhookName) -> WebhookRow:
    found = WebhookRow.get_or_none(_where(name))
    if found is None:
        raise NotFound(f"webhook {name} does not exist", Reason.WEBHOOK_NOT_FOUND)
    return found


def _parent_where(parent: Parent) -> peewee.Expression:
    return (
        (WebhookRow.organization == parent.organization)
        & (WebhookRow.project == parent.project)
        & (WebhookRow.stack == parent.stack)
    )


def create(webhook: Webhook, key: RequestKey | None = None) -> Webhook:
    """Stores a new webhook; a repeat of the request under its `key` returns the webhook the first call made.

    A unique key settles races between servers: on the request_id (the loser returns the winner's
    webhook) or on the name (ALREADY_EXISTS).
    """
    try:
        return _create(webhook, key)
    except peewee.IntegrityError:
        if key is not None:
            return _create(webhook, key)
        raise AlreadyExists(f"webhook {webhook.name} already exists", Reason.WEBHOOK_ALREADY_EXISTS) from None


def _create(webhook: Webhook, key: RequestKey | None) -> Webhook:
    with transaction():
        if key is not None:
            earlier = idempotency.recall(idempotency.CREATE_WEBHOOK, key)
            if earlier is not None:
                return get(parse_webhook_name(earlier, "request_id"))
        if WebhookRow.select().where(_where(WebhookName(webhook.parent, webhook.webhook_id))).exists():
            raise AlreadyExists(f"webhook {webhook.name} already exists", Reason.WEBHOOK_ALREADY_EXISTS)
        limit = MAX_WEBHOOKS_PER_STACK if webhook.parent.is_stack else MAX_WEBHOOKS_PER_ORGANIZATION
        if WebhookRow.select().where(_parent_where(webhook.parent)).count() >= limit:
            raise ResourceExhausted(
                f"{webhook.parent} already has {limit} webhooks, the most allowed", reason=Reason.WEBHOOK_LIMIT_REACHED
            )
        moment = now()
        created = WebhookRow.create(
            organization=webhook.parent.organization,
            project=webhook.parent.project,
            stack=webhook.parent.stack,
            webhook_id=webhook.webhook_id,
            create_time=moment,
            update_time=moment,
            **_columns(webhook),
        )
        if key is not None:
            idempotency.remember(idempotency.CREATE_WEBHOOK, key, webhook.name)
        # A new webhook's health is all zeros, which is what a Webhook starts with.
        return to_webhook(created)


def get(name: WebhookName) -> Webhook:
    """The webhook with its health."""
    return _shown(find_row(name))


def list_page(parent: Parent, after_id: int, limit: int) -> tuple[list[Webhook], int | None]:
    """Up to `limit` webhooks of `parent` past the cursor `after_id`, with their health, and the cursor of
    the next page."""
    rows = list(
        WebhookRow.select()
        .where(_parent_where(parent) & (WebhookRow.id > after_id))
        .order_by(WebhookRow.id)
        .limit(limit + 1)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return _with_health(rows), (rows[-1].id if more else None)


def stacks_with_webhooks(organization: str, limit: int) -> list[Parent]:
    """Up to `limit` stacks of `organization` that have webhooks, by project and stack name."""
    rows = (
        WebhookRow.select(WebhookRow.project, WebhookRow.stack)
        .where((WebhookRow.organization == organization) & (WebhookRow.stack != ""))
        .distinct()
        .order_by(WebhookRow.project, WebhookRow.stack)
        .limit(limit)
    )
    return [Parent(organization, row.project, row.stack) for row in rows]


def update(name: WebhookName, fields: Sequence[str], change: Callable[[Webhook], Webhook]) -> Webhook:
    """Applies `change` to the stored webhook and writes only the `fields` it may change (the update mask's),
    so a concurrent change of another column, such as the dispatcher deactivating the webhook or starting its
    failure clock, stands. `change` may raise to refuse.

    The row stays locked from the read to the write: SQLite's write lock; on PostgreSQL the lock the UPDATE
    takes anyway, which publishing, holding only the webhook's key, does not wait for.
    """
    with transaction():
        query = WebhookRow.select().where(_where(name))
        if not isinstance(database.obj, peewee.SqliteDatabase):
            # peewee takes the clause as text, which its stubs do not know.
            query = query.for_update("FOR NO KEY UPDATE")  # type: ignore[arg-type]
        row = query.get_or_none()
        if row is None:
            raise NotFound(f"webhook {name} does not exist", Reason.WEBHOOK_NOT_FOUND)
        current = to_webhook(row)
        changed = change(current)
        columns = {column: value for column, value in _columns(changed).items() if column in fields}
        if reactivates(current, changed):
            # Its failures so far are not held against it again.
            columns.update(disabled_reason=changed.disabled_reason, failing_since=None)
        if changed.ordering is current.ordering:
            # Unchanged, and a queue still to be numbered stays so.
            columns.pop("ordering", None)
        elif changed.ordering is WebhookOrdering.PER_STACK:
            columns["ordering"] = sequences.NUMBERING
            _hold_publishes(row.id)
        WebhookRow.update(update_time=now(), revision=WebhookRow.revision + 1, **columns).where(
            WebhookRow.id == row.id
        ).execute()
        return _shown(WebhookRow.get_by_id(row.id))


def _hold_publishes(row_id: int) -> None:
    """Keeps publishes to the webhook out until the transaction ends. On PostgreSQL a publish holds its
    webhooks' keys only, which the update's lock lets through: this stronger one waits for those under way,
    and makes later ones wait, so each queues its deliveries either before the change, to be numbered with
    the queue, or after it, numbered by itself. SQLite's write lock keeps them out already. The queue is
    numbered by the next claim."""
    if not isinstance(database.obj, peewee.SqliteDatabase):
        WebhookRow.select(WebhookRow.id).where(WebhookRow.id == row_id).for_update().get()


def delete(name: WebhookName) -> None:
    """Deletes the webhook with its delivery log. The log goes first, a batch per transaction, so no
    transaction holds the write lock for the length of a long history."""
    row = find_row(name)
    bodies.delete_deliveries(DeliveryRow.webhook == row.id)
    with transaction():
        if WebhookRow.delete().where(WebhookRow.id == row.id).execute() == 0:
            raise NotFound(f"webhook {name} does not exist", Reason.WEBHOOK_NOT_FOUND)


_ACTIVE_FOR_STACK = (
    f'SELECT "id", {statements.columns(_COLUMNS)} FROM "webhook"'
    ' WHERE "organization" = ? AND "active" = ?'
    ' AND (("project" = \'\' AND "stack" = \'\') OR ("project" = ? AND "stack" = ?))'
)
# The lock each delivery's foreign key takes on its webhook anyway, taken when the webhook is read: a delete
# then waits for the publish to commit, instead of committing between the read and the insert. Renames and
# deactivations change no key, so they do not wait. SQLite's write lock already keeps the delete out.
_LOCK_FOR_PUBLISH = " FOR KEY SHARE"


def active_for_stack(stack: Parent) -> list[tuple[int, Webhook]]:
    """Every active webhook of the stack's organization and of the stack itself, with row IDs, which stay
    until the transaction ends: publish inserts deliveries for them.

    Every publish runs this, so it is fixed SQL.
    """
    text = (
        _ACTIVE_FOR_STACK if isinstance(database.obj, peewee.SqliteDatabase) else _ACTIVE_FOR_STACK + _LOCK_FOR_PUBLISH
    )
    rows = statements.execute(text, (stack.organization, True, stack.project, stack.stack))
    # A row that cannot be read reads as inactive, and gets nothing.
    readable = ((row[0], _projected(row[1:])) for row in rows.fetchall())
    return [(row_id, webhook) for row_id, webhook in readable if webhook.active]


# The webhooks a publish routes among, as made from their rows, by database and row. Making a Webhook (the
# secrets opened, the etag hashed, times and enums converted) costs more than reading its row, and every publish
# reads its stack's: a row read again as it was gives the same Webhook, until its previous secret expires.
# Keyed by the whole row rather than its revision, so a write that leaves the revision alone (a secret sealed
# again, a queue numbered) can never leave a stale one.
_PROJECTED_PER_DATABASE = 10_000
_projections: weakref.WeakKeyDictionary[peewee.Database, dict[tuple[Any, ...], tuple[Webhook, float]]] = (
    weakref.WeakKeyDictionary()
)
_PREVIOUS_SECRET_EXPIRES = _COLUMNS.index("previous_secret_expire_time")


def _projected(values: tuple[Any, ...]) -> Webhook:
    db = database.obj
    assert db is not None
    projection = _projections.get(db)
    if projection is None:
        projection = _projections.setdefault(db, {})
    moment = now()
    found = projection.get(values)
    if found is not None and moment < found[1]:
        return found[0]
    webhook = _webhook(values)
    expires = values[_PREVIOUS_SECRET_EXPIRES]
    if len(projection) >= _PROJECTED_PER_DATABASE:
        projection.clear()
    projection[values] = (webhook, expires if expires is not None and expires > moment else math.inf)
    return webhook


def of_organization(stack: Parent, other_stacks: int) -> tuple[list[Webhook], bool]:
    """Every webhook of the stack's organization and of the stack itself, active or not, and up to
    `other_stacks` webhooks of the organization's other stacks (by project, stack and ID); True when
    those left some out. Without their health, which nothing asking this needs."""
    with transaction():
        in_scope = list(WebhookRow.select().where(_parent_where(Parent(stack.organization)) | _parent_where(stack)))
        others = list(
            WebhookRow.select()
            .where(
                (WebhookRow.organization == stack.organization)
                & (WebhookRow.stack != "")
                & ~((WebhookRow.project == stack.project) & (WebhookRow.stack == stack.stack))
            )
            .order_by(WebhookRow.project, WebhookRow.stack, WebhookRow.webhook_id)
            .limit(other_stacks + 1)
        )
    rows = [*in_scope, *others[:other_stacks]]
    return [to_webhook(row) for row in rows], len(others) > other_stacks


def erase_expired_secrets(scrub_anyway: bool = False) -> int:
    """Overwrites the previous secrets whose overlap has ended, then has the engine drop the old row
    versions, so no copy stays on disk; returns how many it erased. Until then they are read as none.

    A scrub keeps the old versions a transaction running at that moment may still read (PostgreSQL's VACUUM
    FULL copies them into the new file; SQLite cannot move a log that a reader holds): `scrub_anyway` scrubs
    although nothing new was erased, for the round after one that erased, once those transactions are over."""
    with transaction():
        erased = int(
            WebhookRow.update(previous_secret="", previous_secret_expire_time=None)
            .where(WebhookRow.previous_secret_expire_time <= now())
            .execute()
        )
    if erased or scrub_anyway:
        scrub_freed_space()
    return erased


def holds_nothing() -> bool:
    """No webhook and no token yet: no secret was sealed and nobody was let in, so there is no key to lose."""
    return not WebhookRow.select().exists() and not TokenRow.select().exists()


def prepare_secrets() -> int:
    """Checks the key opens the stored secrets, then seals any written before encryption at rest existed.

    Returns how many it sealed; a wrong key raises ValueError here, at start, rather than at each delivery.
    """
    with transaction():
        sealed = WebhookRow.select(WebhookRow.secret).where(WebhookRow.secret.startswith(secrets.PREFIX)).first()
        if sealed is not None:
            secrets.box().open(sealed.secret)
        plain = WebhookRow.select().where((WebhookRow.secret != "") & ~WebhookRow.secret.startswith(secrets.PREFIX))
        rows = list(plain)
        for row in rows:
            WebhookRow.update(secret=secrets.box().seal(row.secret)).where(WebhookRow.id == row.id).execute()
    if rows:
        scrub_freed_space()
    return len(rows)
