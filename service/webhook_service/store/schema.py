"""Versioned schema: each change is a numbered migration, applied in order at start."""

from __future__ import annotations

from collections.abc import Callable

import peewee

from webhook_service.store.models import (
    AttemptRow,
    DeliveryRow,
    EventRow,
    IdempotencyRow,
    SchemaVersionRow,
    TokenRow,
    WebhookRow,
)


def _initial(db: peewee.Database) -> None:
    db.create_tables([WebhookRow, EventRow, DeliveryRow, AttemptRow, IdempotencyRow])


def _api_tokens(db: peewee.Database) -> None:
    db.create_tables([TokenRow])


def _pending_by_webhook(db: peewee.Database) -> None:
    """Claims look for due deliveries webhook by webhook, through pending rows only: the index stays small,
    and a backlog parked on an inactive or saturated webhook is never walked."""
    db.execute_sql(  # type: ignore[no-untyped-call]
        'CREATE INDEX "delivery_pending_by_webhook" ON "delivery" ("webhook_id", "next_attempt_time")'
        " WHERE \"state\" = 'pending'"
    )
    db.execute_sql('DROP INDEX IF EXISTS "delivery_state_next_attempt_time"')  # type: ignore[no-untyped-call]


# Append only: a released migration never changes, so every database reaches the same schema. A change to
# an existing table is a new migration (playhouse.migrate's add_column and friends), never an edit of the
# model that an earlier migration creates from.
MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (_initial, _api_tokens, _pending_by_webhook)
LATEST = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


def current_version(db: peewee.Database) -> int:
    if not db.table_exists(SchemaVersionRow._meta.table_name):
        return 0
    row = SchemaVersionRow.select(peewee.fn.MAX(SchemaVersionRow.version)).scalar()
    return int(row or 0)


# Any constant: the key of the advisory lock that lets one process at a time migrate a PostgreSQL database.
_MIGRATION_LOCK = 0x77656268


def migrate(db: peewee.Database, target: int = LATEST) -> None:
    """Upgrades the schema in place to `target`; refuses a database written by a newer release.

    Servers starting together take turns: SQLite's write lock or a PostgreSQL advisory lock.
    """
    with db.atomic("IMMEDIATE") if isinstance(db, peewee.SqliteDatabase) else db.atomic():
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))  # type: ignore[no-untyped-call]
        db.create_tables([SchemaVersionRow])
        version = current_version(db)
        if version > LATEST:
            raise SchemaTooNew(
                f"the database is at schema version {version}, newer than this release's {LATEST}; upgrade the service"
            )
        for number in range(version, target):
            MIGRATIONS[number](db)
            SchemaVersionRow.insert(version=number + 1).execute()
