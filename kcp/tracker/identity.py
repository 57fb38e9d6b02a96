"""Which cluster an entry belongs to: namespace, name and UID."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ClusterKey"]


@dataclass(frozen=True, order=True)
class ClusterKey:
    """A Cluster as the tracker knows it; a re-created cluster (new UID) is a new key.

    Keying on the UID means a Cluster deleted and created again under the same
    name never inherits the old one's key, certificate or clients.
    """

    namespace: str
    name: str
    uid: str

    def __post_init__(self) -> None:
        if not self.namespace or not self.name or not self.uid:
            raise ValueError(
                f"a cluster key needs a namespace, a name and a UID, got {self.namespace!r}/"
                f"{self.name!r} uid={self.uid!r}"
            )

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ClusterKey:
        """The key of a Cluster object (a dict as the API returns it)."""
        metadata = obj.get("metadata") or {}
        return cls(
            str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""),
            str(metadata.get("uid") or ""),
        )

    @property
    def namespaced_name(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
