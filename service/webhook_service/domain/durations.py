"""Durations as operators write them on the command line: 500ms, 15s, 5m, 2h, 5d."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError naming the accepted form."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 15s, 5m, 2h or 5d")
    return float(match[1]) * _UNITS[match[2]]


def parse_schedule(text: str) -> tuple[float, ...]:
    """The delays before each attempt, from a comma-separated list of durations."""
    delays = tuple(parse_duration(part) for part in text.split(","))
    if not delays:
        raise ValueError("a retry schedule needs at least one delay")
    return delays
