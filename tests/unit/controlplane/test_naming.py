"""`spec.machineNaming.template` names new Machines as Cluster API does; a bad one is reported."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kcp.api import conditions as c
from kcp.api.objects import KubeadmControlPlaneView
from kcp.controlplane.naming import (
    DEFAULT_TEMPLATE,
    MachineNamingError,
    machine_naming_template,
    naming_problem,
    random_string,
    render_machine_name,
)
from kcp.controlplane.validation import validate_spec
from kcp.rest import Resource
from kcp.runtime.controller import ObjectKey
from tests.unit.controlplane.builders import cluster, kcp
from tests.unit.controlplane.fakes import FakeKube, reconciler_on

KEY = ObjectKey("ns", "cp")
RANDOM = re.compile(r"[bcdfghjklmnpqrstvwxz2456789]{5}")


def _render(template: str, *, cluster_name: str = "prod", kcp_name: str = "prod-cp") -> str:
    return render_machine_name(
        template, cluster_name=cluster_name, kcp_name=kcp_name, random=lambda: "x2x2x"
    )


def test_the_default_is_the_kcp_name_and_a_random_part() -> None:
    assert machine_naming_template(KubeadmControlPlaneView(kcp())) == DEFAULT_TEMPLATE
    assert _render(DEFAULT_TEMPLATE) == "prod-cp-x2x2x"
    assert RANDOM.fullmatch(random_string())


def test_every_variable_cluster_api_offers_renders() -> None:
    template = "{{ .cluster.name }}-{{.kubeadmControlPlane.name}}-{{ .random }}"
    assert _render(template) == "prod-prod-cp-x2x2x"
    # Go's trim markers eat the blanks beside them.
    assert _render("{{ .cluster.name -}} - {{- .kubeadmControlPlane.name }}-{{ .random }}") == (
        "prod-prod-cp-x2x2x"
    )


def test_a_long_name_is_cut_to_58_characters_plus_a_fresh_random_part() -> None:
    parts = iter(["aaaaa", "zzzzz"])
    name = render_machine_name(
        "{{ .cluster.name }}-{{ .random }}",
        cluster_name="c" * 70,
        kcp_name="cp",
        random=lambda: next(parts),
    )
    assert name == "c" * 58 + "zzzzz"
    assert len(name) == 63


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{ .cluster.name }}-cp", "lacks {{ .random }}"),
        ("{{ .cluster.name }}-{{.random}}", "lacks {{ .random }}"),  # verbatim, as Cluster API
        ("{{ .cluster.namespace }}-{{ .random }}", "{{ .cluster.namespace }}, which is not"),
        ("{{ .cluster }}-{{ .random }}", "not a single value"),
        ('{{ printf "%s" .cluster.name }}-{{ .random }}', "renders only variables"),
        ("{{ .random }}-{{ .cluster.name", "unclosed or stray"),
        ("Prod-{{ .random }}", "not a valid Kubernetes object name"),
        ("{{ .random }}_x", "not a valid Kubernetes object name"),
        ("{{ .random }}" + "a" * 250, "shorten it to at most 256"),
    ],
)
def test_a_template_that_cannot_give_a_valid_name_says_what_to_fix(
    template: str, says: str
) -> None:
    with pytest.raises(MachineNamingError, match=re.escape(says)):
        _render(template)


def _with_template(template: str, **kw: Any) -> dict[str, Any]:
    return kcp(spec={"machineNaming": {"template": template}}, **kw)


def test_the_spec_check_reports_a_bad_template_like_the_webhook_would() -> None:
    assert naming_problem(KubeadmControlPlaneView(_with_template("{{ .random }}-cp"))) is None
    problems = validate_spec(KubeadmControlPlaneView(_with_template("no-random")))
    assert any("spec.machineNaming.template" in p and "{{ .random }}" in p for p in problems)


# -- through the reconciler --------------------------------------------------------------


def _fleet(obj: dict[str, Any], kube: FakeKube | None = None) -> FakeKube:
    kube = kube or FakeKube()
    kube.put(
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "LocalMachineTemplate",
            "metadata": {"name": "tmpl", "namespace": "ns"},
            "spec": {"template": {"spec": {}}},
        }
    )
    kube.put(obj)
    kube.put(cluster())
    return kube


def test_the_first_machine_and_its_objects_are_named_by_the_template() -> None:
    kube = _fleet(_with_template("{{ .cluster.name }}-cp-{{ .random }}", replicas=1))
    reconciler_on(kube).reconcile(KEY)
    [machine] = kube.of_kind("Machine")
    name = machine["metadata"]["name"]
    assert re.fullmatch(r"c1-cp-" + RANDOM.pattern, name), name
    assert [o["metadata"]["name"] for o in kube.of_kind("KubeadmConfig")] == [name]
    assert [o["metadata"]["name"] for o in kube.of_kind("LocalMachine")] == [name]


def test_a_bad_template_is_a_condition_and_an_event_and_creates_nothing() -> None:
    kube = _fleet(_with_template("{{ .cluster.name }}-cp", replicas=1))
    result = reconciler_on(kube).reconcile(KEY)
    assert not kube.of_kind("Machine") and not kube.of_kind("LocalMachine")
    [obj] = kube.of_kind("KubeadmControlPlane")
    scaling = c.get_condition(obj, c.SCALING_UP)
    assert scaling is not None and scaling["reason"] == "InvalidSpec"
    assert "spec.machineNaming.template" in scaling["message"]
    warnings = [e for e in kube.of_kind("Event") if e["type"] == "Warning"]
    assert any("spec.machineNaming.template" in e["message"] for e in warnings)
    assert result.requeue_after is not None  # backed off, not an exception


class _Taken(FakeKube):
    """Every name the template renders is taken already (by someone else's object)."""

    def create(self, resource: Resource, namespace: str | None, obj: Any) -> dict[str, Any]:
        if resource.kind == "LocalMachine":
            from kcp.rest import ApiError

            raise ApiError(409, "AlreadyExists", f'localmachines "{obj["metadata"]["name"]}"')
        return super().create(resource, namespace, obj)


def test_a_taken_name_is_reported_and_retried_not_raised() -> None:
    kube = _fleet(_with_template("{{ .cluster.name }}-{{ .random }}", replicas=1), _Taken())
    result = reconciler_on(kube).reconcile(KEY)
    assert not kube.of_kind("Machine") and not kube.of_kind("KubeadmConfig")
    warnings = [e["message"] for e in kube.of_kind("Event") if e["type"] == "Warning"]
    assert any("is taken" in m and "spec.machineNaming.template" in m for m in warnings), warnings
    [obj] = kube.of_kind("KubeadmControlPlane")
    scaling = c.get_condition(obj, c.SCALING_UP)
    assert scaling is not None and "is taken" in scaling["message"]
    assert result.requeue_after is not None
