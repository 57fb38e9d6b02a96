"""config/crd against a real kube-apiserver: install, round trips, /scale, validation."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kcp.api import groups, labels
from kcp.rest import Resource
from tests.manifests import kubeadm_control_plane

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRD_FILES = sorted((ROOT / "config" / "crd" / "bases").glob("*.yaml"))
SAMPLE_FILES = sorted((ROOT / "config" / "samples").glob("*.yaml"))
CLUSTER_CLASS_SAMPLES = sorted((ROOT / "config" / "samples" / "clusterclass").glob("*.yaml"))
# Cluster API's; kcp never reads it, so kcp.api.groups does not list it.
CLUSTER_CLASS = Resource(groups.CLUSTER_GROUP, groups.VERSION, "ClusterClass", "clusterclasses")
MERGE_PATCH = "application/merge-patch+json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
# The provider kinds whose CRDs kcp ships (each carries the contract label).
OUR_RESOURCES = (
    groups.KUBEADM_CONTROL_PLANE,
    groups.KUBEADM_CONTROL_PLANE_TEMPLATE,
    groups.LOCAL_CLUSTER,
    groups.LOCAL_MACHINE,
    groups.LOCAL_MACHINE_TEMPLATE,
)


def _docs(path: Path) -> Iterator[dict[str, Any]]:
    yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


@pytest.fixture
def api(api_client: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def _create(
    api: client.CustomObjectsApi,
    resource: Resource,
    namespace: str,
    body: dict[str, Any],
    field_validation: str | None = "Strict",
) -> dict[str, Any]:
    """Create with strict field validation: a field the schema would drop fails the test.

    `field_validation=None` sends none, as kcp's own client and most controllers do.
    """
    strictness = {} if field_validation is None else {"field_validation": field_validation}
    created: dict[str, Any] = api.create_namespaced_custom_object(
        resource.group, resource.version, namespace, resource.plural, body, **strictness
    )
    return created


def _get(
    api: client.CustomObjectsApi, resource: Resource, namespace: str, name: str
) -> dict[str, Any]:
    got: dict[str, Any] = api.get_namespaced_custom_object(
        resource.group, resource.version, namespace, resource.plural, name
    )
    return got


def _rejection(
    api: client.CustomObjectsApi,
    namespace: str,
    body: dict[str, Any],
    field_validation: str | None = "Strict",
) -> dict[str, Any]:
    """The API server's Status for a refused create; the test fails if it is accepted."""
    resource = groups.KUBEADM_CONTROL_PLANE
    with pytest.raises(client.ApiException) as refused:
        _create(api, resource, namespace, body, field_validation)
    assert refused.value.status == 422, refused.value.body
    status: dict[str, Any] = json.loads(refused.value.body)
    assert status["kind"] == "Status"
    assert status["reason"] == "Invalid"
    return status


def _causes(status: dict[str, Any]) -> set[tuple[str, str]]:
    """(field, reason) of each cause, without the API server's note that it skipped the
    CEL rules (kubeadmConfigSpec has some) of an object already invalid."""
    return {
        (c["field"], c["reason"])
        for c in status["details"]["causes"]
        if "validation rules were not checked" not in c.get("message", "")
    }


# -- installation ---------------------------------------------------------------------


