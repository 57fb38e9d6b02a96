"""Thin read-only typed views over Cluster API v1beta2 objects held as dicts.

Objects stay plain dicts (as the API server sends them, so unknown fields
survive a round trip); a view only names the fields kcp reads and applies
Cluster API's defaults. A view never copies nor changes its object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kcp.api import groups, labels

DEFAULT_REPLICAS = 1
DEFAULT_MAX_SURGE = 1


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A v1beta2 contract-versioned reference: API group, kind and name (same namespace)."""

    api_group: str
    kind: str
    name: str

    @property
    def group_kind(self) -> str:
        """`Kind.group`, as in the cloned-from-groupkind annotation."""
        return f"{self.kind}.{self.api_group}"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """One entry of `metadata.ownerReferences`."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool

    @property
    def group(self) -> str:
        """The API group of the owner (empty for core)."""
        return self.api_version.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class FailureDomain:
    """One entry of `status.failureDomains` of a Cluster or infrastructure cluster."""

    name: str
    control_plane: bool
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Address:
    """One entry of a Machine's `status.addresses`."""

    type: str
    address: str


def dig(obj: Mapping[str, Any] | None, *path: str) -> Any:
    """The value at `path`, or None if any step is missing or not a mapping."""
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _ref(value: Any) -> ObjectRef | None:
    if not isinstance(value, Mapping):
        return None
    group, kind, name = value.get("apiGroup"), _str(value.get("kind")), _str(value.get("name"))
    if not isinstance(group, str) or kind is None or name is None:
        return None
    return ObjectRef(group, kind, name)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as the API server writes it, or None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class ObjectView:
    """Metadata every Kubernetes object has."""

    __slots__ = ("raw",)

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.raw = obj
        """The object itself; read it for anything the view does not name."""

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.raw.get("metadata")
        return value if isinstance(value, Mapping) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))

    @property
    def generation(self) -> int:
        return _int(self.metadata.get("generation")) or 0

    @property
    def resource_version(self) -> str:
        return str(self.metadata.get("resourceVersion", ""))

    @property
    def labels(self) -> dict[str, str]:
        return _str_map(self.metadata.get("labels"))

    @property
    def annotations(self) -> dict[str, str]:
        return _str_map(self.metadata.get("annotations"))

    @property
    def finalizers(self) -> tuple[str, ...]:
        value = self.metadata.get("finalizers")
        return tuple(str(f) for f in value) if isinstance(value, list) else ()

    @property
    def creation_timestamp(self) -> datetime | None:
        return parse_time(self.metadata.get("creationTimestamp"))

    @property
    def deletion_timestamp(self) -> datetime | None:
        """When deletion was requested; None while the object is not being deleted."""
        return parse_time(self.metadata.get("deletionTimestamp"))

    @property
    def is_deleting(self) -> bool:
        return self.metadata.get("deletionTimestamp") is not None

    @property
    def paused_annotation(self) -> bool:
        """Whether the `cluster.x-k8s.io/paused` annotation is present (its value is ignored)."""
        return labels.PAUSED_ANNOTATION in self.annotations

    @property
    def owner_references(self) -> tuple[OwnerRef, ...]:
        refs = self.metadata.get("ownerReferences")
        return tuple(
            OwnerRef(
                api_version=str(ref.get("apiVersion", "")),
                kind=str(ref.get("kind", "")),
                name=str(ref.get("name", "")),
                uid=str(ref.get("uid", "")),
                controller=ref.get("controller") is True,
            )
            for ref in (refs if isinstance(refs, list) else [])
            if isinstance(ref, Mapping)
        )

    def owner(self, group: str, kind: str) -> OwnerRef | None:
        """The first owner of `kind` in API `group` (any version), if any."""
        for ref in self.owner_references:
            if ref.kind == kind and ref.group == group:
                return ref
        return None

    @property
    def conditions(self) -> list[dict[str, Any]]:
        """`status.conditions`, or an empty list."""
        value = dig(self.raw, "status", "conditions")
        return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []

    @property
    def observed_generation(self) -> int | None:
        return _int(dig(self.raw, "status", "observedGeneration"))

    @property
    def owner_cluster_name(self) -> str | None:
        """The owning Cluster's name: from its owner reference, else the cluster-name label."""
        owner = self.owner(groups.CLUSTER_GROUP, groups.CLUSTER.kind)
        if owner is not None and owner.name:
            return owner.name
        return _str(self.labels.get(labels.CLUSTER_NAME_LABEL))


