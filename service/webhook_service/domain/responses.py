"""What a receiver answered, made fit to store and to show: valid text, bounded in size.

Receivers are outside the service's control. Their headers may hold bytes that are not UTF-8 (the delivery
client decodes them with surrogateescape, which leaves lone surrogates that protobuf and PostgreSQL refuse) and
may run to a megabyte. The store applies these rules again to rows written before them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from webhook_service.domain.limits import MAX_RESPONSE_HEADER_BYTES

# The stored header that says others were left out. Parentheses cannot appear in a header name, so no receiver
# can send one that looks like it.
TRUNCATED = "(truncated)"
# What the TRUNCATED entry may take of the limit, so that the stored headers stay within it.
_MARKER_ROOM = 100

_UNPRINTABLE = re.compile("[\x00\ud800-\udfff]")
# surrogateescape decodes a byte 0xNN that is not UTF-8 as U+DCNN.
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with what a protobuf string or PostgreSQL text cannot hold escaped as Python's backslashreplace
    would: a byte that was not UTF-8 (a lone surrogate from surrogateescape) as \\xNN, any other lone surrogate
    as \\uNNNN, and NUL as \\x00."""
    # Nearly every header and body is ASCII, which holds no surrogate: only NUL is left to look for.
    if text.isascii() and "\x00" not in text:
        return text
    return _UNPRINTABLE.sub(_escape, text)


def printable_bytes(data: bytes) -> str:
    """`data` as UTF-8 text, its bytes that are not UTF-8 as \\xNN."""
    return printable(data.decode("utf-8", "surrogateescape"))


def cap_headers(headers: Iterable[tuple[str, str]], limit: int = MAX_RESPONSE_HEADER_BYTES) -> dict[str, str]:
    """Response headers as stored, at most `limit` bytes of names and values (UTF-8): a repeated name once,
    under its first spelling, its values joined with ", "; every name and value printable. Past the limit, the
    headers that fit are kept in order (a header too large is left out, smaller ones after it may still fit)
    and a TRUNCATED entry says how many were left out. Capping what was capped changes nothing."""
    joined: dict[str, tuple[str, list[str]]] = {}
    for name, value in headers:
        shown = printable(name)
        key = shown.lower()
        entry = joined.get(key)
        if entry is None:
            joined[key] = (shown, [printable(value)])
        else:
            entry[1].append(printable(value))
    entries = []
    total = 0
    for name, values in joined.values():
        value = ", ".join(values)
        size = len(name.encode()) + len(value.encode())
        entries.append((name, value, size))
        total += size
    if total <= limit:
        return {name: value for name, value, _ in entries}
    kept: dict[str, str] = {}
    room = limit - _MARKER_ROOM
    for name, value, size in entries:
        if size <= room:
            kept[name] = value
            room -= size
    left_out = len(entries) - len(kept)
    kept[TRUNCATED] = f"{left_out} headers left out, past the {limit}-byte limit"
    return kept
