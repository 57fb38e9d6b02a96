"""One condition as the reconciler computes it, before it is merged into an object's status."""

from __future__ import annotations

from collections.abc import Iterable, MutableSequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kcp.api import conditions as c

__all__ = ["Condition", "merge_conditions"]


@dataclass(frozen=True, slots=True)
class Condition:
    """A `metav1.Condition` without its timestamps (they are set when merged)."""

    type: str
    status: str
    reason: str
    message: str = ""

    @classmethod
    def true(cls, condition_type: str, reason: str, message: str = "") -> Condition:
        return cls(condition_type, c.TRUE, reason, message)

    @classmethod
    def false(cls, condition_type: str, reason: str, message: str = "") -> Condition:
        return cls(condition_type, c.FALSE, reason, message)

    @classmethod
    def unknown(cls, condition_type: str, reason: str, message: str = "") -> Condition:
        return cls(condition_type, c.UNKNOWN, reason, message)

    @property
    def is_true(self) -> bool:
        return self.status == c.TRUE


def merge_conditions(
    existing: MutableSequence[dict[str, Any]],
    computed: Iterable[Condition],
    *,
    observed_generation: int | None,
    now: datetime,
) -> bool:
    """Set each computed condition in `existing` (in place); returns whether anything changed.

    Conditions of other types (another controller's) are left as they are.
    """
    changed = False
    for condition in computed:
        changed |= c.set_condition(
            existing,
            condition.type,
            condition.status,
            condition.reason,
            condition.message,
            observed_generation,
            now,
        )
    return changed
