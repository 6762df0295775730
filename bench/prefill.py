"""Filling a database with queued deliveries before the service starts, through the service's own store code."""

from __future__ import annotations

import time
from pathlib import Path

from peewee import PostgresqlDatabase, chunked, fn

from webhook_service.domain.model import Event, Identity, UpdateChange, Webhook, WebhookFormat
from webhook_service.domain.names import Parent, WebhookName
from webhook_service.domain.payloads import event_kind, render_event
from webhook_service.store import secrets, webhooks
from webhook_service.store.database import open_database, transaction
from webhook_service.store.events import new_id
from webhook_service.store.models import DeliveryRow, EventRow, WebhookRow

SECRET_KEY = Path("data/secret.key")
ROWS_PER_TRANSACTION = 5000
ROWS_PER_STATEMENT = 500  # SQLite caps the bound variables of one statement
SET_EVENT_SEQUENCE = "SELECT setval(pg_get_serial_sequence('event', 'id'), %s)"


def sample_event(organization: str, serial: int = 0) -> Event:
    return Event(
        organization_name=organization,
        project="website",
        stack="production",
        user=Identity("Bench User", "bench-user", "https://avatars.example.com/u/1"),
        organization=Identity(organization, organization, "https://avatars.example.com/o/1"),
        change=UpdateChange(
            update_url=f"https://app.pulumi.com/{organization}/website/production/updates/{serial}",
            kind="update",
            result="succeeded",
            resource_changes={"create": 3, "update": 2, "same": 40},
        ),
    )


def use_secret_key(home: Path) -> None:
    """The service keeps its key in `data/secret.key`: the bench makes it, as `webhooks keys create` would,
    and seals secrets with the key the service it starts in `home` will open them with; the calling thread
    holds it."""
    secrets.create_key(home / SECRET_KEY)
    secrets.bind_thread(secrets.SecretBox(secrets.load_key(home / SECRET_KEY)))


def prefill(
    database: str,
    home: Path,
    count: int,
    payload_url: str,
    secret: str,
    due_in: float = 0.0,
    hooks: int = 1,
    active: bool = True,
    organization: str = "prefill",
) -> None:
    """Stores one webhook per `hooks` under `organization` and `count` pending deliveries spread over
    them, each with its event, as `events.publish` would; they fall due `due_in` seconds from now. `home` is
    the folder the service will run in. Webhooks stored inactive hold their deliveries back until `activate`.

    On PostgreSQL the tables are then vacuumed and analyzed, as autovacuum does within a minute of such a
    load: the planner chooses the dispatcher's claim plan from these statistics, and without any it sorts
    every due delivery on each claim."""
    home.mkdir(parents=True, exist_ok=True)
    use_secret_key(home)
    db = open_database(database)
    try:
        with db.connection_context():
            parent = Parent(organization)
            rows = []
            for number in range(hooks):
                webhook_id = f"hook-{number}"
                webhooks.create(Webhook(parent, webhook_id, f"prefill {number}", payload_url, secret, active))
                rows.append(webhooks.find_row(WebhookName(parent, webhook_id)).id)
            event = sample_event(parent.organization)
            kind = event_kind(event)
            body = render_event(WebhookFormat.RAW, event)
            next_id = (EventRow.select(fn.MAX(EventRow.id)).scalar() or 0) + 1
            for start in range(0, count, ROWS_PER_TRANSACTION):
                size = min(ROWS_PER_TRANSACTION, count - start)
                moment = time.time()
                events = [
                    {
                        "id": next_id + i,
                        "event_id": new_id(),
                        "organization": event.organization_name,
                        "project": event.project,
                        "stack": event.stack,
                        "kind": kind,
                        "create_time": moment,
                    }
                    for i in range(size)
                ]
                deliveries = [
                    {
                        "delivery_id": new_id(),
                        "webhook": rows[(start + i) % hooks],
                        "event": next_id + i,
                        "kind": kind,
                        "payload": body,
                        "state": "pending",
                        "next_attempt_time": moment + due_in,
                        "create_time": moment,
                    }
                    for i in range(size)
                ]
                next_id += size
                with transaction():
                    for batch in chunked(events, ROWS_PER_STATEMENT):
                        EventRow.insert_many(batch).execute()
                    for batch in chunked(deliveries, ROWS_PER_STATEMENT):
                        DeliveryRow.insert_many(batch).execute()
            if isinstance(db, PostgresqlDatabase):
                # The event IDs above were given, not drawn from the serial: later events must not reuse them.
                db.execute_sql(SET_EVENT_SEQUENCE, (next_id - 1,))  # type: ignore[no-untyped-call]
                vacuum_analyze(db)
    finally:
        db.close()


def vacuum_analyze(db: PostgresqlDatabase) -> None:
    """Outside any transaction, which VACUUM refuses (peewee's PostgreSQL connections are in autocommit mode)."""
    for table in (WebhookRow, EventRow, DeliveryRow):
        db.execute_sql(f"VACUUM ANALYZE {table._meta.table_name}")  # type: ignore[no-untyped-call]


def activate(database: str, organization: str = "prefill") -> int:
    """Makes every webhook of `organization` active, in one transaction, which lets the dispatchers have their
    deliveries."""
    db = open_database(database)
    try:
        with db.connection_context(), transaction():
            return int(WebhookRow.update(active=True).where(WebhookRow.organization == organization).execute())
    finally:
        db.close()
