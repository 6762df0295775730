"""When to try a failed delivery again, and when to stop."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from webhook_service.domain.model import DeliveryState

JITTER = 0.2
# A receiver may ask for a longer pause than the schedule's, but not for an unbounded one.
MAX_RETRY_AFTER = 3600.0
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


def is_success(status: int) -> bool:
    return 200 <= status < 300


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks for, in either of its forms, at most MAX_RETRY_AFTER; None when absent
    or unreadable. The value comes from the receiver, so no text may raise here."""
    if not value:
        return None
    value = value.strip()
    # HTTP's delay-seconds is ASCII digits: str.isdigit() alone also accepts "²", which float() refuses.
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0")
        # More digits than the bound has are over it, however many: no need to convert a 400-digit number.
        if len(digits) > len(str(int(MAX_RETRY_AFTER))):
            return MAX_RETRY_AFTER
        return min(float(digits or 0), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)


def next_delay(
    schedule: Sequence[float], attempts_made: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts failed, or None to give up.

    `schedule[i]` is the delay before attempt i + 1, jittered by up to 20 % so
    that deliveries failing together do not retry together.
    """
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * (1 + (rng or random).uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


@dataclass(frozen=True)
class Verdict:
    """What an attempt means: the delivery's new state, when to retry, and whether the receiver is gone."""

    state: DeliveryState
    delay: float | None
    succeeded: bool
    gone: bool


def judge(
    status: int,
    retry_after: float | None,
    attempts_made: int,
    schedule: Sequence[float],
    rng: random.Random | None = None,
) -> Verdict:
    """`status` 0 means no HTTP response; `attempts_made` includes this attempt."""
    if is_success(status):
        return Verdict(DeliveryState.SUCCEEDED, None, succeeded=True, gone=False)
    if status == GONE:
        return Verdict(DeliveryState.FAILED, None, succeeded=False, gone=True)
    delay = next_delay(schedule, attempts_made, retry_after if status in RETRY_AFTER_STATUSES else None, rng)
    state = DeliveryState.FAILED if delay is None else DeliveryState.PENDING
    return Verdict(state, delay, succeeded=False, gone=False)


def failing_reason(since: datetime, disable_after: float) -> str:
    return (
        f"deactivated: every delivery has failed since {since.isoformat(timespec='seconds')}, "
        f"longer than the {disable_after / 3600:g}h allowed by --disable-after"
    )


def gone_reason(at: datetime) -> str:
    return f"deactivated: the receiver answered 410 Gone at {at.isoformat(timespec='seconds')}"
