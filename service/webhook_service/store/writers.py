"""Turns at SQLite's single write lock for the processes sharing a database file (a server and its dispatcher
processes): each write transaction first takes an advisory lock on a file beside the database.

SQLite's own wait for its lock sleeps longer and longer while another process writes (1, 2, 5, 10 ... up to
100 ms at a time), so with two processes writing steadily a commit can wait tens of milliseconds for a lock
that was free after one. This lock is tried again every millisecond at most. After the busy timeout it is
no longer waited for, and SQLite's own wait, with its own timeout, decides.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator

FIRST_RETRY_SECONDS = 0.0001
LONGEST_RETRY_SECONDS = 0.001
SUFFIX = "-writer"

_thread = threading.local()


class _LockFile:
    """The lock file opened by one thread: flock's locks belong to an open file, so threads of one process
    need one each to exclude each other."""

    def __init__(self, path: str) -> None:
        # Owner-only, like the database beside it.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __del__(self) -> None:
        os.close(self.fd)


@contextlib.contextmanager
def turn(database_file: str, wait: float) -> Iterator[None]:
    """Holds the writers' lock of `database_file` for the block, waiting for it at most `wait` seconds."""
    files: dict[str, _LockFile] = _thread.__dict__.setdefault("files", {})
    lock = files.get(database_file)
    if lock is None:
        lock = files[database_file] = _LockFile(database_file + SUFFIX)
    held = _take(lock.fd, wait)
    try:
        yield
    finally:
        if held:
            fcntl.flock(lock.fd, fcntl.LOCK_UN)


def _take(fd: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    retry = FIRST_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(retry)
            retry = min(2 * retry, LONGEST_RETRY_SECONDS)
