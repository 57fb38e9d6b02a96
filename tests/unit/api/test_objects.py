from datetime import UTC, datetime
from typing import Any

import pytest

import kcp.api
from kcp.api import ClusterView, KubeadmControlPlaneView, MachineView, ObjectRef

KCP: dict[str, Any] = {
    "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
    "kind": "KubeadmControlPlane",
    "metadata": {
        "name": "c1-control-plane",
        "namespace": "ns",
        "uid": "u-1",
        "generation": 4,
        "labels": {"cluster.x-k8s.io/cluster-name": "from-label"},
        "annotations": {"cluster.x-k8s.io/paused": ""},
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u-0"},
            {
                "apiVersion": "cluster.x-k8s.io/v1beta2",
                "kind": "Cluster",
                "name": "c1",
                "uid": "u-c",
                "controller": True,
            },
        ],
        "deletionTimestamp": "2026-03-01T10:00:00Z",
        "finalizers": ["kubeadm.controlplane.cluster.x-k8s.io"],
    },
    "spec": {
        "replicas": 3,
        "version": "v1.34.4",
        "machineTemplate": {
            "metadata": {"labels": {"env": "demo"}},
            "spec": {
                "infrastructureRef": {
                    "apiGroup": "infrastructure.cluster.x-k8s.io",
                    "kind": "LocalMachineTemplate",
                    "name": "tpl",
                }
            },
        },
        "kubeadmConfigSpec": {"clusterConfiguration": {"apiServer": {"certSANs": ["a"]}}},
        "rollout": {
            "after": "2026-02-01T00:00:00Z",
            "before": {"certificatesExpiryDays": 21},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}},
        },
    },
    "status": {
        "replicas": 2,
        "selector": "cluster.x-k8s.io/cluster-name=c1,cluster.x-k8s.io/control-plane",
        "version": "v1.34.3",
        "observedGeneration": 3,
        "initialization": {"controlPlaneInitialized": True},
        "conditions": [{"type": "Available", "status": "True"}],
    },
}


def test_kubeadm_control_plane_view_reads_every_field() -> None:
    v = KubeadmControlPlaneView(KCP)
    assert (v.namespace, v.name, v.uid, v.generation) == ("ns", "c1-control-plane", "u-1", 4)
    assert v.cluster_name == "c1"
    assert v.replicas == 3
    assert v.version == "v1.34.4"
    assert v.infrastructure_ref == ObjectRef(
        "infrastructure.cluster.x-k8s.io", "LocalMachineTemplate", "tpl"
    )
    assert v.infrastructure_ref.group_kind == "LocalMachineTemplate.infrastructure.cluster.x-k8s.io"
    assert v.machine_template_labels == {"env": "demo"}
    assert v.kubeadm_config_spec["clusterConfiguration"]["apiServer"]["certSANs"] == ["a"]
    assert v.rollout_after == datetime(2026, 2, 1, tzinfo=UTC)
    assert v.certificates_expiry_days == 21
    assert v.max_surge == 0
    assert v.paused_annotation
    assert v.is_deleting
    assert v.deletion_timestamp == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert v.finalizers == ("kubeadm.controlplane.cluster.x-k8s.io",)
    assert v.status_replicas == 2
    assert v.status_version == "v1.34.3"
    assert v.observed_generation == 3
    assert v.control_plane_initialized
    assert v.selector is not None and v.selector.endswith("control-plane")
    assert v.conditions == [{"type": "Available", "status": "True"}]
    owner = v.owner("cluster.x-k8s.io", "Cluster")
    assert owner is not None and owner.controller and owner.uid == "u-c"


def test_kubeadm_control_plane_defaults() -> None:
    v = KubeadmControlPlaneView(
        {"metadata": {"name": "x", "labels": {"cluster.x-k8s.io/cluster-name": "c2"}}}
    )
    assert v.replicas == 1
    assert v.max_surge == 1
    assert v.version == ""
    assert v.infrastructure_ref is None
    assert v.rollout_after is None
    assert v.certificates_expiry_days is None
    assert not v.paused_annotation
    assert not v.is_deleting and v.deletion_timestamp is None
    assert v.cluster_name == "c2"
    assert v.generation == 0
    assert v.conditions == []
    assert not v.control_plane_initialized
    assert KubeadmControlPlaneView({}).cluster_name is None


def test_replicas_zero_is_not_defaulted() -> None:
    assert KubeadmControlPlaneView({"spec": {"replicas": 0}}).replicas == 0


@pytest.mark.parametrize(("value", "expected"), [(1, 1), ("0", 0), ("1", 1)])
def test_max_surge_int_or_string(value: object, expected: int) -> None:
    obj = {"spec": {"rollout": {"strategy": {"rollingUpdate": {"maxSurge": value}}}}}
    assert KubeadmControlPlaneView(obj).max_surge == expected


def test_max_surge_percentage_is_an_error_naming_the_field() -> None:
    obj = {"spec": {"rollout": {"strategy": {"rollingUpdate": {"maxSurge": "50%"}}}}}
    with pytest.raises(ValueError, match=r"spec\.rollout\.strategy\.rollingUpdate\.maxSurge"):
        _ = KubeadmControlPlaneView(obj).max_surge


def test_view_does_not_copy_or_change_its_object() -> None:
    obj: dict[str, Any] = {"spec": {"replicas": 1}}
    v = KubeadmControlPlaneView(obj)
    obj["spec"]["replicas"] = 5
    assert v.replicas == 5
    assert v.raw is obj
    assert obj == {"spec": {"replicas": 5}}


