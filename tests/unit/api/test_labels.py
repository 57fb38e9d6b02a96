from kcp.api import labels


def test_strings_match_cluster_api() -> None:
    assert labels.CLUSTER_NAME_LABEL == "cluster.x-k8s.io/cluster-name"
    assert labels.MACHINE_CONTROL_PLANE_LABEL == "cluster.x-k8s.io/control-plane"
    assert labels.MACHINE_CONTROL_PLANE_NAME_LABEL == "cluster.x-k8s.io/control-plane-name"
    assert labels.WATCH_LABEL == "cluster.x-k8s.io/watch-filter"
    assert labels.PAUSED_ANNOTATION == "cluster.x-k8s.io/paused"
    assert labels.KUBEADM_CONTROL_PLANE_FINALIZER == "kubeadm.controlplane.cluster.x-k8s.io"
    assert labels.CLUSTER_SECRET_TYPE == "cluster.x-k8s.io/secret"
    assert (
        labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION
        == "pre-terminate.delete.hook.machine.cluster.x-k8s.io/kcp-cleanup"
    )


def test_valid_label_values_are_kept() -> None:
    assert labels.format_label_value("my-cluster-control-plane") == "my-cluster-control-plane"
    assert labels.format_label_value("") == ""


def test_invalid_label_values_hash_like_cluster_api() -> None:
    # Expected values computed with Cluster API's format.MustFormatValue (Go, FNV-32a).
    long_name = (
        "a-very-long-kubeadm-control-plane-name-that-exceeds-the-sixty-three-character-limit"
    )
    assert labels.format_label_value(long_name) == "hash_-rRR-g_z"
    assert labels.format_label_value("bad value!") == "hash_eCbXiA_z"


def test_control_plane_machine_labels_force_the_kcp_labels() -> None:
    got = labels.control_plane_machine_labels(
        "kcp", "c1", {"env": "demo", labels.CLUSTER_NAME_LABEL: "spoofed"}
    )
    assert got == {
        "env": "demo",
        labels.CLUSTER_NAME_LABEL: "c1",
        labels.MACHINE_CONTROL_PLANE_LABEL: "",
        labels.MACHINE_CONTROL_PLANE_NAME_LABEL: "kcp",
    }


def test_control_plane_selector_matches_cluster_api_string_form() -> None:
    assert (
        labels.control_plane_selector("c1")
        == "cluster.x-k8s.io/cluster-name=c1,cluster.x-k8s.io/control-plane"
    )
