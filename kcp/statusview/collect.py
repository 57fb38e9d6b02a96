"""Read the objects of one or all clusters from any management cluster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kcp.api import groups, labels
from kcp.rest import Resource
from kcp.statusview.tree import ClusterObjects

__all__ = ["collect"]


def _list(
    api: Any, resource: Resource, namespace: str | None, **kwargs: Any
) -> list[dict[str, Any]]:
    if namespace is None:
        body = api.list_cluster_custom_object(
            resource.group, resource.version, resource.plural, **kwargs
        )
    else:
        body = api.list_namespaced_custom_object(
            resource.group, resource.version, namespace, resource.plural, **kwargs
        )
    return list(body.get("items") or [])


def _get(api: Any, ref: Mapping[str, Any] | None, namespace: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    if not isinstance(ref, Mapping):
        return None
    resource = groups.find(str(ref.get("apiGroup", "")), str(ref.get("kind", "")))
    if resource is None or not ref.get("name"):
        return None
    try:
        found: dict[str, Any] = api.get_namespaced_custom_object(
            resource.group, resource.version, namespace, resource.plural, str(ref["name"])
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    found.setdefault("kind", resource.kind)
    return found


def collect(
    api_client: Any, namespace: str | None = None, name: str | None = None
) -> list[ClusterObjects]:
    """The Clusters of `namespace` (None: all namespaces), or the one named `name`, with parts."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    if name is not None:
        field = {"field_selector": f"metadata.name={name}"}
        clusters = _list(api, groups.CLUSTER, namespace, **field)
    else:
        clusters = _list(api, groups.CLUSTER, namespace)
    result: list[ClusterObjects] = []
    for cluster in sorted(
        clusters, key=lambda c: (c["metadata"].get("namespace", ""), c["metadata"]["name"])
    ):
        cluster_ns = str(cluster["metadata"].get("namespace", ""))
        cluster_name = str(cluster["metadata"]["name"])
        spec = cluster.get("spec") or {}
        machines = _list(
            api,
            groups.MACHINE,
            cluster_ns,
            label_selector=f"{labels.CLUSTER_NAME_LABEL}={cluster_name}",
        )
        result.append(
            ClusterObjects(
                cluster=cluster,
                infrastructure=_get(api, spec.get("infrastructureRef"), cluster_ns),
                control_plane=_get(api, spec.get("controlPlaneRef"), cluster_ns),
                machines=machines,
            )
        )
    return result
