import pytest

from kcp.api import groups
from kcp.rest import Resource


def test_api_version_of_custom_and_core_kinds() -> None:
    assert groups.KUBEADM_CONTROL_PLANE.api_version == "controlplane.cluster.x-k8s.io/v1beta2"
    assert groups.CLUSTER.api_version == "cluster.x-k8s.io/v1beta2"
    assert groups.KUBEADM_CONFIG.api_version == "bootstrap.cluster.x-k8s.io/v1beta2"
    assert groups.LOCAL_MACHINE.api_version == "infrastructure.cluster.x-k8s.io/v1beta2"
    assert groups.SECRET.api_version == "v1"
    assert groups.LEASE.api_version == "coordination.k8s.io/v1"


def test_paths() -> None:
    kcp = groups.KUBEADM_CONTROL_PLANE
    assert kcp.path() == "/apis/controlplane.cluster.x-k8s.io/v1beta2/kubeadmcontrolplanes"
    assert (
        kcp.path("ns")
        == "/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/ns/kubeadmcontrolplanes"
    )
    assert kcp.path("ns", "a").endswith("/namespaces/ns/kubeadmcontrolplanes/a")
    assert groups.SECRET.path("kube-system", "x") == "/api/v1/namespaces/kube-system/secrets/x"
    assert groups.NODE.path(name="n1") == "/api/v1/nodes/n1"


def test_path_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="cluster-scoped"):
        groups.NODE.path("ns")
    with pytest.raises(ValueError, match="needs a namespace"):
        groups.MACHINE.path(name="m")


def test_crd_names_match_the_files_in_config() -> None:
    from pathlib import Path

    import yaml

    bases = Path(__file__).resolve().parents[3] / "config" / "crd" / "bases"
    found = {}
    for path in bases.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        names = crd["spec"]["names"]
        found[crd["metadata"]["name"]] = (crd["spec"]["group"], names["kind"], names["plural"])
        assert path.name == f"{crd['spec']['group']}_{names['plural']}.yaml"
    assert found == {r.crd_name: (r.group, r.kind, r.plural) for r in groups.CUSTOM_RESOURCES}


def test_find_by_group_and_kind() -> None:
    assert groups.find("infrastructure.cluster.x-k8s.io", "LocalMachineTemplate") is (
        groups.LOCAL_MACHINE_TEMPLATE
    )
    assert groups.find("infrastructure.cluster.x-k8s.io", "DockerMachineTemplate") is None


def test_resource_is_immutable() -> None:
    r = Resource("g", "v1", "K", "ks")
    with pytest.raises(AttributeError):
        r.kind = "other"  # type: ignore[misc]