def test_every_crd_is_established_with_its_names(api_client: Any) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    ours = {next(_docs(path))["metadata"]["name"] for path in CRD_FILES}
    # config/crd holds kcp's own kinds; Cluster API's come from its pinned module.
    assert ours == {r.crd_name for r in OUR_RESOURCES}
    installed = {}
    for resource in (*groups.CUSTOM_RESOURCES, *groups.CLUSTER_API_RESOURCES):
        crd = ext.read_custom_resource_definition(resource.crd_name)
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True", resource.kind
        assert conditions.get("NamesAccepted") == "True", resource.kind
        assert [v.name for v in crd.spec.versions if v.served and v.storage] == ["v1beta2"]
        installed[crd.metadata.name] = crd

    kcp = installed[groups.KUBEADM_CONTROL_PLANE.crd_name]
    assert kcp.spec.names.short_names == ["kcp"]
    assert kcp.spec.names.categories == ["cluster-api"]
    scale = kcp.spec.versions[0].subresources.scale
    assert (scale.spec_replicas_path, scale.status_replicas_path, scale.label_selector_path) == (
        ".spec.replicas",
        ".status.replicas",
        ".status.selector",
    )
    # Core resolves a provider's kinds through this label (KubeadmConfig's is added at
    # install, as Cluster API's own kustomization adds it).
    for resource in (*OUR_RESOURCES, groups.KUBEADM_CONFIG):
        crd_labels = installed[resource.crd_name].metadata.labels or {}
        assert crd_labels.get(labels.CONTRACT_LABEL) == "v1beta2", resource.kind
    for resource in (*groups.CUSTOM_RESOURCES, *groups.CLUSTER_API_RESOURCES):
        subresources = installed[resource.crd_name].spec.versions[0].subresources
        # A template has no status: Cluster API only ever reads its spec.
        has_status = subresources is not None and subresources.status is not None
        assert has_status == (resource is not groups.KUBEADM_CONTROL_PLANE_TEMPLATE), resource.kind


# -- round trips ------------------------------------------------------------------------


def test_samples_round_trip_intact(api: client.CustomObjectsApi, namespace: str) -> None:
    sent = [doc for path in SAMPLE_FILES for doc in _docs(path)]
    kinds = sorted(d["kind"] for d in sent)
    assert kinds.count("KubeadmControlPlane") >= 2
    replicas = sorted(d["spec"]["replicas"] for d in sent if d["kind"] == "KubeadmControlPlane")
    assert replicas[0] == 1 and replicas[-1] == 3
    for doc in sent:
        group, _, version = doc["apiVersion"].rpartition("/")
        resource = groups.find(group, doc["kind"])
        assert resource is not None and resource.version == version, doc["apiVersion"]
        _create(api, resource, namespace, doc)
        got = _get(api, resource, namespace, doc["metadata"]["name"])
        assert got["spec"] == doc["spec"], f"{doc['kind']}/{doc['metadata']['name']}"


def test_cluster_class_sample_round_trips(api: client.CustomObjectsApi, namespace: str) -> None:
    sent = [doc for path in CLUSTER_CLASS_SAMPLES for doc in _docs(path)]
    by_kind = {doc["kind"]: doc for doc in sent}
    assert sorted(by_kind) == [
        "ClusterClass",
        "KubeadmControlPlaneTemplate",
        "LocalMachineTemplate",
    ]
    for doc in sent:
        group, _, _ = doc["apiVersion"].rpartition("/")
        resource = (
            CLUSTER_CLASS if doc["kind"] == "ClusterClass" else groups.find(group, doc["kind"])
        )
        assert resource is not None and resource.api_version == doc["apiVersion"], doc["kind"]
        _create(api, resource, namespace, copy.deepcopy(doc))
        got = _get(api, resource, namespace, doc["metadata"]["name"])
        assert got["spec"] == doc["spec"], f"{doc['kind']}/{doc['metadata']['name']}"

    # The class names the template and the machine template of the sample.
    control_plane = by_kind["ClusterClass"]["spec"]["controlPlane"]
    for ref, target in (
        (control_plane["templateRef"], by_kind["KubeadmControlPlaneTemplate"]),
        (control_plane["machineInfrastructure"]["templateRef"], by_kind["LocalMachineTemplate"]),
    ):
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
            target["apiVersion"],
            target["kind"],
            target["metadata"]["name"],
        )

    # What the topology controller makes of the template (its spec plus replicas,
    # version and an infrastructureRef) is a KubeadmControlPlane our CRD accepts as is.
    template = by_kind["KubeadmControlPlaneTemplate"]["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec["machineTemplate"]["spec"]["infrastructureRef"] = {
        "apiGroup": groups.INFRASTRUCTURE_GROUP,
        "kind": "LocalMachineTemplate",
        "name": "from-class-control-plane",
    }
    body = {
        "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
        "kind": "KubeadmControlPlane",
        "metadata": {"name": "from-class", "labels": template["metadata"]["labels"]},
        "spec": {"replicas": 3, "version": "v1.34.4", **spec},
    }
    _create(api, groups.KUBEADM_CONTROL_PLANE, namespace, copy.deepcopy(body))
    got = _get(api, groups.KUBEADM_CONTROL_PLANE, namespace, "from-class")
    assert got["spec"] == body["spec"]


