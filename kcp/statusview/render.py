"""Text rendering of status trees: aligned columns, box-drawing branches, optional colour."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kcp.statusview.tree import Row, age

__all__ = ["render"]

_COLORS = {"True": "\033[32m", "False": "\033[31m", "Unknown": "\033[33m"}
_RESET = "\033[0m"
_DIM = "\033[2m"


def render(
    trees: Sequence[Row], *, color: bool = False, now: datetime | None = None, header: bool = True
) -> str:
    """The trees as a table: NAME (indented as a tree), READY, SINCE, DETAILS; notes below rows."""
    lines: list[tuple[str, str, str, str, str]] = []
    """(tree prefix + name, ready, since, details, note prefix) per row; notes have name ''."""

    def walk(row: Row, prefix: str, child_prefix: str) -> None:
        lines.append((prefix + row.name, row.ready, age(row.since, now), row.detail, ""))
        for note in row.notes:
            branch = "│ " if row.children else "  "
            lines.append(("", "", "", note, child_prefix + branch))
        for index, child in enumerate(row.children):
            last = index == len(row.children) - 1
            walk(
                child,
                child_prefix + ("└─" if last else "├─"),
                child_prefix + ("  " if last else "│ "),
            )

    for tree in trees:
        walk(tree, "", "")
    name_width = max([len("NAME")] + [len(n) for n, *_ in lines if n])
    out: list[str] = []
    if header:
        out.append(f"{'NAME':<{name_width}}  {'READY':<7}  {'SINCE':<5}  DETAILS")
    for name, ready, since, detail, note_prefix in lines:
        if name:
            shown = f"{ready:<7}"
            if color and ready in _COLORS:
                shown = f"{_COLORS[ready]}{shown}{_RESET}"
            out.append(f"{name:<{name_width}}  {shown}  {since:<5}  {detail}".rstrip())
        else:
            note = f"{note_prefix}  {detail}"
            out.append(f"{_DIM}{note}{_RESET}" if color else note)
    return "\n".join(out) + "\n"
