"""The SQL statements a store function runs, as peewee logs them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any


def statements_of(call: Callable[[], object]) -> list[str]:
    """The SQL statements `call` runs on the calling thread, as peewee logs them."""
    return [str(logged) for logged in logged_by(call)]


def logged_by(call: Callable[[], object]) -> list[Any]:
    """What peewee logs of each statement `call` runs on the calling thread: mostly (sql, parameters)."""
    thread = threading.get_ident()
    seen: list[Any] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                seen.append(record.msg)

    logger = logging.getLogger("peewee")
    handler, level, propagate = Seen(logging.DEBUG), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        call()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return seen