def test_every_kind_of_spec_field_round_trips(api: client.CustomObjectsApi, namespace: str) -> None:
    kubeadm_config_spec = {
        "clusterConfiguration": {
            "featureGates": {"ControlPlaneKubeletLocalMode": True},
            "certificateValidityPeriodDays": 365,
            "etcd": {
                "local": {"dataDir": "/var/lib/etcd", "extraArgs": [{"name": "a", "value": ""}]}
            },
            "apiServer": {"extraEnvs": [{"name": "X", "value": "1"}]},
        },
        "initConfiguration": {"bootstrapTokens": [{"token": "abcdef.0123456789abcdef"}]},
        "joinConfiguration": {"discovery": {"bootstrapToken": {"unsafeSkipCAVerification": True}}},
        "files": [
            {"path": "/a", "content": "x", "contentFrom": {"secret": {"name": "s", "key": "k"}}}
        ],
        "users": [{"name": "capi", "sudo": "ALL=(ALL) NOPASSWD:ALL", "sshAuthorizedKeys": ["k"]}],
        "preKubeadmCommands": ["echo pre"],
        "postKubeadmCommands": ["echo post"],
        "format": "cloud-config",
        "ntp": {"enabled": True, "servers": ["time.example.com"]},
        "diskSetup": {"filesystems": [{"device": "/dev/sdb", "filesystem": "ext4", "label": "d"}]},
        "mounts": [["LABEL=d", "/data"]],
        "verbosity": 5,
        "bootCommands": ["echo boot"],
        "ignition": {"containerLinuxConfig": {"additionalConfig": "systemd: {}"}},
    }
    body = kubeadm_control_plane("all-fields", kubeadmConfigSpec=kubeadm_config_spec)
    body["spec"]["remediation"] = {
        "maxRetry": 3,
        "retryPeriodSeconds": 60,
        "minHealthyPeriodSeconds": 3600,
    }
    body["spec"]["machineNaming"] = {"template": "{{ .kubeadmControlPlane.name }}-{{ .random }}"}
    body["spec"]["rollout"] = {
        "after": "2026-05-01T00:00:00Z",
        "before": {"certificatesExpiryDays": 21},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}},
    }
    body["spec"]["machineTemplate"]["metadata"] = {"labels": {"a": "b"}, "annotations": {"c": ""}}
    body["spec"]["machineTemplate"]["spec"]["deletion"] = {"nodeDrainTimeoutSeconds": 0}
    resource = groups.KUBEADM_CONTROL_PLANE
    _create(api, resource, namespace, copy.deepcopy(body))
    got = _get(api, resource, namespace, "all-fields")
    assert got["spec"] == body["spec"]


