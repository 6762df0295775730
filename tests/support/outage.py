"""The database refusing a running server, on either engine."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import psycopg2


@contextlib.contextmanager
def database_outage(url: str) -> Iterator[None]:
    """SQLite: another process holds the write lock, so the server's writes give up after its busy timeout.
    PostgreSQL: the database is dropped under the server's connections, for good."""
    if url.startswith("sqlite:///"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            yield
        finally:
            holder.close()
        return
    base, _, name = url.rpartition("/")
    connection = psycopg2.connect(f"{base}/postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        connection.close()
    yield
