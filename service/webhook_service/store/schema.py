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


# Append only: a released migration never changes, so every database reaches the same schema.
MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (_initial, _api_tokens)
LATEST = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


def current_version(db: peewee.Database) -> int:
    if not db.table_exists(SchemaVersionRow._meta.table_name):
        return 0
    row = SchemaVersionRow.select(peewee.fn.MAX(SchemaVersionRow.version)).scalar()
    return int(row or 0)


def migrate(db: peewee.Database) -> None:
    """Upgrades the schema in place; refuses a database written by a newer release."""
    with db.atomic():
        db.create_tables([SchemaVersionRow])
        version = current_version(db)
        if version > LATEST:
            raise SchemaTooNew(
                f"the database is at schema version {version}, newer than this release's {LATEST}; upgrade the service"
            )
        for number in range(version, LATEST):
            MIGRATIONS[number](db)
            SchemaVersionRow.insert(version=number + 1).execute()
