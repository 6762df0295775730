"""Results for people: aligned tables, `label: value` blocks and times relative to now; for scripts, the
response in proto JSON."""

from __future__ import annotations

import datetime
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

NONE = "-"
_BREAKS = re.compile(r"\r\n|[\r\n\t]")
# C0 and C1 controls and DEL: what a terminal may take as the start of a command.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def print_json(message: Message, indent: int | None = 2) -> None:
    """Field names as the .proto spells them, as grpcurl prints them; fields at their default are printed
    too, so a script finds every key (`"recovered_count": 0`, `"filters": []`). Without `indent`, on one
    line, as a stream prints each answer; flushed, so a pipe gets each as it comes."""
    text = json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=indent
    )
    print(text, flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Columns as wide as their widest cell; the last one unpadded, so free text may run on."""
    lines = [list(headers), *([one_line(cell) for cell in row] for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers) - 1)]
    for line in lines:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[-1]]).rstrip())


def fields(pairs: Sequence[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in pairs) + 1
    for label, value in pairs:
        print(f"{label + ':':{width}}  {one_line(value)}".rstrip())


def one_line(text: str) -> str:
    """`text` for one line of a terminal: line breaks and tabs as spaces, other control characters escaped,
    since a receiver chooses its response body and an escape sequence in it could rewrite the screen."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found[0]):02x}", _BREAKS.sub(" ", text))


def lines(text: str) -> str:
    """`text` line by line as `one_line` shows each."""
    return "\n".join(one_line(line) for line in text.splitlines())


def shorten(text: str, limit: int = 120) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def when(owner: Message, field: str) -> str:
    """`field` of `owner` relative to now (`3m ago`, `in 5s`), or - when it is not set."""
    if not owner.HasField(field):
        return NONE
    moment: Timestamp = getattr(owner, field)
    return relative(moment.ToDatetime(datetime.UTC), datetime.datetime.now(datetime.UTC))


def clock(owner: Message, field: str) -> str:
    """`field` of `owner` as the local time of day, 14:03:27: when each answer of a stream happened."""
    if not owner.HasField(field):
        return NONE
    stamp: Timestamp = getattr(owner, field)
    return stamp.ToDatetime(datetime.UTC).astimezone().strftime("%H:%M:%S")


def moment(owner: Message, field: str) -> str:
    """`field` of `owner` as a UTC time and relative to now: 2024-05-01T10:00:00Z (3m ago)."""
    if not owner.HasField(field):
        return NONE
    stamp: Timestamp = getattr(owner, field)
    exact = stamp.ToDatetime(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{exact} ({when(owner, field)})"


def relative(moment: datetime.datetime, now: datetime.datetime) -> str:
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    span = _span(abs(seconds))
    return f"{span} ago" if seconds > 0 else f"in {span}"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def took(duration: Duration) -> str:
    seconds = duration.ToNanoseconds() / 1e9
    if not seconds:
        return NONE
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def code(response_code: int) -> str:
    return str(response_code) if response_code else NONE


def counted(count: int, one: str, many: str) -> str:
    """`1 delivery`, `2 deliveries`."""
    return f"{count} {one if count == 1 else many}"


def yes(value: bool) -> str:
    return "yes" if value else "no"


def listing(headers: Sequence[str], rows: Sequence[Sequence[str]], response: Any, what: str) -> None:
    """A page as a table; on stderr, so the table stays clean, that it is empty or how to see the next."""
    if rows:
        table(headers, rows)
    else:
        print(f"no {what}", file=sys.stderr)
    if response.next_page_token:
        print(f"more {what}: --page-token {response.next_page_token} (or --all)", file=sys.stderr)
