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


@dataclass(frozen=True)
class Heading:
    """A line of its own that opens a section of the table (a mode, the scaling figures)."""

    text: str


def _cells(row: Row) -> tuple[str, str, str, str]:
    return (row.figure, row.value, row.target, "" if row.met is None else ("yes" if row.met else "NO"))


def table(rows: Sequence[Row | Heading]) -> str:
    first = ("figure", "value", "target", "met")
    cells = [_cells(r) for r in rows if isinstance(r, Row)]
    widths = [max(len(c[i]) for c in [first, *cells]) for i in range(4)]

    def line(cell: tuple[str, str, str, str]) -> str:
        return "  ".join(text.ljust(width) for text, width in zip(cell, widths, strict=True)).rstrip()

    lines = [line(first), "  ".join("-" * width for width in widths)]
    for row in rows:
        lines += ["", row.text] if isinstance(row, Heading) else [line(_cells(row))]
    return "\n".join(lines)
