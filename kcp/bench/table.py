"""Plain-text tables and the small number helpers every scenario's summary uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["fmt", "ratio", "render"]


def ratio(numerator: float, denominator: float, floor: float = 1e-9) -> float:
    """`numerator / denominator`, the denominator floored so a zero never divides."""
    return numerator / max(denominator, floor)


def fmt(value: object, digits: int = 1) -> str:
    """A cell: floats to `digits` decimals, None as "-", anything else as str()."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.{digits}f}"
    return str(value)


def render(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A title line and an aligned table: the first column left, the others right."""
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(headers), rule, *(line(r) for r in cells)])
