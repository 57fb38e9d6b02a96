"""Our KubeadmControlPlane(Template) CRDs accept exactly what Cluster API's v1beta2 ones do.

Users move manifests between Cluster API's KCP and kcp, and Cluster API core and
clusterctl read and write KubeadmControlPlane objects: a field our schema prunes
or refuses would silently change or break them, and one it accepts that Cluster
API's refuses (a typo in kubeadmConfigSpec) would be accepted by kcp and then
refused when kcp creates the KubeadmConfig. The reference is the CRD shipped in
the pinned `sigs.k8s.io/cluster-api` module, taken from the build cache.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcp.api import groups, labels
from kcp.testing import binaries

from .crd_schema import (
    PRESERVE,
    VALIDATIONS,
    Comparison,
    Schema,
    compare,
    differences,
    extra_paths,
    load_crd,
    version_schema,
)
from .dockerfile import ROOT

VERSION = "v1beta2"
KCP = groups.KUBEADM_CONTROL_PLANE
TEMPLATE = groups.KUBEADM_CONTROL_PLANE_TEMPLATE
BASES = ROOT / "config" / "crd" / "bases"
OURS = BASES / f"{KCP.group}_{KCP.plural}.yaml"
OURS_TEMPLATE = BASES / f"{TEMPLATE.group}_{TEMPLATE.plural}.yaml"
# Where our schema deliberately differs from Cluster API's, and why: path -> keyword.
DELIBERATE = {
    # Cluster API's validating webhook refuses negative replicas; kcp runs no webhook.
    ("spec.replicas", "minimum"),
}


def _cluster_api(path: Path) -> Schema:
    capi = binaries.ensure_cluster_api()
    (found,) = [p for p in capi.crds("controlplane") if p.name == path.name]
    return load_crd(found)


@pytest.fixture(scope="module")
def cluster_api_crd() -> Schema:
    crd = _cluster_api(OURS)
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


def test_no_field_relies_on_unknown_fields(comparison: Comparison) -> None:
    """Everything is typed as Cluster API types it: validated, and in `kubectl explain`."""
    loose = sorted(
        f"{path} (kept by {keeper or 'the root'})" for path, keeper in comparison.preserved.items()
    )
    if loose:
        pytest.fail(_report("kept only as unknown fields", loose))


@pytest.mark.parametrize("ours", [OURS, OURS_TEMPLATE], ids=["KubeadmControlPlane", "template"])
def test_ours_accepts_exactly_what_cluster_api_accepts(ours: Path) -> None:
    """Field by field, both ways: types, formats, enums, required, bounds, patterns,
    defaults, list and map types, CEL rules, and where unknown fields are kept."""
    reference = version_schema(_cluster_api(ours), VERSION)
    found = differences(reference, version_schema(load_crd(ours), VERSION))
    unexplained = [str(f) for f in found if (f.path, f.problem.split(" ", 1)[0]) not in DELIBERATE]
    if unexplained:
        pytest.fail(
            _report(
                f"{ours.name} accepts or stores other than Cluster API's {VERSION} does "
                "(hack/crd/generate.py rewrites the generated blocks)",
                unexplained,
            )
        )
    # Each deliberate difference is still there (else drop it from DELIBERATE).
    assert {(f.path, f.problem.split(" ", 1)[0]) for f in found} >= {
        d for d in DELIBERATE if ours == OURS
    }


def test_the_generated_blocks_are_current(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hack/crd/generate.py --check`: no block differs from what the pinned module gives."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("crd_generate", ROOT / "hack/crd/generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "crd_generate", generate)
    spec.loader.exec_module(generate)
    assert generate.main(["--check"]) == 0


def test_template_names_match_cluster_api() -> None:
    ours, theirs = load_crd(OURS_TEMPLATE), _cluster_api(OURS_TEMPLATE)
    assert ours["metadata"]["name"] == TEMPLATE.crd_name
    assert ours["spec"]["names"] == theirs["spec"]["names"]
    assert ours["spec"]["scope"] == theirs["spec"]["scope"]
    (version,) = ours["spec"]["versions"]
    (reference,) = [v for v in theirs["spec"]["versions"] if v["name"] == VERSION]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version.get("subresources", {}) == reference.get("subresources", {})
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        (c["name"], c["type"], c["jsonPath"]) for c in reference["additionalPrinterColumns"]
    ]
    # Core's topology controller checks the contract a template's CRD implements.
    assert ours["metadata"]["labels"][labels.CONTRACT_LABEL] == VERSION


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
            _remove("spec.kubeadmConfigSpec.diskSetup"),
            ["spec.kubeadmConfigSpec.diskSetup: missing (object and "],
            id="kubeadm-subtree-removed",
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
    _set("spec.kubeadmConfigSpec", **{PRESERVE: True})(ours)
    _remove("spec.kubeadmConfigSpec.format")(ours)
    comparison = compare(version_schema(cluster_api_crd, VERSION), ours)
    assert comparison.findings == []
    assert comparison.preserved["spec.kubeadmConfigSpec.format"] == "spec.kubeadmConfigSpec"
    # Accepted, but looser than Cluster API's: the two-way comparison says so.
    found = [str(f) for f in differences(version_schema(cluster_api_crd, VERSION), ours)]
    assert "spec.kubeadmConfigSpec: x-kubernetes-preserve-unknown-fields is True, " in "\n".join(
        found
    )
    assert "spec.kubeadmConfigSpec.format: only in Cluster API's schema" in found


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        pytest.param(
            _set("spec.kubeadmConfigSpec.clusterConfiguration", **{PRESERVE: True}),
            "spec.kubeadmConfigSpec.clusterConfiguration: x-kubernetes-preserve-unknown-fields "
            "is True, Cluster API's None",
            id="unknown-fields-kept",
        ),
        pytest.param(
            _set("spec.kubeadmConfigSpec.files[*].path", maxLength=None),
            "spec.kubeadmConfigSpec.files[*].path: maxLength is None, Cluster API's 512",
            id="bound-dropped",
        ),
        pytest.param(
            _set("spec.kubeadmConfigSpec.diskSetup.partitions[*]", **{VALIDATIONS: []}),
            "spec.kubeadmConfigSpec.diskSetup.partitions[*]: x-kubernetes-validations is None",
            id="cel-rule-dropped",
        ),
        pytest.param(
            _set("spec.kubeadmConfigSpec.format", enum=["cloud-config", "ignition", "x"]),
            "spec.kubeadmConfigSpec.format: enum is ['cloud-config', 'ignition', 'x']",
            id="enum-widened",
        ),
        pytest.param(
            lambda s: _at(s, "spec.kubeadmConfigSpec")["properties"].update(
                {"typo": {"type": "string"}}
            ),
            "spec.kubeadmConfigSpec.typo: only in ours",
            id="field-added",
        ),
        pytest.param(
            _set("status.selector", minLength=None),
            "status.selector: minLength is None, Cluster API's 1",
            id="status-loosened",
        ),
    ],
)
def test_the_two_way_comparison_catches_looser_schemas(
    cluster_api_crd: Schema, our_crd: Schema, damage: Callable[[Schema], None], expected: str
) -> None:
    ours = copy.deepcopy(version_schema(our_crd, VERSION))
    damage(ours)
    found = [str(f) for f in differences(version_schema(cluster_api_crd, VERSION), ours)]
    assert any(f.startswith(expected) for f in found), _report(f"no {expected!r} in", found)
