"""Compare two CRD schemas: does ours accept every field path of Cluster API's?

A path names a field the way a reader finds it: `spec.rollout.before`, array
items as `[*]`, map values as `{*}` (`spec.machineTemplate.metadata.labels{*}`).
A path is accepted when our schema defines it, or when an ancestor our schema
does define keeps unknown fields (`x-kubernetes-preserve-unknown-fields: true`);
anything else the API server would prune.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]

ITEMS = "[*]"
VALUES = "{*}"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"


@dataclass(frozen=True)
class Finding:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class Comparison:
    """Every path of the reference schema, and how ours treats it."""

    defined: list[str] = field(default_factory=list)
    # path -> the path of our ancestor that keeps it as an unknown field ("" is the root)
    preserved: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return len(self.defined) + len(self.preserved) + len(self.missing)


def load_crd(path: Path) -> Schema:
    # libyaml's loader when built in: Cluster API's CRD is 350 kB of YAML.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    (crd,) = [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc]
    loaded: Schema = crd
    return loaded


def version_schema(crd: Schema, version: str) -> Schema:
    """The openAPIV3Schema of `version` in a CRD manifest."""
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: Schema = served["schema"]["openAPIV3Schema"]
    return schema


def compare(reference: Schema, ours: Schema) -> Comparison:
    """Walk `reference` (Cluster API's) and check each of its paths against `ours`."""
    comparison = Comparison()
    comparison.findings.extend(_disagreements("(root)", reference, ours))
    _walk(reference, ours, "", comparison)
    return comparison


def extra_paths(reference: Schema, ours: Schema) -> list[str]:
    """Paths our schema defines that the reference neither defines nor keeps as unknown."""
    extras: list[str] = []
    _walk_extras(reference, ours, "", extras)
    return extras


def _children(node: Schema) -> Iterator[tuple[str, Schema]]:
    for name, child in sorted((node.get("properties") or {}).items()):
        yield f".{name}", child
    items = node.get("items")
    if isinstance(items, dict):
        yield ITEMS, items
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        yield VALUES, values


def _counterpart(node: Schema, step: str) -> Schema | None:
    if step == ITEMS:
        items = node.get("items")
        return items if isinstance(items, dict) else None
    if step == VALUES:
        values = node.get("additionalProperties")
        return values if isinstance(values, dict) else None
    child: Schema | None = (node.get("properties") or {}).get(step[1:])
    return child


def _join(path: str, step: str) -> str:
    return f"{path}{step}" if path else step.removeprefix(".")


def _subtree(path: str, node: Schema) -> Iterator[str]:
    yield path
    for step, child in _children(node):
        yield from _subtree(_join(path, step), child)


def _walk(reference: Schema, ours: Schema, path: str, out: Comparison) -> None:
    for step, reference_child in _children(reference):
        child_path = _join(path, step)
        ours_child = _counterpart(ours, step)
        if ours_child is not None:
            out.defined.append(child_path)
            out.findings.extend(_disagreements(child_path, reference_child, ours_child))
            _walk(reference_child, ours_child, child_path, out)
        elif ours.get(PRESERVE) is True:
            for kept in _subtree(child_path, reference_child):
                out.preserved[kept] = path
        else:
            lost = list(_subtree(child_path, reference_child))
            out.missing.extend(lost)
            beneath = len(lost) - 1
            nested = f" and {beneath} path{'s' * (beneath > 1)} beneath it" if beneath else ""
            kind = _type(reference_child) or "untyped"
            out.findings.append(Finding(child_path, f"missing ({kind}{nested})"))


def _walk_extras(reference: Schema, ours: Schema, path: str, out: list[str]) -> None:
    for step, ours_child in _children(ours):
        child_path = _join(path, step)
        reference_child = _counterpart(reference, step)
        if reference_child is not None:
            _walk_extras(reference_child, ours_child, child_path, out)
        elif reference.get(PRESERVE) is not True:
            out.append(child_path)


def _type(node: Schema) -> str | None:
    if node.get(INT_OR_STRING) is True:
        return "int-or-string"
    kind: str | None = node.get("type")
    return kind


def _disagreements(path: str, reference: Schema, ours: Schema) -> Iterator[Finding]:
    """Where ours defines the node but would refuse something the reference accepts."""
    reference_type, ours_type = _type(reference), _type(ours)
    if ours_type is not None and ours_type != reference_type:
        yield Finding(path, f"type {ours_type}, Cluster API's is {reference_type or 'untyped'}")
    ours_enum = ours.get("enum")
    if ours_enum is not None:
        reference_enum = reference.get("enum")
        if reference_enum is None:
            yield Finding(path, f"ours allows only {ours_enum}, Cluster API any value")
        else:
            refused = [value for value in reference_enum if value not in ours_enum]
            if refused:
                yield Finding(path, f"ours refuses enum values {refused} Cluster API allows")
    required = sorted(set(ours.get("required") or ()) - set(reference.get("required") or ()))
    if required:
        yield Finding(path, f"ours requires {required}, Cluster API does not")


# -- both ways: does ours accept exactly what the reference does? -----------------------

# Keywords that say nothing about what the API server accepts or stores.
_WORDING = frozenset({"description", "example", "externalDocs", "title"})
_NESTED = frozenset({"properties", "items", "additionalProperties"})
VALIDATIONS = "x-kubernetes-validations"


def _rules(node: Schema) -> list[dict[str, Any]]:
    """CEL rules without their messages (ours are reworded; only the wording differs)."""
    return [
        {k: v for k, v in rule.items() if k not in ("message", "messageExpression")}
        for rule in node.get(VALIDATIONS) or ()
    ]


def _keywords(node: Schema) -> dict[str, Any]:
    found = {k: v for k, v in node.items() if k not in _WORDING | _NESTED | {VALIDATIONS}}
    if "required" in found:
        found["required"] = sorted(found["required"])
    if node.get(VALIDATIONS):
        found[VALIDATIONS] = _rules(node)
    return found


def differences(reference: Schema, ours: Schema, path: str = "") -> list[Finding]:
    """Every difference between the two schemas but wording, field by field, both ways.

    Types, formats, enums, required, bounds, patterns, defaults, list and map
    types, CEL rules, int-or-string and which nodes keep unknown fields: each
    changes what the API server accepts or stores.
    """
    found: list[Finding] = []
    at = path or "(root)"
    theirs, mine = _keywords(reference), _keywords(ours)
    for key in sorted(theirs.keys() | mine.keys()):
        if theirs.get(key) != mine.get(key):
            found.append(
                Finding(at, f"{key} is {mine.get(key)!r}, Cluster API's {theirs.get(key)!r}")
            )
    reference_steps = dict(_children(reference))
    ours_steps = dict(_children(ours))
    for step in sorted(reference_steps.keys() | ours_steps.keys()):
        child_path = _join(path, step)
        if step not in ours_steps:
            found.append(Finding(child_path, "only in Cluster API's schema"))
        elif step not in reference_steps:
            found.append(Finding(child_path, "only in ours"))
        else:
            found.extend(differences(reference_steps[step], ours_steps[step], child_path))
    return found
