"""Waiting for what the service does in its own time: deliveries, recorded attempts, log lines, states.

Tests wait for a condition with a generous deadline and then assert on states and counts, never on how long
something took: the machine running them may be busy, and a tight bound would flake."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float, what: str | Callable[[], str], every: float = 0.1) -> T:
    """Calls `check` every `every` seconds until it answers something other than None or False: a condition's
    True, or what was waited for, which may be empty (no requests, an empty body); returns that.

    The last call to `check` comes after `timeout` seconds, so whatever happened within them counts; then
    AssertionError says what did not happen. A callable `what` is called only then, so the message can
    show the state the service is in by that time."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what if isinstance(what, str) else what()}")
        time.sleep(every)
