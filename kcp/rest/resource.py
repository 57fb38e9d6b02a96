"""One resource of the API: its group, version, kind, plural and REST paths.

The one type every layer names a kind with (informers, the reconciler, the
simulator), so that a REST path or an `apiVersion` is never spelled by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["Resource"]


@dataclass(frozen=True, slots=True)
class Resource:
    """A kind and where the API server serves it. The core group is `""`."""

    group: str
    version: str
    kind: str
    plural: str
    """The resource name in URLs, e.g. "secrets", "kubeadmcontrolplanes"."""
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """The `apiVersion` of objects of this kind: `group/version`, or `v1` for core."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def crd_name(self) -> str:
        """The CustomResourceDefinition name, `plural.group`."""
        return f"{self.plural}.{self.group}"

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection, or of one object when `name` is given.

        Without a namespace (None or ""), a namespaced kind's path is its
        all-namespaces collection (for list and watch); naming an object then
        needs a namespace.
        """
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            if not self.namespaced:
                raise ValueError(f"{self.kind} is cluster-scoped; it has no namespace")
            prefix = f"{prefix}/namespaces/{quote(namespace, safe='')}"
        elif name is not None and self.namespaced:
            raise ValueError(f"{self.kind} is namespaced; naming one needs a namespace")
        path = f"{prefix}/{self.plural}"
        return path if name is None else f"{path}/{quote(name, safe='')}"
