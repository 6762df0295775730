"""Versioned schema: each change is a numbered migration, applied in order at start."""

from __future__ import annotations

from collections.abc import Callable

import peewee

from webhook_service.store.models import (
    BaseModel,
    EventRow,
    SchemaVersionRow,
    TokenRow,
)


class _WebhookRowV1(BaseModel):
    """webhook as the first release made it; _previous_secrets and _webhook_revision add to it."""

    id = peewee.AutoField()
    organization = peewee.CharField(max_length=100)
    project = peewee.CharField(max_length=100, default="")
    stack = peewee.CharField(max_length=100, default="")
    webhook_id = peewee.CharField(max_length=32)
    display_name = peewee.TextField()
    payload_url = peewee.TextField()
    secret = peewee.TextField(default="")
    active = peewee.BooleanField(default=True)
    format = peewee.CharField(max_length=16)
    filters = peewee.TextField(default="")
    groups = peewee.TextField(default="")
    disabled_reason = peewee.TextField(default="")
    failing_since = peewee.DoubleField(null=True)
    create_time = peewee.DoubleField()
    update_time = peewee.DoubleField()

    class Meta:
        table_name = "webhook"
        indexes = ((("organization", "project", "stack", "webhook_id"), True),)


class _DeliveryRowV1(BaseModel):
    """delivery as the first release made it; _recovered_schedules adds to it."""

    id = peewee.AutoField()
    delivery_id = peewee.CharField(max_length=64, unique=True)
    webhook = peewee.ForeignKeyField(_WebhookRowV1, on_delete="CASCADE", index=True)
    event = peewee.ForeignKeyField(EventRow, null=True, on_delete="CASCADE", index=True)
    kind = peewee.CharField(max_length=32)
    payload = peewee.BlobField()
    state = peewee.CharField(max_length=16)
    attempt_count = peewee.IntegerField(default=0)
    next_attempt_time = peewee.DoubleField(null=True)
    lease_owner = peewee.CharField(max_length=64, null=True)
    lease_expires = peewee.DoubleField(null=True)
    create_time = peewee.DoubleField(index=True)

    class Meta:
        table_name = "delivery"
        indexes = ((("state", "next_attempt_time"), False),)


class _IdempotencyRowV1(BaseModel):
    """idempotency_key as the first release made it; _idempotency_per_organization changes it."""

    id = peewee.AutoField()
    scope = peewee.CharField(max_length=64)
    request_id = peewee.CharField(max_length=128)
    response = peewee.TextField()
    create_time = peewee.DoubleField(index=True)

    class Meta:
        table_name = "idempotency_key"
        indexes = ((("scope", "request_id"), True),)


class _AttemptRowV1(BaseModel):
    """delivery_attempt as the first release made it; _attempt_states adds to it."""

    id = peewee.AutoField()
    delivery = peewee.ForeignKeyField(_DeliveryRowV1, on_delete="CASCADE", index=True)
    attempt_number = peewee.IntegerField()
    start_time = peewee.DoubleField()
    request_url = peewee.TextField()
    request_headers = peewee.TextField()
    response_code = peewee.IntegerField(default=0)
    response_headers = peewee.TextField(default="{}")
    response_body = peewee.TextField(default="")
    duration = peewee.DoubleField(default=0.0)
    error = peewee.TextField(default="")

    class Meta:
        table_name = "delivery_attempt"


class _BodyRowV12(BaseModel):
    """body as _shared_bodies made it."""

    id = peewee.AutoField()
    event = peewee.ForeignKeyField(EventRow, on_delete="CASCADE", index=True)
    payload = peewee.BlobField()

    class Meta:
        table_name = "body"


def _initial(db: peewee.Database) -> None:
    db.create_tables([_WebhookRowV1, EventRow, _DeliveryRowV1, _AttemptRowV1, _IdempotencyRowV1])


def _api_tokens(db: peewee.Database) -> None:
    db.create_tables([TokenRow])


def _idempotency_per_organization(db: peewee.Database) -> None:
    """request_id keys are per organization and remember a fingerprint of their request. Keys stored before
    have no organization, so they match no request again; they expire as usual."""
    for statement in (
        """ALTER TABLE "idempotency_key" ADD COLUMN "organization" VARCHAR(100) NOT NULL DEFAULT ''""",
        """ALTER TABLE "idempotency_key" ADD COLUMN "fingerprint" VARCHAR(64) NOT NULL DEFAULT ''""",
        'DROP INDEX "idempotency_key_scope_request_id"',
        'CREATE UNIQUE INDEX "idempotency_key_scope_organization_request_id"'
        ' ON "idempotency_key" ("scope", "organization", "request_id")',
    ):
        db.execute_sql(statement)  # type: ignore[no-untyped-call]


def _pending_by_webhook(db: peewee.Database) -> None:
    """Claims look for due deliveries webhook by webhook, through pending rows only: the index stays small,
    and a backlog parked on an inactive or saturated webhook is never walked."""
    db.execute_sql(  # type: ignore[no-untyped-call]
        'CREATE INDEX "delivery_pending_by_webhook" ON "delivery" ("webhook_id", "next_attempt_time")'
        " WHERE \"state\" = 'pending'"
    )
    db.execute_sql('DROP INDEX IF EXISTS "delivery_state_next_attempt_time"')  # type: ignore[no-untyped-call]