class KubeadmControlPlaneView(ObjectView):
    """A KubeadmControlPlane (`controlplane.cluster.x-k8s.io/v1beta2`)."""

    __slots__ = ()

    def _spec(self, *path: str) -> Any:
        return dig(self.raw, "spec", *path)

    @property
    def cluster_name(self) -> str | None:
        """The Cluster this control plane belongs to; None until Cluster API sets the owner."""
        return self.owner_cluster_name

    @property
    def replicas(self) -> int:
        """Desired control-plane Machines; Cluster API defaults an unset value to 1."""
        value = _int(self._spec("replicas"))
        return DEFAULT_REPLICAS if value is None else value

    @property
    def version(self) -> str:
        return str(self._spec("version") or "")

    @property
    def infrastructure_ref(self) -> ObjectRef | None:
        return _ref(self._spec("machineTemplate", "spec", "infrastructureRef"))

    @property
    def machine_template_labels(self) -> dict[str, str]:
        return _str_map(self._spec("machineTemplate", "metadata", "labels"))

    @property
    def machine_template_annotations(self) -> dict[str, str]:
        return _str_map(self._spec("machineTemplate", "metadata", "annotations"))

    @property
    def kubeadm_config_spec(self) -> Mapping[str, Any]:
        value = self._spec("kubeadmConfigSpec")
        return value if isinstance(value, Mapping) else {}

    @property
    def rollout_after(self) -> datetime | None:
        """Machines created before this moment are rolled out once it has passed."""
        return parse_time(self._spec("rollout", "after"))

    @property
    def certificates_expiry_days(self) -> int | None:
        """Roll out Machines whose certificates expire within this many days; None: never."""
        return _int(self._spec("rollout", "before", "certificatesExpiryDays"))

    @property
    def max_surge(self) -> int:
        """Extra Machines allowed during a rollout (Cluster API accepts 0 or 1); default 1.

        Raises ValueError, with a message naming the field, for a value that is
        not a whole number.
        """
        value = self._spec("rollout", "strategy", "rollingUpdate", "maxSurge")
        if value is None:
            return DEFAULT_MAX_SURGE
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        raise ValueError(
            f"spec.rollout.strategy.rollingUpdate.maxSurge must be 0 or 1, not {value!r}"
        )

    @property
    def status_replicas(self) -> int | None:
        return _int(dig(self.raw, "status", "replicas"))

    @property
    def status_version(self) -> str | None:
        return _str(dig(self.raw, "status", "version"))

    @property
    def selector(self) -> str | None:
        return _str(dig(self.raw, "status", "selector"))

    @property
    def control_plane_initialized(self) -> bool:
        return dig(self.raw, "status", "initialization", "controlPlaneInitialized") is True


