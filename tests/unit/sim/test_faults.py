"""Fault annotations: what another process writes on a LocalMachine to break it."""

from __future__ import annotations

from kcp.sim.faults import (
    MACHINE_COMPONENTS,
    Component,
    Fault,
    annotation_key,
    faults_from_annotations,
)


def test_annotation_keys() -> None:
    assert annotation_key(Component.ETCD) == "fault.local.infrastructure.cluster.x-k8s.io/etcd"
    assert annotation_key(Component.API_SERVER).endswith("/apiserver")


def test_annotations_parse_to_faults() -> None:
    wanted, problems = faults_from_annotations(
        {
            annotation_key(Component.ETCD): "Killed",
            annotation_key(Component.API_SERVER): "blackholed",
        },
        MACHINE_COMPONENTS,
    )
    assert wanted == {Component.ETCD: Fault.KILLED, Component.API_SERVER: Fault.BLACKHOLED}
    assert problems == []


def test_a_bad_value_says_what_to_write() -> None:
    wanted, problems = faults_from_annotations(
        {annotation_key(Component.ETCD): "broken", "other": "x"}, MACHINE_COMPONENTS
    )
    assert wanted == {}
    assert len(problems) == 1
    assert "stopped, killed, blackholed, frozen" in problems[0]
    assert "remove the annotation" in problems[0]
