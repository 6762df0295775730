"""The SQL statements a store function runs, as peewee logs them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


def statements_of(call: Callable[[], object]) -> list[str]:
    """The SQL statements `call` runs on the calling thread, as peewee logs them."""
    thread = threading.get_ident()
    seen: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                seen.append(str(record.msg))

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
