"""Percentiles and the closing table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


def table(rows: Sequence[Row]) -> str:
    header = Row("figure", "value", "target", None)
    cells = [(r.figure, r.value, r.target, "" if r.met is None else ("yes" if r.met else "NO")) for r in rows]
    first = (header.figure, header.value, header.target, "met")
    widths = [max(len(c[i]) for c in [first, *cells]) for i in range(4)]
    lines = []
    for number, cell in enumerate([first, *cells]):
        lines.append("  ".join(text.ljust(width) for text, width in zip(cell, widths, strict=True)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