def test_status_subresource_and_scale(api: client.CustomObjectsApi, namespace: str) -> None:
    resource = groups.KUBEADM_CONTROL_PLANE
    name = "scaled"
    _create(api, resource, namespace, kubeadm_control_plane(name))
    selector = labels.control_plane_selector("c1")
    status = {
        "status": {
            "replicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "upToDateReplicas": 1,
            "selector": selector,
            "version": "v1.34.4",
            "observedGeneration": 1,
            "initialization": {"controlPlaneInitialized": True},
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "Available",
                    "message": "",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "lastRemediation": {"machine": "m", "time": "2026-01-01T00:00:00Z", "retryCount": 0},
            "deprecated": {
                "v1beta1": {
                    "readyReplicas": 1,
                    "updatedReplicas": 1,
                    "unavailableReplicas": 0,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "severity": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ],
                }
            },
        }
    }
    api.patch_namespaced_custom_object_status(
        resource.group,
        resource.version,
        namespace,
        resource.plural,
        name,
        status,
        _content_type=MERGE_PATCH,
    )
    got = _get(api, resource, namespace, name)
    assert got["status"] == status["status"]

    # The main resource ignores status; the status subresource ignores spec.
    api.patch_namespaced_custom_object(
        resource.group,
        resource.version,
        namespace,
        resource.plural,
        name,
        {"status": {"replicas": 9}},
        _content_type=MERGE_PATCH,
    )
    assert _get(api, resource, namespace, name)["status"]["replicas"] == 1

    scale = api.get_namespaced_custom_object_scale(
        resource.group, resource.version, namespace, resource.plural, name
    )
    assert scale["spec"]["replicas"] == 1
    assert scale["status"]["replicas"] == 1
    assert scale["status"]["selector"] == selector

    api.patch_namespaced_custom_object_scale(
        resource.group,
        resource.version,
        namespace,
        resource.plural,
        name,
        {"spec": {"replicas": 3}},
        _content_type=MERGE_PATCH,
    )
    got = _get(api, resource, namespace, name)
    assert got["spec"]["replicas"] == 3
    assert got["metadata"]["generation"] == 2

    with pytest.raises(client.ApiException) as refused:
        api.patch_namespaced_custom_object_scale(
            resource.group,
            resource.version,
            namespace,
            resource.plural,
            name,
            {"spec": {"replicas": -1}},
            _content_type=MERGE_PATCH,
        )
    assert refused.value.status == 422
    assert _get(api, resource, namespace, name)["spec"]["replicas"] == 3


def test_printer_columns(api: client.CustomObjectsApi, namespace: str) -> None:
    resource = groups.KUBEADM_CONTROL_PLANE
    body = kubeadm_control_plane("printed")
    body["metadata"]["labels"] = {labels.CLUSTER_NAME_LABEL: "c1"}
    _create(api, resource, namespace, body)
    table = api.list_namespaced_custom_object(
        resource.group,
        resource.version,
        namespace,
        resource.plural,
        _headers={"Accept": TABLE},
    )
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == [
        "Name",
        "Cluster",
        "Available",
        "Desired",
        "Current",
        "Ready",
        "Available",
        "Up-to-date",
        "Paused",
        "Initialized",
        "Age",
        "Version",
    ]
    (row,) = table["rows"]
    cells = dict(zip(columns[:4], row["cells"][:4], strict=True))
    assert cells == {"Name": "printed", "Cluster": "c1", "Available": None, "Desired": 1}
    assert row["cells"][-1] == "v1.34.4"