class ClusterView(ObjectView):
    """A Cluster (`cluster.x-k8s.io/v1beta2`)."""

    __slots__ = ()

    @property
    def paused(self) -> bool:
        """`spec.paused`; see also `paused_annotation`."""
        return dig(self.raw, "spec", "paused") is True

    @property
    def control_plane_endpoint(self) -> tuple[str, int] | None:
        """`(host, port)` once both are set, else None."""
        host = _str(dig(self.raw, "spec", "controlPlaneEndpoint", "host"))
        port = _int(dig(self.raw, "spec", "controlPlaneEndpoint", "port"))
        return (host, port) if host is not None and port else None

    @property
    def control_plane_ref(self) -> ObjectRef | None:
        return _ref(dig(self.raw, "spec", "controlPlaneRef"))

    @property
    def infrastructure_ref(self) -> ObjectRef | None:
        return _ref(dig(self.raw, "spec", "infrastructureRef"))

    @property
    def infrastructure_provisioned(self) -> bool:
        return dig(self.raw, "status", "initialization", "infrastructureProvisioned") is True

    @property
    def control_plane_initialized(self) -> bool:
        return dig(self.raw, "status", "initialization", "controlPlaneInitialized") is True

    @property
    def failure_domains(self) -> tuple[FailureDomain, ...]:
        value = dig(self.raw, "status", "failureDomains")
        return tuple(
            FailureDomain(
                name=str(fd["name"]),
                control_plane=fd.get("controlPlane") is True,
                attributes=_str_map(fd.get("attributes")),
            )
            for fd in (value if isinstance(value, list) else [])
            if isinstance(fd, Mapping) and _str(fd.get("name"))
        )

    @property
    def control_plane_failure_domains(self) -> tuple[str, ...]:
        """Names of the failure domains suitable for control-plane Machines, sorted."""
        return tuple(sorted(fd.name for fd in self.failure_domains if fd.control_plane))


class MachineView(ObjectView):
    """A Machine (`cluster.x-k8s.io/v1beta2`)."""

    __slots__ = ()

    @property
    def cluster_name(self) -> str:
        return str(dig(self.raw, "spec", "clusterName") or "")

    @property
    def is_control_plane(self) -> bool:
        return labels.MACHINE_CONTROL_PLANE_LABEL in self.labels

    @property
    def control_plane_name(self) -> str | None:
        """The control-plane-name label (Cluster API hashes names over 63 characters)."""
        return _str(self.labels.get(labels.MACHINE_CONTROL_PLANE_NAME_LABEL))

    @property
    def version(self) -> str | None:
        return _str(dig(self.raw, "spec", "version"))

    @property
    def provider_id(self) -> str | None:
        return _str(dig(self.raw, "spec", "providerID"))

    @property
    def failure_domain(self) -> str | None:
        """Where the Machine was placed: `spec.failureDomain`, else `status.failureDomain`."""
        return _str(dig(self.raw, "spec", "failureDomain")) or _str(
            dig(self.raw, "status", "failureDomain")
        )

    @property
    def bootstrap_config_ref(self) -> ObjectRef | None:
        return _ref(dig(self.raw, "spec", "bootstrap", "configRef"))

    @property
    def data_secret_name(self) -> str | None:
        return _str(dig(self.raw, "spec", "bootstrap", "dataSecretName"))

    @property
    def infrastructure_ref(self) -> ObjectRef | None:
        return _ref(dig(self.raw, "spec", "infrastructureRef"))

    @property
    def node_name(self) -> str | None:
        return _str(dig(self.raw, "status", "nodeRef", "name"))

    @property
    def addresses(self) -> tuple[Address, ...]:
        value = dig(self.raw, "status", "addresses")
        return tuple(
            Address(type=str(a.get("type", "")), address=str(a["address"]))
            for a in (value if isinstance(value, list) else [])
            if isinstance(a, Mapping) and _str(a.get("address"))
        )

    @property
    def phase(self) -> str | None:
        return _str(dig(self.raw, "status", "phase"))

    @property
    def infrastructure_provisioned(self) -> bool:
        return dig(self.raw, "status", "initialization", "infrastructureProvisioned") is True

    @property
    def bootstrap_data_secret_created(self) -> bool:
        return dig(self.raw, "status", "initialization", "bootstrapDataSecretCreated") is True

    @property
    def certificates_expiry_date(self) -> datetime | None:
        """When the Machine's certificates expire: the user's annotation wins over status."""
        annotated = parse_time(
            self.annotations.get(labels.MACHINE_CERTIFICATES_EXPIRY_DATE_ANNOTATION)
        )
        return annotated or parse_time(dig(self.raw, "status", "certificatesExpiryDate"))
