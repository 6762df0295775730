"""Admission: a bounded number of calls at once, the next one refused at once rather than queued."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from webhook_service.domain.errors import Reason, ResourceExhausted

# Slots free as calls finish, within milliseconds; a second's wait keeps refused callers from hammering.
RETRY_AFTER_SECONDS = 1.0


class Gate:
    """At most `limit` holders at once. A caller past the limit gets ResourceExhausted with a retry hint:
    queued instead, it would wait behind everyone else and, under overload, until its deadline passed.

    Not thread-safe: it is entered and left on the event loop only.
    """

    def __init__(self, limit: int, what: str) -> None:
        if limit < 1:
            raise ValueError(f"a gate needs a limit of at least 1, not {limit}")
        self.limit = limit
        self.held = 0
        self._what = what

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        if self.held >= self.limit:
            raise ResourceExhausted(
                f"{self._what} is busy with {self.limit} calls; retry in {RETRY_AFTER_SECONDS:g}s",
                retry_after=RETRY_AFTER_SECONDS,
                reason=Reason.SERVER_OVERLOADED,
            )
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1
