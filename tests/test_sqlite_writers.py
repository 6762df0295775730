"""Writers of one SQLite file in several processes take turns on the advisory lock beside it."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from webhook_service.store import writers
from webhook_service.store.database import open_database, transaction
from webhook_service.store.models import WebhookRow, bound_to


def test_a_write_transaction_waits_while_another_process_holds_the_writers_lock(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'webhooks.db'}")
    # Another process's turn: a lock on a file description of its own, as another process has.
    other = os.open(tmp_path / "webhooks.db-writer", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    done = threading.Event()

    def write() -> None:
        with bound_to(db), db.connection_context(), transaction():
            WebhookRow.select().count()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # SQLite's own lock is free all along: only the writers' lock holds the transaction back.
        assert not done.wait(0.5)
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    assert done.wait(30)
    writer.join()
    assert oct((tmp_path / "webhooks.db-writer").stat().st_mode & 0o777) == "0o600"


def test_the_writers_lock_is_not_waited_for_past_its_bound(tmp_path: Path) -> None:
    database = str(tmp_path / "webhooks.db")
    other = os.open(database + writers.SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    entered = []
    try:
        with writers.turn(database, wait=0.05):
            entered.append(True)
    finally:
        os.close(other)
    assert entered == [True]
