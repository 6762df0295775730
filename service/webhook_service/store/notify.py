"""Work announced across processes with PostgreSQL NOTIFY, heard with LISTEN on a connection of its own.

New deliveries wake the dispatchers, which also poll, so a lost notification only costs latency; SQLite has
no such channel, and there the process that publishes wakes its own dispatcher. Recorded attempts reach the
servers streaming them to watchers (app/watch.py), which on SQLite read the attempts table instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg2
from peewee import PostgresqlDatabase

from webhook_service.store import statements
from webhook_service.store.models import database

CHANNEL = "webhook_deliveries"
ATTEMPTS_CHANNEL = "webhook_attempts"
# Attempts named in one notification: each as `delivery row:attempt number`, at most about 15 characters, so a
# payload stays well under PostgreSQL's 8000 bytes.
ATTEMPTS_PER_NOTIFICATION = 400


def announce() -> None:
    """Inside a publishing transaction: dispatchers hear of it when it commits."""
    if isinstance(database.obj, PostgresqlDatabase):
        statements.execute(f"NOTIFY {CHANNEL}")


def announce_attempts(attempts: Sequence[tuple[int, int]]) -> None:
    """Inside the transaction that records them: the (delivery row, attempt number) of each attempt, heard once
    it commits, in commit order."""
    if not isinstance(database.obj, PostgresqlDatabase):
        return
    for chunk in statements.batches(attempts, ATTEMPTS_PER_NOTIFICATION):
        payload = ",".join(f"{delivery}:{number}" for delivery, number in chunk)
        statements.execute("SELECT pg_notify(?, ?)", (ATTEMPTS_CHANNEL, payload))


def attempts_announced(payload: str) -> list[tuple[int, int]]:
    """The (delivery row, attempt number) pairs of one attempts notification."""
    pairs = (entry.split(":") for entry in payload.split(",") if entry)
    return [(int(delivery), int(number)) for delivery, number in pairs]


class Listener:
    """A connection of its own that only listens; `connect` and `take` raise psycopg2.Error when it breaks."""

    def __init__(self, db: PostgresqlDatabase, channel: str) -> None:
        self._params: dict[str, Any] = {**db.connect_params, "dbname": db.database}
        self._channel = channel
        self._connection: Any = None

    def connect(self) -> int:
        """Blocking: connects and listens; returns the socket to watch."""
        connection = psycopg2.connect(**self._params)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {self._channel}")
        self._connection = connection
        return int(connection.fileno())

    def take(self) -> list[str]:
        """The payloads of the notifications that arrived since the last call, oldest first; call when the
        socket is readable."""
        self._connection.poll()
        payloads = [notification.payload for notification in self._connection.notifies]
        self._connection.notifies.clear()
        return payloads

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def listener(channel: str = CHANNEL) -> Listener | None:
    """A listener on `channel` of the database in use, or None where the engine has no notifications."""
    db = database.obj
    return Listener(db, channel) if isinstance(db, PostgresqlDatabase) else None
