"""How a webhook's health follows from its attempts: the failure streak, and the hours its 24-hour counts
cover."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

HOUR = 3600
# The counts sum whole clock hours: the current one and the 23 before it.
WINDOW_HOURS = 24


def hour_of(moment: float) -> int:
    """The clock hour (hours since the epoch) that `moment` (seconds since the epoch) falls in."""
    return int(moment // HOUR)


def first_counted_hour(moment: float) -> int:
    """The earliest hour the 24-hour counts read at `moment` still cover."""
    return hour_of(moment) - WINDOW_HOURS + 1


@dataclass(frozen=True)
class Streak:
    """What a batch of one webhook's attempts says: when the last success ended (None: none succeeded), and
    when the failures that followed it began (None: none did; the first failure when none succeeded)."""

    last_success: float | None
    failing_since: float | None


def streak(attempts: Iterable[tuple[float, bool]]) -> Streak:
    """The streak of attempts given as (when each ended, whether it succeeded), in any order."""
    last_success: float | None = None
    failures: list[float] = []
    for ended, succeeded in attempts:
        if succeeded:
            last_success = ended if last_success is None else max(last_success, ended)
        else:
            failures.append(ended)
    after = [ended for ended in failures if last_success is None or ended > last_success]
    return Streak(last_success, min(after) if after else None)
