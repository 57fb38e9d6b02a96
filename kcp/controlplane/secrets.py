"""The cluster's Secrets as the reconciler sees them: metadata from the cache, data read live.

Secrets are cached metadata-only (their data would dominate memory), so the
one Secret whose contents a step needs is read from the API server when it
needs it. What was parsed out of a Secret is remembered per (UID,
resourceVersion): an RSA key is validated once per change, not once per
reconcile.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kcp.api import labels
from kcp.api.groups import KUBEADM_CONTROL_PLANE, SECRET
from kcp.certs import CLUSTER_SECRET_TYPE, decode_secret_data
from kcp.rest import Kube

__all__ = [
    "ParsedCache",
    "SecretMeta",
    "SecretStore",
    "cluster_secret",
    "controller_reference",
    "has_owner",
    "is_controlled_by",
    "owner_reference",
]

SecretMeta = Callable[[str, str], Mapping[str, Any] | None]
"""`(namespace, name)` -> the cached metadata-only Secret, or None."""

T = TypeVar("T")


def controller_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """An owner reference marking `owner` as the controller (what Cluster API sets)."""
    metadata = owner.get("metadata") or {}
    return {
        "apiVersion": owner.get("apiVersion") or KUBEADM_CONTROL_PLANE.api_version,
        "kind": owner.get("kind") or KUBEADM_CONTROL_PLANE.kind,
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A plain owner reference to `owner` (a KubeadmControlPlane), not marking it the controller.

    What Cluster API's KCP puts on a Machine's KubeadmConfig and infrastructure
    machine: the Machine controller makes the Machine their controller once it
    exists, and drops this reference then.
    """
    metadata = owner.get("metadata") or {}
    return {
        "apiVersion": owner.get("apiVersion") or KUBEADM_CONTROL_PLANE.api_version,
        "kind": owner.get("kind") or KUBEADM_CONTROL_PLANE.kind,
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
    }


def has_owner(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether any of `obj`'s owner references, controller or not, points at `owner_uid`."""
    return bool(owner_uid) and any(
        ref.get("uid") == owner_uid
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def is_controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether `obj`'s controller owner reference points at `owner_uid`."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            return bool(ref.get("uid") == owner_uid)
    return False


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            return dict(ref)
    return None


def cluster_secret(
    *,
    namespace: str,
    name: str,
    cluster_name: str,
    data: Mapping[str, bytes],
    owner: Mapping[str, Any],
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Secret as Cluster API writes them: its type, cluster-name label, controller owner."""
    secret_labels = {labels.CLUSTER_NAME_LABEL: cluster_name, **(extra_labels or {})}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": secret_labels,
            "ownerReferences": [controller_reference(owner)],
        },
        "type": CLUSTER_SECRET_TYPE,
        "data": {key: base64.b64encode(value).decode("ascii") for key, value in data.items()},
    }


class ParsedCache:
    """What was parsed out of a Secret, per (purpose, UID, resourceVersion); bounded, thread-safe.

    A parse failure is remembered as well, so a bad Secret is not re-read and
    re-parsed on every reconcile either.
    """

    # Sized above the fleet (five parsed Secrets per cluster, 1000+ clusters): an LRU
    # smaller than the working set re-validates RSA keys (~30 ms each) on every reconcile.
    def __init__(self, size: int = 16384) -> None:
        self._items: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def _key(purpose: str, secret: Mapping[str, Any]) -> tuple[str, str, str]:
        metadata = secret.get("metadata") or {}
        return (purpose, str(metadata.get("uid") or ""), str(metadata.get("resourceVersion") or ""))

    def lookup(self, purpose: str, secret: Mapping[str, Any]) -> tuple[bool, Any]:
        """`(True, value)` when this version was parsed before (raises its error if it failed)."""
        key = self._key(purpose, secret)
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            outcome = self._items[key]
        if isinstance(outcome, _Failed):
            raise outcome.error
        return True, outcome

    def remember(self, purpose: str, secret: Mapping[str, Any], parse: Callable[[], T]) -> T:
        """`parse()` and remember its outcome for this version of `secret`."""
        try:
            value: Any = parse()
        except Exception as error:
            value = _Failed(error)
        with self._lock:
            self._items[self._key(purpose, secret)] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        if isinstance(value, _Failed):
            raise value.error
        return value  # type: ignore[no-any-return]


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class SecretStore:
    """Cluster Secrets: existence from the metadata cache, contents from a live read."""

    def __init__(self, kube: Kube, meta: SecretMeta) -> None:
        self.kube = kube
        self.meta = meta
        self.parsed = ParsedCache()

    def exists(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The cached metadata of the Secret, or None."""
        return self.meta(namespace, name)

    def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The whole Secret, read live; None when it does not exist."""
        return self.kube.get(SECRET, namespace, name)

    @staticmethod
    def decoded(secret: Mapping[str, Any]) -> dict[str, bytes]:
        metadata = secret.get("metadata") or {}
        where = f"{metadata.get('namespace')}/{metadata.get('name')}"
        return decode_secret_data(secret.get("data"), secret_name=where)

    def remember_written(
        self, purpose: str, secret: Mapping[str, Any], parse: Callable[[dict[str, bytes]], T]
    ) -> None:
        """Parse a Secret kcp just wrote (the API server's answer, data included), so that
        `parsed_secret` need not read it back when the metadata cache shows this version."""
        with contextlib.suppress(Exception):  # remembered as failed too; nothing to raise here
            self.parsed.remember(purpose, secret, lambda: parse(self.decoded(secret)))

    def parsed_secret(
        self,
        namespace: str,
        name: str,
        purpose: str,
        parse: Callable[[dict[str, bytes]], T],
    ) -> tuple[Mapping[str, Any], T] | None:
        """`(secret metadata, parse(data))`, reading the Secret only when it changed.

        None when the Secret does not exist. `parse`'s exception (a
        `CertificateError` saying what is wrong) is raised, and remembered for
        that version of the Secret.
        """
        meta = self.meta(namespace, name)
        if meta is not None:
            found, value = self.parsed.lookup(purpose, meta)
            if found:
                return meta, value
        live = self.read(namespace, name)
        if live is None:
            return None
        found, value = self.parsed.lookup(purpose, live)
        if found:
            return live, value
        return live, self.parsed.remember(purpose, live, lambda: parse(self.decoded(live)))
