"""Recorded attempts as watchers read them: after a position in the table (SQLite, which commits in ID order)
or by the keys a notification named (PostgreSQL, where IDs are taken before commits, in another order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook_service.domain.model import DeliveryState, FinishedAttempt
from webhook_service.domain.names import DeliveryName, Parent, WebhookName
from webhook_service.store import statements
from webhook_service.store.times import to_datetime

# The most attempts one read returns; a reader that gets this many reads again at once.
READ_ROWS = 1000

_SELECT = """SELECT a."id", a."delivery_id", a."attempt_number", a."start_time", a."response_code", a."duration",
    a."error", a."state", d."delivery_id", d."kind", w."organization", w."project", w."stack", w."webhook_id"
FROM "delivery_attempt" a JOIN "delivery" d ON d."id" = a."delivery_id" JOIN "webhook" w ON w."id" = d."webhook_id"
"""
_AFTER = _SELECT + 'WHERE a."id" > ? ORDER BY a."id" LIMIT ?'
_BY_KEYS = (
    _SELECT
    + 'JOIN unnest(?::int[], ?::int[]) AS k("delivery", "number")'
    + ' ON a."delivery_id" = k."delivery" AND a."attempt_number" = k."number"'
)


def last_id() -> int:
    """Where the attempts recorded from now on start: the highest ID so far (0 for none)."""
    [(highest,)] = statements.execute('SELECT MAX("id") FROM "delivery_attempt"').fetchall()
    return int(highest or 0)


def after(position: int, limit: int = READ_ROWS) -> tuple[list[FinishedAttempt], int]:
    """Up to `limit` attempts with IDs past `position`, oldest first, and the position to read from next.

    SQLite only: its one writer commits IDs in order, so nothing can appear behind the position later. It does
    take an ID again once the rows above it are deleted (a webhook's, with their delivery), so when the table
    ends below the position the position moves back to its end.
    """
    highest = last_id()
    if highest <= position:
        return [], highest
    rows = statements.execute(_AFTER, (position, limit)).fetchall()
    # Another process may have deleted them in between.
    return [_finished(row) for row in rows], rows[-1][0] if rows else position


def by_keys(keys: Sequence[tuple[int, int]]) -> list[FinishedAttempt]:
    """PostgreSQL: the attempts named by their (delivery row, attempt number), in the order of `keys`; those
    deleted since (with their webhook) are left out."""
    if not keys:
        return []
    rows = statements.execute(_BY_KEYS, ([delivery for delivery, _ in keys], [number for _, number in keys]))
    position = {key: index for index, key in enumerate(keys)}
    found = sorted(rows.fetchall(), key=lambda row: position[(row[1], row[2])])
    return [_finished(row) for row in found]


def _finished(row: Sequence[Any]) -> FinishedAttempt:
    (_, _, number, start, code, duration, error, state, delivery_id, kind, organization, project, stack, webhook_id) = (
        row
    )
    finished = to_datetime(start + duration)
    assert finished is not None
    webhook = WebhookName(Parent(organization, project, stack), webhook_id)
    return FinishedAttempt(
        delivery=DeliveryName(webhook, delivery_id),
        kind=kind,
        number=number,
        response_code=code,
        duration=duration,
        state=DeliveryState(state),
        error=error,
        finish_time=finished,
    )