def test_cluster_and_machine_keep_what_cluster_api_writes(
    api: client.CustomObjectsApi, namespace: str
) -> None:
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    cluster = {
        "apiVersion": groups.CLUSTER.api_version,
        "kind": "Cluster",
        "metadata": {"name": "c1"},
        "spec": {
            "paused": False,
            "controlPlaneEndpoint": {"host": "127.0.3.1", "port": 6443},
            "availabilityGates": [{"conditionType": "Custom"}],
            "topology": {"classRef": {"name": "cc"}, "version": "v1.34.4"},
        },
    }
    cluster_status = {
        "initialization": {"infrastructureProvisioned": True, "controlPlaneInitialized": True},
        "failureDomains": [{"name": "fd1", "controlPlane": True, "attributes": {"z": "a"}}],
        "phase": "Provisioned",
        "controlPlane": {"desiredReplicas": 3, "replicas": 3},
        "workers": {"desiredReplicas": 0},
        "conditions": [condition],
    }
    machine = {
        "apiVersion": groups.MACHINE.api_version,
        "kind": "Machine",
        "metadata": {"name": "m1"},
        "spec": {
            "clusterName": "c1",
            "bootstrap": {
                "configRef": {
                    "apiGroup": groups.BOOTSTRAP_GROUP,
                    "kind": "KubeadmConfig",
                    "name": "m1",
                },
                "dataSecretName": "m1",
            },
            "infrastructureRef": {
                "apiGroup": groups.INFRASTRUCTURE_GROUP,
                "kind": "LocalMachine",
                "name": "m1",
            },
            "version": "v1.34.4",
            "providerID": "local:///ns/m1",
            "failureDomain": "fd1",
            "readinessGates": [{"conditionType": "EtcdMemberHealthy"}],
            "deletion": {"nodeDrainTimeoutSeconds": 10},
            "taints": [{"key": "k", "effect": "NoSchedule", "propagation": "Always"}],
        },
    }
    machine_status = {
        "nodeRef": {"name": "node-1"},
        "addresses": [{"type": "InternalIP", "address": "127.0.3.2"}],
        "initialization": {"infrastructureProvisioned": True, "bootstrapDataSecretCreated": True},
        "phase": "Running",
        "certificatesExpiryDate": "2027-01-01T00:00:00Z",
        "deletion": {"nodeDrainStartTime": "2026-01-01T00:00:00Z"},
        "conditions": [condition],
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": "b",
            "containerRuntimeVersion": "sim://1",
            "kernelVersion": "6.1",
            "kubeProxyVersion": "",
            "kubeletVersion": "v1.34.4",
            "machineID": "m",
            "operatingSystem": "linux",
            "osImage": "sim",
            "systemUUID": "u",
        },
    }
    for resource, body, status in (
        (groups.CLUSTER, cluster, cluster_status),
        (groups.MACHINE, machine, machine_status),
    ):
        api.create_namespaced_custom_object(
            resource.group, resource.version, namespace, resource.plural, body
        )
        name = body["metadata"]["name"]
        api.patch_namespaced_custom_object_status(
            resource.group,
            resource.version,
            namespace,
            resource.plural,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,
        )
        got = _get(api, resource, namespace, name)
        assert got["spec"] == body["spec"], resource.kind
        assert got["status"] == status, resource.kind


