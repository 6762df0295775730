"""A SQLite database's write-ahead log is copied into the database file by a thread of the store, never by the
commit that grows it: such a commit syncs the file while it holds the write lock, and every writer waits for
the disk behind it."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from tests import seed
from tests.helpers import make_webhook, publish
from tests.support.receiver import Receiver
from tests.support.running import RunningServer, settings_in
from tests.support.waiting import eventually
from webhook_service.store.checkpoints import CHECKPOINT_SECONDS

EVENTS = 5


def events_in_the_file(path: Path) -> int | None:
    """The events the database file holds without its log (what checkpoints copied into it); None while a
    checkpoint is caught halfway."""
    with (
        contextlib.suppress(sqlite3.DatabaseError),
        contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as file,
    ):
        return int(file.execute('SELECT count(*) FROM "event"').fetchone()[0])
    return None


def test_the_log_reaches_the_database_file_without_a_commit_copying_it(tmp_path: Path, receiver: Receiver) -> None:
    path = tmp_path / "webhooks.db"
    running = RunningServer(settings_in(tmp_path, f"sqlite:///{path}"))
    try:
        org = f"checkpoints-{uuid.uuid4().hex[:8]}"
        with running.client() as client:
            make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}"))
            for serial in range(EVENTS):
                publish(
                    client,
                    seed.update_event(
                        stack=f"organizations/{org}/projects/p/stacks/s", url=f"{seed.BASE}/updates/{serial}"
                    ),
                )
        # A few dozen pages of log: SQLite's own checkpoint would wait for 1,000.
        eventually(
            lambda: events_in_the_file(path) == EVENTS,
            20 * CHECKPOINT_SECONDS,
            lambda: f"{events_in_the_file(path)} of {EVENTS} events in the database file",
        )
        store = running.server.store
        assert store is not None

        def checkpoints_on_commit(db: Any) -> int:
            return int(db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0])

        assert running.run(store.run(checkpoints_on_commit, store.db)) == 0
    finally:
        running.stop()
