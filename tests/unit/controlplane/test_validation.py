"""Spec checks the missing admission webhook would have made."""

from __future__ import annotations

import pytest

from kcp.api.objects import KubeadmControlPlaneView
from kcp.controlplane.validation import validate_spec
from tests.unit.controlplane.builders import kcp


@pytest.mark.parametrize("replicas", [1, 3, 5, 7])
def test_odd_replicas_are_fine(replicas: int) -> None:
    assert validate_spec(KubeadmControlPlaneView(kcp(replicas=replicas))) == []


@pytest.mark.parametrize(
    ("replicas", "hint"),
    [(0, "set 1, 3 or 5"), (-1, "set 1, 3 or 5"), (2, "set 1 or 3"), (9, "at most 7")],
)
def test_absurd_replicas_say_what_to_set(replicas: int, hint: str) -> None:
    problems = validate_spec(KubeadmControlPlaneView(kcp(replicas=replicas)))
    assert len(problems) == 1
    assert "spec.replicas" in problems[0]
    assert hint in problems[0]


def test_max_surge_zero_needs_three_replicas() -> None:
    spec = {"rollout": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}}}
    assert validate_spec(KubeadmControlPlaneView(kcp(replicas=3, spec=spec))) == []
    problems = validate_spec(KubeadmControlPlaneView(kcp(replicas=1, spec=spec)))
    assert "maxSurge" in problems[0]


def test_bad_max_surge_and_missing_template() -> None:
    spec = {
        "rollout": {"strategy": {"rollingUpdate": {"maxSurge": "50%"}}},
        "machineTemplate": {"spec": {}},
    }
    problems = validate_spec(KubeadmControlPlaneView(kcp(spec=spec)))
    assert any("maxSurge" in p for p in problems)
    assert any("infrastructureRef" in p for p in problems)