def test_local_machine_and_kubeadm_config_status(
    api: client.CustomObjectsApi, namespace: str
) -> None:
    cases = [
        (
            groups.LOCAL_MACHINE,
            {"providerID": "local:///ns/m1", "failureDomain": "fd1"},
            {
                "initialization": {"provisioned": True},
                "ready": True,
                "addresses": [{"type": "InternalIP", "address": "127.0.4.2"}],
                "failureDomain": "fd1",
                "etcd": {
                    "clientURL": "https://127.0.4.2:2379",
                    "peerURL": "https://127.0.4.2:2380",
                    "memberID": "8e9e05c52164694d",
                },
                "apiServer": {"url": "https://127.0.4.2:6443"},
            },
        ),
        (
            groups.LOCAL_CLUSTER,
            {"controlPlaneEndpoint": {"host": "127.0.4.1", "port": 6443}},
            {
                "initialization": {"provisioned": True},
                "failureDomains": [{"name": "fd1", "controlPlane": True}],
            },
        ),
        (
            groups.KUBEADM_CONFIG,
            {"joinConfiguration": {"controlPlane": {}}, "format": "cloud-config"},
            {"initialization": {"dataSecretCreated": True}, "dataSecretName": "m1"},
        ),
    ]
    for resource, spec, status in cases:
        name = f"x-{uuid.uuid4().hex[:6]}"
        body = {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        _create(api, resource, namespace, body)
        api.patch_namespaced_custom_object_status(
            resource.group,
            resource.version,
            namespace,
            resource.plural,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,
        )
        got = _get(api, resource, namespace, name)
        assert (got["spec"], got["status"]) == (spec, status), resource.kind


# -- validation -------------------------------------------------------------------------


# spec.kubeadmConfigSpec is typed as Cluster API types it: a mistake is refused when the
# KubeadmControlPlane is written, not later when kcp creates its KubeadmConfigs.

KUBEADM = "spec.kubeadmConfigSpec"


@pytest.mark.parametrize(
    ("kubeadm_config_spec", "field"),
    [
        pytest.param(
            {"clusterConfiguration": {"apiServer": {"certSANs": ["a"], "extraArg": []}}},
            f"{KUBEADM}.clusterConfiguration.apiServer.extraArg",
            id="misspelled",
        ),
        pytest.param(
            {"format": "cloud-config", "preKubeadmCommand": ["echo pre"]},
            f"{KUBEADM}.preKubeadmCommand",
            id="misspelled-top-level",
        ),
        # v1beta1 kept this timeout here; v1beta2 has initConfiguration.timeouts.
        pytest.param(
            {
                "clusterConfiguration": {
                    "apiServer": {"certSANs": ["a"], "timeoutForControlPlane": "4m"}
                }
            },
            f"{KUBEADM}.clusterConfiguration.apiServer.timeoutForControlPlane",
            id="v1beta1-field",
        ),
    ],
)
def test_a_misspelled_kubeadm_config_field_is_refused_with_its_name(
    api: client.CustomObjectsApi,
    namespace: str,
    kubeadm_config_spec: dict[str, Any],
    field: str,
) -> None:
    resource = groups.KUBEADM_CONTROL_PLANE
    body = kubeadm_control_plane("typo", kubeadmConfigSpec=kubeadm_config_spec)
    # Strict field validation, as kubectl create/apply/edit send by default.
    with pytest.raises(client.ApiException) as refused:
        _create(api, resource, namespace, copy.deepcopy(body))
    assert refused.value.status == 400, refused.value.body
    assert f'unknown field "{field}"' in json.loads(refused.value.body)["message"]
    with pytest.raises(client.ApiException) as missing:
        _get(api, resource, namespace, "typo")
    assert missing.value.status == 404

    # A client that asks for no strictness gets the object without the field, and a
    # warning naming it: never a KubeadmControlPlane whose typo kcp would copy on.
    _, _, headers = api.create_namespaced_custom_object_with_http_info(
        resource.group,
        resource.version,
        namespace,
        resource.plural,
        body,
        field_validation="Warn",
    )
    assert f'unknown field \\"{field}\\"' in headers.get("Warning", "")
    stored = _get(api, resource, namespace, "typo")
    parent, _, name = field.removeprefix("spec.").rpartition(".")
    node = stored["spec"]
    for part in parent.split("."):
        node = node.get(part, {})
    assert name not in node


@pytest.mark.parametrize(
    ("kubeadm_config_spec", "field", "says"),
    [
        pytest.param(
            {"initConfiguration": {"nodeRegistration": {"kubeletExtraArgs": {"v": "2"}}}},
            f"{KUBEADM}.initConfiguration.nodeRegistration.kubeletExtraArgs",
            'must be of type array: "object"',
            id="v1beta1-map-of-args",
        ),
        pytest.param(
            {"clusterConfiguration": {"apiServer": {"extraArgs": {"v": "2"}}}},
            f"{KUBEADM}.clusterConfiguration.apiServer.extraArgs",
            'must be of type array: "object"',
            id="v1beta1-map-of-extra-args",
        ),
        pytest.param(
            {"format": "cloudinit"},
            f"{KUBEADM}.format",
            'supported values: "cloud-config", "ignition"',
            id="enum",
        ),
        pytest.param(
            {"files": [{"content": "x"}]},
            f"{KUBEADM}.files[0].path",
            "Required value",
            id="required",
        ),
        pytest.param(
            {
                "clusterConfiguration": {
                    "scheduler": {
                        "extraArgs": [{"name": "v", "value": "1"}, {"name": "v", "value": "2"}]
                    }
                }
            },
            f"{KUBEADM}.clusterConfiguration.scheduler.extraArgs",
            "names must be unique",
            id="cel-rule",
        ),
    ],
)
def test_a_wrongly_shaped_kubeadm_config_is_refused_with_the_field_named(
    api: client.CustomObjectsApi,
    namespace: str,
    kubeadm_config_spec: dict[str, Any],
    field: str,
    says: str,
) -> None:
    body = kubeadm_control_plane("misshapen", kubeadmConfigSpec=kubeadm_config_spec)
    # Refused by the schema, whatever field validation the client asks for.
    status = _rejection(api, namespace, body, field_validation=None)
    assert field in {cause[0] for cause in _causes(status)}, status["message"]
    assert says in status["message"]


def test_negative_replicas_rejected(api: client.CustomObjectsApi, namespace: str) -> None:
    status = _rejection(api, namespace, kubeadm_control_plane("negative", replicas=-1))
    assert (
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or "
        "equal to 0"
    ) in status["message"]
    # The schema's minimum, and the scale subresource's own check of specReplicasPath.
    assert _causes(status) == {
        ("spec.replicas", "FieldValueInvalid"),
        (".spec.replicas", "FieldValueInvalid"),
    }


def test_missing_version_rejected(api: client.CustomObjectsApi, namespace: str) -> None:
    body = kubeadm_control_plane("no-version")
    del body["spec"]["version"]
    status = _rejection(api, namespace, body)
    assert "spec.version: Required value" in status["message"]
    assert _causes(status) == {("spec.version", "FieldValueRequired")}


def test_empty_version_rejected(api: client.CustomObjectsApi, namespace: str) -> None:
    status = _rejection(api, namespace, kubeadm_control_plane("empty-version", version=""))
    assert "spec.version in body should be at least 1 chars long" in status["message"]
    assert _causes(status) == {("spec.version", "FieldValueInvalid")}


def test_missing_infrastructure_ref_rejected(api: client.CustomObjectsApi, namespace: str) -> None:
    body = kubeadm_control_plane("no-infra")
    del body["spec"]["machineTemplate"]["spec"]["infrastructureRef"]
    status = _rejection(api, namespace, body)
    assert "spec.machineTemplate.spec.infrastructureRef: Required value" in status["message"]
    assert _causes(status) == {
        ("spec.machineTemplate.spec.infrastructureRef", "FieldValueRequired")
    }


def test_missing_machine_template_rejected(api: client.CustomObjectsApi, namespace: str) -> None:
    body = kubeadm_control_plane("no-template")
    del body["spec"]["machineTemplate"]
    status = _rejection(api, namespace, body)
    assert _causes(status) == {("spec.machineTemplate", "FieldValueRequired")}


@pytest.mark.parametrize(
    ("rollout", "field"),
    [
        ({"before": {"certificatesExpiryDays": 3}}, "spec.rollout.before.certificatesExpiryDays"),
        ({"strategy": {"type": "OnDelete"}}, "spec.rollout.strategy.type"),
        ({"after": "yesterday"}, "spec.rollout.after"),
    ],
)
def test_invalid_rollout_rejected(
    api: client.CustomObjectsApi, namespace: str, rollout: dict[str, Any], field: str
) -> None:
    status = _rejection(api, namespace, kubeadm_control_plane("bad-rollout", rollout=rollout))
    assert field in {cause[0] for cause in _causes(status)}


def test_max_surge_accepts_int_or_string(api: client.CustomObjectsApi, namespace: str) -> None:
    resource = groups.KUBEADM_CONTROL_PLANE
    for name, surge in (("surge-int", 1), ("surge-str", "1")):
        rollout = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge}}}
        _create(api, resource, namespace, kubeadm_control_plane(name, rollout=rollout))
        got = _get(api, resource, namespace, name)
        assert got["spec"]["rollout"]["strategy"]["rollingUpdate"]["maxSurge"] == surge


def test_invalid_condition_status_rejected(api: client.CustomObjectsApi, namespace: str) -> None:
    resource = groups.KUBEADM_CONTROL_PLANE
    _create(api, resource, namespace, kubeadm_control_plane("bad-condition"))
    bad = {"type": "Available", "status": "Yes", "reason": "R", "message": ""}
    with pytest.raises(client.ApiException) as refused:
        api.patch_namespaced_custom_object_status(
            resource.group,
            resource.version,
            namespace,
            resource.plural,
            "bad-condition",
            {"status": {"conditions": [bad]}},
            _content_type=MERGE_PATCH,
        )
    assert refused.value.status == 422
    fields = {cause[0] for cause in _causes(json.loads(refused.value.body))}
    assert "status.conditions[0].status" in fields
    assert "status.conditions[0].lastTransitionTime" in fields
