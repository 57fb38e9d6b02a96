"""Our KubeadmControlPlane CRD accepts everything Cluster API's v1beta2 one does.

Users move manifests between Cluster API's KCP and kcp, and Cluster API core and
clusterctl read and write KubeadmControlPlane objects: a field our schema prunes
or refuses would silently change or break them. The reference is the CRD shipped
in the pinned `sigs.k8s.io/cluster-api` module, taken from the build cache.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kcp.api import groups, labels
from kcp.testing import binaries

from .crd_schema import (
    PRESERVE,
    Comparison,
    Schema,
    compare,
    extra_paths,
    load_crd,
    version_schema,
)
from .dockerfile import ROOT

VERSION = "v1beta2"
KCP = groups.KUBEADM_CONTROL_PLANE
OURS = ROOT / "config" / "crd" / "bases" / f"{KCP.group}_{KCP.plural}.yaml"
# The only subtree kcp keeps loosely typed for now: it is copied into KubeadmConfigs,
# whose own (Cluster API) CRD validates it.
LOOSE = "spec.kubeadmConfigSpec"


@pytest.fixture(scope="module")
def cluster_api_crd() -> Schema:
    capi = binaries.ensure_cluster_api()
    (path,) = [p for p in capi.crds("controlplane") if p.name == OURS.name]
    crd = load_crd(path)
    assert crd["metadata"]["name"] == KCP.crd_name
    return crd


@pytest.fixture(scope="module")
def our_crd() -> Schema:
    return load_crd(OURS)


@pytest.fixture(scope="module")
def comparison(cluster_api_crd: Schema, our_crd: Schema) -> Comparison:
    return compare(version_schema(cluster_api_crd, VERSION), version_schema(our_crd, VERSION))


def _report(title: str, lines: list[str]) -> str:
    return "\n".join([f"{title} ({len(lines)}):", *(f"  {line}" for line in lines)])


def test_ours_accepts_every_cluster_api_v1beta2_field(comparison: Comparison) -> None:
    # The walk reached the deep corners of both spec and status, not an empty schema.
    walked = {*comparison.defined, *comparison.preserved, *comparison.missing}
    for deep in (
        "spec.machineTemplate.spec.taints[*].propagation",
        "spec.machineTemplate.metadata.labels{*}",
        "spec.kubeadmConfigSpec.mounts[*][*]",
        "spec.kubeadmConfigSpec.clusterConfiguration.featureGates{*}",
        "status.deprecated.v1beta1.conditions[*].severity",
        "status.lastRemediation.retryCount",
    ):
        assert deep in walked, deep
    assert comparison.checked == len(walked)
    problems = [str(finding) for finding in comparison.findings]
    if problems:
        pytest.fail(
            _report(
                f"{OURS.name} refuses or prunes what Cluster API's {VERSION} "
                f"KubeadmControlPlane accepts, of {comparison.checked} paths",
                problems,
            )
        )


def test_only_the_kubeadm_config_spec_relies_on_unknown_fields(comparison: Comparison) -> None:
    """Everything else is typed as Cluster API types it: validated, and in `kubectl explain`."""
    loose = sorted(
        f"{path} (kept by {keeper or 'the root'})"
        for path, keeper in comparison.preserved.items()
        if not (keeper == LOOSE or keeper.startswith((f"{LOOSE}.", f"{LOOSE}[")))
    )
    if loose:
        pytest.fail(_report(f"kept only as unknown fields, outside {LOOSE}", loose))


def test_ours_adds_no_field_cluster_api_lacks(cluster_api_crd: Schema, our_crd: Schema) -> None:
    extras = extra_paths(version_schema(cluster_api_crd, VERSION), version_schema(our_crd, VERSION))
    if extras:
        pytest.fail(_report("fields Cluster API's KubeadmControlPlane does not have", extras))


def test_names_columns_and_subresources_match_cluster_api(
    cluster_api_crd: Schema, our_crd: Schema
) -> None:
    assert our_crd["spec"]["group"] == cluster_api_crd["spec"]["group"]
    assert our_crd["spec"]["names"] == cluster_api_crd["spec"]["names"]
    assert our_crd["spec"]["scope"] == cluster_api_crd["spec"]["scope"]
    (ours,) = our_crd["spec"]["versions"]
    (theirs,) = [v for v in cluster_api_crd["spec"]["versions"] if v["name"] == VERSION]
    assert (ours["name"], ours["served"], ours["storage"]) == (VERSION, True, True)
    assert ours["subresources"] == theirs["subresources"]
    assert ours["additionalPrinterColumns"] == theirs["additionalPrinterColumns"]
    # Cluster API core resolves the contract a provider CRD implements from this label.
    assert our_crd["metadata"]["labels"][labels.CONTRACT_LABEL] == VERSION


# -- the comparison itself: each kind of drift is caught --------------------------------


def _at(schema: Schema, path: str) -> Schema:
    node = schema
    for name in path.replace("[*]", ".[*]").split("."):
        node = node["items"] if name == "[*]" else node["properties"][name]
    return node


def _remove(path: str) -> Callable[[Schema], None]:
    parent, _, name = path.rpartition(".")
    return lambda schema: _at(schema, parent)["properties"].pop(name)


def _set(path: str, **values: Any) -> Callable[[Schema], None]:
    return lambda schema: _at(schema, path).update(values)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        pytest.param(
            _remove("spec.rollout.before"),
            ["spec.rollout.before: missing (object and 1 path beneath it)"],
            id="spec-field-removed",
        ),
        pytest.param(
            _remove("status.lastRemediation.time"),
            ["status.lastRemediation.time: missing (string)"],
            id="status-field-removed",
        ),
        pytest.param(
            _remove("spec.machineTemplate.metadata.labels"),
            ["spec.machineTemplate.metadata.labels: missing (object and 1 path beneath it)"],
            id="map-removed",
        ),
        pytest.param(
            _set("spec.replicas", type="string"),
            ["spec.replicas: type string, Cluster API's is integer"],
            id="type-changed",
        ),
        pytest.param(
            _set(
                "spec.rollout.strategy.rollingUpdate.maxSurge",
                type="integer",
                **{"x-kubernetes-int-or-string": False},
            ),
            [
                "spec.rollout.strategy.rollingUpdate.maxSurge: type integer, "
                "Cluster API's is int-or-string"
            ],
            id="int-or-string-lost",
        ),
        pytest.param(
            _set("spec.machineTemplate.spec.taints[*].effect", enum=["NoSchedule"]),
            [
                "spec.machineTemplate.spec.taints[*].effect: ours refuses enum values "
                "['PreferNoSchedule', 'NoExecute'] Cluster API allows"
            ],
            id="enum-narrowed",
        ),
        pytest.param(
            _set("spec.machineNaming.template", enum=["{{ .random }}"]),
            [
                "spec.machineNaming.template: ours allows only ['{{ .random }}'], "
                "Cluster API any value"
            ],
            id="enum-added",
        ),
        pytest.param(
            _set("spec.rollout", required=["after"]),
            ["spec.rollout: ours requires ['after'], Cluster API does not"],
            id="required-added",
        ),
        pytest.param(
            _set("spec.kubeadmConfigSpec", **{PRESERVE: False}),
            [
                "spec.kubeadmConfigSpec.bootCommands: missing (array and 1 path beneath it)",
                "spec.kubeadmConfigSpec.diskSetup: missing (object and ",
                "spec.kubeadmConfigSpec.mounts: missing (array and 2 paths beneath it)",
            ],
            id="unknown-fields-no-longer-kept",
        ),
    ],
)
def test_the_comparison_catches_drift(
    cluster_api_crd: Schema,
    our_crd: Schema,
    damage: Callable[[Schema], None],
    expected: list[str],
) -> None:
    ours = copy.deepcopy(version_schema(our_crd, VERSION))
    damage(ours)
    reference = version_schema(cluster_api_crd, VERSION)
    found = [str(finding) for finding in compare(reference, ours).findings]
    for line in expected:
        assert any(f.startswith(line) for f in found), _report(f"no {line!r} in", found)


def test_a_field_under_kept_unknown_fields_needs_no_definition(
    cluster_api_crd: Schema, our_crd: Schema
) -> None:
    ours = copy.deepcopy(version_schema(our_crd, VERSION))
    _remove("spec.kubeadmConfigSpec.format")(ours)
    comparison = compare(version_schema(cluster_api_crd, VERSION), ours)
    assert comparison.findings == []
    assert comparison.preserved["spec.kubeadmConfigSpec.format"] == "spec.kubeadmConfigSpec"
