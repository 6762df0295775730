"""New deliveries announced across processes: PostgreSQL NOTIFY on publish, LISTEN in each dispatcher.

Dispatchers also poll, so a lost notification only costs latency; SQLite has no such channel, and
there the process that publishes wakes its own dispatcher.
"""

from __future__ import annotations

from typing import Any

import psycopg2
from peewee import PostgresqlDatabase

from webhook_service.store import statements
from webhook_service.store.models import database

CHANNEL = "webhook_deliveries"


def announce() -> None:
    """Inside a publishing transaction: dispatchers hear of it when it commits."""
    if isinstance(database.obj, PostgresqlDatabase):
        statements.execute(f"NOTIFY {CHANNEL}")


class Listener:
    """A connection of its own that only listens; `connect` and `heard` raise psycopg2.Error when it breaks."""

    def __init__(self, db: PostgresqlDatabase) -> None:
        self._params: dict[str, Any] = {**db.connect_params, "dbname": db.database}
        self._connection: Any = None

    def connect(self) -> int:
        """Blocking: connects and listens; returns the socket to watch."""
        connection = psycopg2.connect(**self._params)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        self._connection = connection
        return int(connection.fileno())

    def heard(self) -> bool:
        """Whether a notification arrived since the last call; call when the socket is readable."""
        self._connection.poll()
        notified = bool(self._connection.notifies)
        self._connection.notifies.clear()
        return notified

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def listener() -> Listener | None:
    """A listener for the database in use, or None where the engine has no notifications."""
    db = database.obj
    return Listener(db) if isinstance(db, PostgresqlDatabase) else None