def _shared_settings(db: peewee.Database) -> None:
    """The delivery settings every process sharing the database must agree on."""
    db.execute_sql(  # type: ignore[no-untyped-call]
        'CREATE TABLE "shared_setting" ("name" VARCHAR(64) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL)'
    )


def _previous_secrets(db: peewee.Database) -> None:
    """A rotated webhook keeps the secret it replaced, sealed, until its overlap ends."""
    for statement in (
        """ALTER TABLE "webhook" ADD COLUMN "previous_secret" TEXT NOT NULL DEFAULT ''""",
        'ALTER TABLE "webhook" ADD COLUMN "previous_secret_expire_time" DOUBLE PRECISION',
    ):
        db.execute_sql(statement)  # type: ignore[no-untyped-call]


def _recovered_schedules(db: peewee.Database) -> None:
    """A recovered delivery starts its retry schedule afresh after the attempts it has made."""
    db.execute_sql(  # type: ignore[no-untyped-call]
        'ALTER TABLE "delivery" ADD COLUMN "schedule_start" INTEGER NOT NULL DEFAULT 0'
    )


def _webhook_revision(db: peewee.Database) -> None:
    """Each webhook counts its changes, which its etag is made from; existing webhooks start at 1."""
    db.execute_sql('ALTER TABLE "webhook" ADD COLUMN "revision" INTEGER NOT NULL DEFAULT 1')  # type: ignore[no-untyped-call]


def _webhook_health(db: peewee.Database) -> None:
    """Webhooks keep when a queued delivery last succeeded, and count their queued attempts by the hour.
    Both start empty: the attempts made before are not counted."""
    for statement in (
        'ALTER TABLE "webhook" ADD COLUMN "last_success_time" DOUBLE PRECISION',
        'CREATE TABLE "webhook_hourly_attempts" ('
        ' "webhook_id" INTEGER NOT NULL REFERENCES "webhook" ("id") ON DELETE CASCADE,'
        ' "hour" INTEGER NOT NULL, "succeeded" INTEGER NOT NULL DEFAULT 0, "failed" INTEGER NOT NULL DEFAULT 0,'
        ' PRIMARY KEY ("webhook_id", "hour"))',
    ):
        db.execute_sql(statement)  # type: ignore[no-untyped-call]


def _ordered_deliveries(db: peewee.Database) -> None:
    """A webhook may keep its deliveries in order per stack. Each of its deliveries then names its sequence:
    its stack, or itself when it has none (a ping); other webhooks' deliveries name none. A claim finds each
    sequence's oldest pending delivery through an index of the pending deliveries that name one, which
    other webhooks' deliveries stay out of, and holds the sequence in `sequence_lease` while it is out."""
    for statement in (
        """ALTER TABLE "webhook" ADD COLUMN "ordering" VARCHAR(16) NOT NULL DEFAULT 'unordered'""",
        """ALTER TABLE "delivery" ADD COLUMN "sequence" VARCHAR(201) NOT NULL DEFAULT ''""",
        'CREATE INDEX "delivery_pending_by_sequence" ON "delivery" ("webhook_id", "sequence", "id")'
        """ WHERE "state" = 'pending' AND "sequence" <> ''""",
        """CREATE TABLE "sequence_lease" (
            "webhook_id" INTEGER NOT NULL REFERENCES "webhook" ("id") ON DELETE CASCADE,
            "sequence" VARCHAR(201) NOT NULL,
            "delivery" INTEGER NOT NULL,
            "lease_owner" VARCHAR(64) NOT NULL,
            "lease_expires" DOUBLE PRECISION NOT NULL,
            PRIMARY KEY ("webhook_id", "sequence"))""",
    ):
        db.execute_sql(statement)  # type: ignore[no-untyped-call]


def _attempt_states(db: peewee.Database) -> None:
    """Each attempt keeps the state it left its delivery in, which watchers are told; earlier attempts have none."""
    db.execute_sql(  # type: ignore[no-untyped-call]
        """ALTER TABLE "delivery_attempt" ADD COLUMN "state" VARCHAR(16) NOT NULL DEFAULT ''"""
    )


def _shared_bodies(db: peewee.Database) -> None:
    """An event's deliveries of one format share one stored body instead of a copy each. Deliveries stored
    before keep theirs in place: rewriting a large table would hold a long migration."""
    db.create_tables([_BodyRowV12])
    db.execute_sql('ALTER TABLE "delivery" ADD COLUMN "body_id" INTEGER')  # type: ignore[no-untyped-call]


# Append only: a released migration never changes, so every database reaches the same schema. A change to
# an existing table is a new migration (playhouse.migrate's add_column and friends, or SQL both engines
# read), and the migration that created the table keeps a frozen copy of the model as it was then.
MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (
    _initial,
    _api_tokens,
    _idempotency_per_organization,
    _pending_by_webhook,
    _shared_settings,
    _previous_secrets,
    _recovered_schedules,
    _webhook_revision,
    _webhook_health,
    _attempt_states,
    _ordered_deliveries,
    _shared_bodies,
)
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
