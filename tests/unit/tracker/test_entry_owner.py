"""A cluster's tracker entry changes only through its own methods (``kcp.tracker.entry``)."""

from __future__ import annotations

import ast
import pathlib

import kcp
from kcp.tracker.entry import ClusterEntry
from kcp.tracker.identity import ClusterKey

PACKAGE = pathlib.Path(kcp.__file__).parent
MUTATORS = {"append", "extend", "pop", "remove", "clear", "add", "discard", "update"}


def _entry_fields() -> set[str]:
    return set(vars(ClusterEntry(ClusterKey("ns", "c", "uid"))))


def _writes(tree: ast.AST, fields: set[str]) -> list[tuple[int, str]]:
    """Lines that assign, or mutate in place, ``<something>.<entry field>`` where the
    something is named like an entry (``entry``, ``self._entry`` ...)."""

    def is_entry(node: ast.expr) -> bool:
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
        return name.lstrip("_").endswith("entry")

    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [
                t for target in node.targets for t in ast.walk(target) if isinstance(t, ast.expr)
            ]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
        ):
            targets = [node.func.value]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr in fields
                and is_entry(target.value)
            ):
                found.append((target.lineno, target.attr))
    return found


def test_no_module_but_the_entry_writes_an_entry_field() -> None:
    fields = _entry_fields() - {"log"}
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} writes entry.{name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "entry.py" or path.parent.name != "tracker"
        for line, name in _writes(ast.parse(path.read_text()), fields)
    ]
    assert not offenders, "call a ClusterEntry method instead:\n" + "\n".join(offenders)


def test_the_check_catches_a_write() -> None:
    tree = ast.parse("entry.state = 'down'\nentry.tls_history.append(x)\nentry.failures += 1")
    assert {name for _, name in _writes(tree, _entry_fields())} == {
        "state",
        "tls_history",
        "failures",
    }
