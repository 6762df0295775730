"""A group of publishes costs a few statements per publish, each a round trip on PostgreSQL: nothing in it is
run once per publish that could run once per group, and a request_id costs one statement."""

from __future__ import annotations

import functools
import time
import uuid

import peewee

from tests import seed
from tests.helpers import make_webhook
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.statements import statements_of
from webhook_service.domain.idempotency import RequestKey, publish_key
from webhook_service.domain.payloads import event_kind
from webhook_service.domain.routing import route
from webhook_service.store import events, idempotency, notify
from webhook_service.store.database import savepoint, transaction
from webhook_service.store.events import Publication, Published
from webhooks_client import Client

GROUP = 8
# Per publish: its savepoint, the stack's webhooks, its answer remembered under its request_id, the event, its
# deliveries; and on SQLite the savepoint released, which PostgreSQL leaves to the commit.
PER_PUBLISH = 5
# A repeat: its savepoint, the stack's webhooks, the answer it would have given refused, the first one read;
# and on SQLite the savepoint released.
PER_REPEAT = 4


def publication(org: str, serial: int) -> Publication:
    event = seed.stack_update(org, serial)
    return Publication(
        event, event_kind(event), functools.partial(route, event), 0.0, publish_key(f"trips-{serial}", event)
    )


def test_a_group_of_publishes_runs_a_few_statements_each_and_announces_once(
    server: RunningServer, client: Client, receiver: Receiver
) -> None:
    org = f"trips-{uuid.uuid4().hex[:8]}"
    make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}"))
    store = server.server.store
    assert store is not None
    postgresql = not isinstance(store.db, peewee.SqliteDatabase)
    # A dispatcher's ear, on a connection of its own: it hears what the group's commit announces.
    ear = server.run(store.run(notify.listener))
    if ear is not None:
        ear.connect()

    def grouped() -> list[str]:
        return statements_of(lambda: events.publish_all([publication(org, n) for n in range(GROUP)]))

    try:
        ran = server.run(store.run(grouped))
        assert len(receiver.wait_for(f"/{org}", GROUP)) == GROUP
        heard = _heard(ear) if ear is not None else []
        repeated = server.run(store.run(grouped))
    finally:
        if ear is not None:
            ear.close()

    announced = [statement for statement in ran if "NOTIFY" in statement]
    assert len(announced) == (1 if postgresql else 0), announced
    keyed = [statement for statement in ran if '"idempotency_key"' in statement]
    assert len(keyed) == GROUP, keyed
    released = 0 if postgresql else 1
    assert len(ran) == (PER_PUBLISH + released) * GROUP + len(announced), ran
    assert len(heard) == (1 if postgresql else 0)
    # Repeats store nothing, so they announce nothing either.
    assert len(repeated) == (PER_REPEAT + released) * GROUP, repeated


def _heard(ear: notify.Listener) -> list[str]:
    """What `ear` has heard, once something has arrived (the commit has, when the deliveries were received)."""
    deadline = time.monotonic() + 10
    heard = ear.take()
    while not heard and time.monotonic() < deadline:
        time.sleep(0.05)
        heard = ear.take()
    return heard


def test_a_live_request_id_never_gives_way_and_an_expired_one_does(server: RunningServer) -> None:
    store = server.server.store
    assert store is not None
    org = f"trips-{uuid.uuid4().hex[:8]}"

    def remember_again(request_id: str, expired_before: float) -> tuple[bool, str | None]:
        """Whether a second answer under the key was refused, and the answer the key then gives."""
        key = RequestKey(org, request_id, b"the request")
        with transaction():
            idempotency.remember(idempotency.PUBLISH_EVENT, key, "first")
            try:
                with savepoint():
                    idempotency.remember(idempotency.PUBLISH_EVENT, key, "second", expired_before)
            except peewee.IntegrityError:
                return True, idempotency.recall(idempotency.PUBLISH_EVENT, key)
            return False, idempotency.recall(idempotency.PUBLISH_EVENT, key)

    # A concurrent first use that lost meets the unique key as an IntegrityError, and reads the winner's answer.
    assert server.run(store.run(remember_again, "live", time.time() - 3600)) == (True, "first")
    # Remembered before the window the second call keeps: the new answer takes its place.
    assert server.run(store.run(remember_again, "expired", time.time() + 3600)) == (False, "second")


def test_a_group_with_nothing_to_deliver_announces_nothing(server: RunningServer) -> None:
    store = server.server.store
    assert store is not None
    org = f"trips-{uuid.uuid4().hex[:8]}"  # without webhooks
    answers: list[Published | Exception] = []

    def grouped() -> None:
        answers.extend(events.publish_all([publication(org, n) for n in range(3)]))

    ran = server.run(store.run(statements_of, grouped))

    assert all(isinstance(answer, Published) and not answer.deliveries for answer in answers), answers
    assert not [statement for statement in ran if "NOTIFY" in statement]