def test_cluster_view() -> None:
    v = ClusterView(
        {
            "metadata": {"name": "c1", "namespace": "ns"},
            "spec": {
                "paused": True,
                "controlPlaneEndpoint": {"host": "127.0.5.1", "port": 6443},
                "controlPlaneRef": {
                    "apiGroup": "controlplane.cluster.x-k8s.io",
                    "kind": "KubeadmControlPlane",
                    "name": "c1-cp",
                },
                "infrastructureRef": {
                    "apiGroup": "infrastructure.cluster.x-k8s.io",
                    "kind": "LocalCluster",
                    "name": "c1",
                },
            },
            "status": {
                "initialization": {"infrastructureProvisioned": True},
                "failureDomains": [
                    {"name": "fd2", "controlPlane": True},
                    {"name": "fd1", "controlPlane": True, "attributes": {"zone": "a"}},
                    {"name": "w1"},
                ],
            },
        }
    )
    assert v.paused
    assert v.control_plane_endpoint == ("127.0.5.1", 6443)
    assert v.control_plane_ref is not None and v.control_plane_ref.name == "c1-cp"
    assert v.infrastructure_ref is not None and v.infrastructure_ref.kind == "LocalCluster"
    assert v.infrastructure_provisioned
    assert not v.control_plane_initialized
    assert v.control_plane_failure_domains == ("fd1", "fd2")
    assert [fd.name for fd in v.failure_domains] == ["fd2", "fd1", "w1"]
    assert v.failure_domains[1].attributes == {"zone": "a"}


def test_cluster_view_defaults() -> None:
    v = ClusterView({"spec": {"controlPlaneEndpoint": {"host": "h"}}})
    assert not v.paused
    assert v.control_plane_endpoint is None
    assert v.control_plane_ref is None
    assert v.failure_domains == ()


def test_machine_view() -> None:
    v = MachineView(
        {
            "metadata": {
                "name": "m1",
                "labels": {
                    "cluster.x-k8s.io/control-plane": "",
                    "cluster.x-k8s.io/control-plane-name": "c1-cp",
                },
                "annotations": {},
            },
            "spec": {
                "clusterName": "c1",
                "version": "v1.34.4",
                "providerID": "local:///ns/m1",
                "bootstrap": {
                    "configRef": {
                        "apiGroup": "bootstrap.cluster.x-k8s.io",
                        "kind": "KubeadmConfig",
                        "name": "m1",
                    },
                    "dataSecretName": "m1",
                },
                "infrastructureRef": {
                    "apiGroup": "infrastructure.cluster.x-k8s.io",
                    "kind": "LocalMachine",
                    "name": "m1",
                },
            },
            "status": {
                "nodeRef": {"name": "node-1"},
                "failureDomain": "fd1",
                "addresses": [{"type": "InternalIP", "address": "127.0.9.2"}],
                "phase": "Running",
                "initialization": {
                    "infrastructureProvisioned": True,
                    "bootstrapDataSecretCreated": True,
                },
                "certificatesExpiryDate": "2027-01-01T00:00:00Z",
            },
        }
    )
    assert v.cluster_name == "c1"
    assert v.is_control_plane
    assert v.control_plane_name == "c1-cp"
    assert v.version == "v1.34.4"
    assert v.provider_id == "local:///ns/m1"
    assert v.bootstrap_config_ref is not None and v.bootstrap_config_ref.kind == "KubeadmConfig"
    assert v.data_secret_name == "m1"
    assert v.infrastructure_ref is not None and v.infrastructure_ref.kind == "LocalMachine"
    assert v.node_name == "node-1"
    assert v.failure_domain == "fd1"
    assert [(a.type, a.address) for a in v.addresses] == [("InternalIP", "127.0.9.2")]
    assert v.phase == "Running"
    assert v.infrastructure_provisioned and v.bootstrap_data_secret_created
    assert v.certificates_expiry_date == datetime(2027, 1, 1, tzinfo=UTC)


def test_machine_certificates_expiry_annotation_wins() -> None:
    v = MachineView(
        {
            "metadata": {
                "annotations": {
                    "machine.cluster.x-k8s.io/certificates-expiry": "2026-06-01T00:00:00Z"
                }
            },
            "status": {"certificatesExpiryDate": "2027-01-01T00:00:00Z"},
        }
    )
    assert v.certificates_expiry_date == datetime(2026, 6, 1, tzinfo=UTC)


def test_machine_view_defaults_and_malformed_values() -> None:
    v = MachineView({"metadata": {"creationTimestamp": "not a time"}, "spec": {"version": 7}})
    assert v.cluster_name == ""
    assert not v.is_control_plane
    assert v.version is None
    assert v.node_name is None
    assert v.addresses == ()
    assert v.creation_timestamp is None
    assert v.certificates_expiry_date is None


def test_public_names() -> None:
    assert sorted(kcp.api.__all__) == [
        "Address",
        "ClusterView",
        "FailureDomain",
        "KubeadmControlPlaneView",
        "MachineView",
        "ObjectRef",
        "ObjectView",
        "OwnerRef",
        "Resource",
        "conditions",
        "get_condition",
        "groups",
        "is_false",
        "is_true",
        "labels",
        "parse_time",
        "set_condition",
    ]
