"""Checkpoints of a SQLite database's write-ahead log, made beside the writers rather than by them.

Left to SQLite, the commit that takes the log past 1,000 pages copies it into the database file and syncs
that file before it returns, holding the write lock all along: when the disk is busy, that commit, and every
publish and record waiting for the lock behind it, waits for the sync. (Paced at 500 publishes a second beside
a disk writing steadily, the publish p99 was 94-114 ms so, and 21-26 ms with checkpoints on a thread.)

Commits here never checkpoint (SQLITE_PRAGMAS turns it off): a thread of each store does, on a connection of
its own, every CHECKPOINT_SECONDS. A checkpoint is PASSIVE: it copies the pages no reader still needs and waits
for nobody, so writers go on meanwhile, and one with nothing new to copy writes nothing.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

# About SQLite's own pace under a steady load, which checkpointed every 1,000 pages; the log grows by what
# the writers commit in this time.
CHECKPOINT_SECONDS = 0.25


class Checkpointer:
    """Checkpoints the database file at `path` until closed."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:
                    # Tried again next time; the log only grows meanwhile.
                    log.debug("checkpoint of %s failed: %s", self._path, error)
        finally:
            connection.close()

    def close(self) -> None:
        """Stops the thread and closes its connection: once the store's own are closed too, SQLite checkpoints
        the rest of the log and removes it."""
        self._stop.set()
        self._thread.join()
