"""Tables. Times are seconds since the epoch as floats, which sort and compare the same on every engine."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    CompositeKey,
    Database,
    DatabaseProxy,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

_thread = threading.local()
_process: list[Database | None] = [None]


class DatabaseRouter(DatabaseProxy):
    """The models' database: the one bound to the calling thread, else the one last opened.

    A query thread of the store serves one database, so one process can hold several (tests run
    servers side by side) without their queries crossing.
    """

    @property
    def obj(self) -> Database | None:
        return getattr(_thread, "db", None) or _process[0]

    @obj.setter
    def obj(self, value: Database | None) -> None:
        _process[0] = value


def bind_thread(db: Database) -> None:
    _thread.db = db


@contextlib.contextmanager
def bound_to(db: Database) -> Iterator[None]:
    """The calling thread's queries go to `db` for the duration, then to whatever they went to before."""
    previous = getattr(_thread, "db", None)
    _thread.db = db
    try:
        yield
    finally:
        _thread.db = previous


database = DatabaseRouter()


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class WebhookRow(BaseModel):
    # The serial ID gives List its stable, oldest-first order and its page cursor.
    id = AutoField()
    organization = CharField(max_length=100)
    project = CharField(max_length=100, default="")
    stack = CharField(max_length=100, default="")
    webhook_id = CharField(max_length=32)
    display_name = TextField()
    payload_url = TextField()
    secret = TextField(default="")
    active = BooleanField(default=True)
    format = CharField(max_length=16)
    filters = TextField(default="")
    groups = TextField(default="")
    disabled_reason = TextField(default="")
    # When deliveries started failing without a success since; drives --disable-after.
    failing_since = DoubleField(null=True)
    create_time = DoubleField()
    update_time = DoubleField()
    # The secret a rotation replaced, sealed like `secret`, and when it stops signing and is erased.
    previous_secret = TextField(default="")
    previous_secret_expire_time = DoubleField(null=True)
    # Counts the changes callers can see, for the etag; failing_since and last_success_time do not count.
    revision = IntegerField(default=1)
    # When a queued delivery last succeeded.
    last_success_time = DoubleField(null=True)
    # WebhookOrdering's value, or store.sequences.NUMBERING until a claim numbers its queue.
    ordering = CharField(max_length=16, default="unordered")

    class Meta:
        table_name = "webhook"
        indexes = ((("organization", "project", "stack", "webhook_id"), True),)


class HourlyAttemptsRow(BaseModel):
    """A webhook's queued attempts that ended in one clock hour (hours since the epoch): the latest 24 make
    its 24-hour counts, and older ones are pruned."""

    webhook_id: int

    webhook = ForeignKeyField(WebhookRow, on_delete="CASCADE")
    hour = IntegerField()
    succeeded = IntegerField(default=0)
    failed = IntegerField(default=0)

    class Meta:
        table_name = "webhook_hourly_attempts"
        primary_key = CompositeKey("webhook", "hour")


class EventRow(BaseModel):
    id = AutoField()
    event_id = CharField(max_length=64, unique=True)
    organization = CharField(max_length=100)
    project = CharField(max_length=100)
    stack = CharField(max_length=100)
    kind = CharField(max_length=32)
    create_time = DoubleField(index=True)

    class Meta:
        table_name = "event"


class BodyRow(BaseModel):
    """A body an event's deliveries share: rendered once per format, stored once however many webhooks of
    that format get the event. It goes with its event."""

    event_id: int

    id = AutoField()
    event = ForeignKeyField(EventRow, on_delete="CASCADE", index=True)
    payload = BlobField()

    class Meta:
        table_name = "body"


