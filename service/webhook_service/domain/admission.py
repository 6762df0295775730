"""Admission: a bounded number of calls at once, the next one refused at once rather than queued."""

from __future__ import annotations

from types import TracebackType

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

    def enter(self) -> _Place:
        """`with gate.enter():` holds a place for the block, or raises ResourceExhausted when none is free."""
        self.take()
        return _Place(self)

    def take(self) -> None:
        """Holds a place until `release()`, or raises ResourceExhausted when none is free."""
        if self.held >= self.limit:
            raise ResourceExhausted(
                f"{self._what} is busy with {self.limit} calls; retry in {RETRY_AFTER_SECONDS:g}s",
                retry_after=RETRY_AFTER_SECONDS,
                reason=Reason.SERVER_OVERLOADED,
            )
        self.held += 1

    def release(self) -> None:
        self.held -= 1


class _Place:
    """A place taken in a gate, given back when the block ends. A plain class rather than a generator context
    manager: every API call and every publish enters a gate, and a generator costs several times as much."""

    __slots__ = ("_gate",)

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._gate.release()
