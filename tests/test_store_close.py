"""Closing a store closes the connection each of its query threads opened, then and there.

A SQLite connection refers to itself through its statement cache, so one left to its thread's end is freed only
by the cyclic garbage collector, whenever that runs: until then the database keeps its write-ahead log beside
it, and a server database keeps the session.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support import sql
from tests.support.databases import Databases
from webhook_service.store import schema
from webhook_service.store.database import Executor, open_database
from webhook_service.store.secrets import SecretBox

THREADS = 3


@pytest.fixture
def without_collector() -> Iterator[None]:
    """Whatever closes a connection here, it is not the garbage collector."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _sessions(url: str) -> int:
    """The other sessions of a PostgreSQL database; the files beside a SQLite one that only open connections
    keep (its write-ahead log)."""
    if url.startswith("sqlite"):
        return int(Path(url.removeprefix("sqlite:///") + "-wal").exists())
    rows = sql.execute(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return int(rows[0][0])


def test_closing_a_store_closes_every_connection_its_threads_opened(
    tmp_path: Path, databases: Databases, without_collector: None
) -> None:
    url = databases.new(tmp_path)
    db = open_database(url)
    threads = 1 if url.startswith("sqlite") else THREADS
    store = Executor(db, threads, SecretBox(Fernet.generate_key()))
    opened_by: set[int] = set()
    all_in = threading.Barrier(threads, timeout=30)

    def query() -> None:
        # Held until every thread runs one, so each thread opens a connection of its own.
        schema.current_version(db)
        opened_by.add(threading.get_ident())
        if threads > 1:
            all_in.wait()

    async def on_every_thread() -> None:
        await asyncio.gather(*(store.run(query) for _ in range(threads)))

    asyncio.run(on_every_thread())
    assert len(opened_by) == threads
    assert _sessions(url) >= 1

    store.close()

    assert _sessions(url) == 0
