"""The log's format: lines of text for people, or one JSON object a line for log collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The parent of every logger of the service's modules.
SERVICE_LOGGER = "webhook_service"

# What a line may carry besides its message, passed with logging's `extra=`. Only these are written: a
# field not named here never reaches the log, whatever a caller passes.
FIELDS = ("method", "code", "duration_ms", "token_id", "webhook", "delivery", "attempt", "response_code")


class JsonFormatter(logging.Formatter):
    """`time` (UTC, ISO 8601), `level`, `logger`, `message`, then whichever of FIELDS the line has, and
    `exception` with its traceback. The message is escaped like any JSON string, so a newline in it (or in
    a traceback) never splits the object across lines."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure(format: str = "text", level: str = "info") -> None:
    """Every logger of the process, to standard error, in `format` (one of FORMATS); the service's own from
    `level` up. Other libraries' stay at INFO and above whatever `level` says: peewee's debug lines, for one,
    are every query with its parameters."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    wanted = logging.getLevelNamesMapping()[level.upper()]
    logging.basicConfig(level=max(wanted, logging.INFO), handlers=[handler])
    logging.getLogger(SERVICE_LOGGER).setLevel(wanted)