class DeliveryRow(BaseModel):
    # The raw foreign-key columns peewee provides, named here for type checkers.
    webhook_id: int
    event_id: int | None

    id = AutoField()
    delivery_id = CharField(max_length=64, unique=True)
    webhook = ForeignKeyField(WebhookRow, on_delete="CASCADE", index=True)
    event = ForeignKeyField(EventRow, null=True, on_delete="CASCADE", index=True)
    kind = CharField(max_length=32)
    payload = BlobField()
    state = CharField(max_length=16)
    attempt_count = IntegerField(default=0)
    next_attempt_time = DoubleField(null=True)
    # A dispatcher's claim: until lease_expires no other dispatcher takes the delivery.
    lease_owner = CharField(max_length=64, null=True)
    lease_expires = DoubleField(null=True)
    create_time = DoubleField(index=True)
    # The attempts made before the retry schedule last began: a recovered delivery starts it afresh, while
    # its attempts keep their numbers.
    schedule_start = IntegerField(default=0)
    # Deliveries of a webhook that keeps order go out one at a time per sequence: a stack's, `project/stack`,
    # or one of its own (its delivery_id) for a delivery without a stack (a ping). Empty when the webhook did
    # not keep order as the delivery was queued (store/sequences.py numbers those when it starts to).
    sequence = CharField(max_length=201, default="")
    # The shared body the delivery sends, a body of its own event, when `payload` is left empty; a body used
    # once (a ping, an event with one webhook of the format) stays in `payload`. No foreign key: one would
    # need an index on this column for every body deleted, which publishing would pay for per delivery;
    # a body goes only with its event, whose deliveries go with it, or once its event's deliveries name it no
    # more (store/bodies.py).
    body_id = IntegerField(null=True)

    class Meta:
        table_name = "delivery"
        indexes = ((("state", "next_attempt_time"), False),)


class SequenceLeaseRow(BaseModel):
    """A sequence of an ordered webhook with a delivery out: the claim holds it with the delivery's own lease,
    and no other delivery of the sequence is claimed until the attempt is recorded or the lease expires."""

    webhook_id: int

    webhook = ForeignKeyField(WebhookRow, on_delete="CASCADE")
    sequence = CharField(max_length=201)
    # The row ID of the delivery out.
    delivery = IntegerField()
    lease_owner = CharField(max_length=64)
    lease_expires = DoubleField()

    class Meta:
        table_name = "sequence_lease"
        primary_key = CompositeKey("webhook", "sequence")


class AttemptRow(BaseModel):
    delivery_id: int

    id = AutoField()
    delivery = ForeignKeyField(DeliveryRow, on_delete="CASCADE", index=True)
    attempt_number = IntegerField()
    start_time = DoubleField()
    request_url = TextField()
    request_headers = TextField()
    response_code = IntegerField(default=0)
    response_headers = TextField(default="{}")
    response_body = TextField(default="")
    duration = DoubleField(default=0.0)
    error = TextField(default="")
    # The delivery's state once this attempt was recorded, as watchers are told it; empty on attempts recorded
    # before it was kept.
    state = CharField(max_length=16, default="")

    class Meta:
        table_name = "delivery_attempt"


class IdempotencyRow(BaseModel):
    """A request_id already answered, with what was answered, so a repeat gets the same.

    Keys are per organization, so one organization's request_id never reaches another's answer; the
    fingerprint (a keyed digest of the request) tells a repeat from another request under the same key.
    """

    id = AutoField()
    scope = CharField(max_length=64)
    organization = CharField(max_length=100, default="")
    request_id = CharField(max_length=128)
    fingerprint = CharField(max_length=64, default="")
    response = TextField()
    create_time = DoubleField(index=True)

    class Meta:
        table_name = "idempotency_key"
        indexes = ((("scope", "organization", "request_id"), True),)


class TokenRow(BaseModel):
    """An API token: only its hash is kept; `organizations` is comma-separated, or `*`."""

    id = AutoField()
    token_id = CharField(max_length=32, unique=True)
    token_hash = CharField(max_length=64, unique=True)
    role = CharField(max_length=16)
    organizations = TextField()
    description = TextField(default="")
    create_time = DoubleField()
    revoke_time = DoubleField(null=True)

    class Meta:
        table_name = "api_token"


class SchemaVersionRow(BaseModel):
    version = IntegerField()

    class Meta:
        table_name = "schema_version"
        primary_key = False
