"""Manager options: documented defaults, Cluster API flag names, shard Leases."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from kcp.runtime.options import (
    WATCH_FILTER_LABEL,
    ManagerOptions,
    add_manager_arguments,
    flag_name,
    options_from_args,
    parse_duration,
    watch_filter_selector,
)


def test_defaults_are_cluster_apis() -> None:
    options = ManagerOptions()
    assert options.leader_elect is False
    assert (
        options.leader_elect_lease_duration,
        options.leader_elect_renew_deadline,
        options.leader_elect_retry_period,
    ) == (15.0, 10.0, 2.0)
    assert options.namespace is None and options.watch_filter is None
    # --kubeadmcontrolplane-concurrency: 100 in controlplane/kubeadm/main.go of v1.13.6
    assert options.concurrency == 100
    assert options.sync_period == 600.0
    # controlplane/kubeadm/main.go of Cluster API v1.13.6: --kube-api-qps 100, --kube-api-burst 200
    assert (options.kube_api_qps, options.kube_api_burst) == (100.0, 200)
    assert options.health_addr == ":9440"
    assert options.metrics_bind_addr == ":8080"
    assert options.profiler_address == ""
    assert options.graceful_shutdown_timeout == 30.0


def test_every_field_is_documented() -> None:
    for spec in fields(ManagerOptions):
        assert len(spec.metadata.get("help", "")) > 10, spec.name


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("10m", 600.0), ("1m30s", 90.0), ("500ms", 0.5), ("2", 2.0), ("1.5h", 5400.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "10x", "s", "1m junk"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sharded_lease_names_do_not_collide_and_are_valid_names() -> None:
    plain = ManagerOptions(leader_election_id="kcp")
    assert plain.lease_name == "kcp"
    shard_a = ManagerOptions(leader_election_id="kcp", watch_filter="shard-a")
    shard_b = ManagerOptions(leader_election_id="kcp", watch_filter="Shard_B")
    assert shard_a.lease_name == "kcp-shard-a"
    assert shard_b.lease_name == "kcp-shard-b"


def test_watch_filter_selector() -> None:
    assert WATCH_FILTER_LABEL == "cluster.x-k8s.io/watch-filter"
    assert watch_filter_selector("shard-a") == "cluster.x-k8s.io/watch-filter=shard-a"
    assert watch_filter_selector(None) is None
    assert watch_filter_selector("") is None


def test_leader_election_timings_are_checked() -> None:
    with pytest.raises(ValueError):
        ManagerOptions(
            leader_elect=True, leader_elect_lease_duration=5, leader_elect_renew_deadline=10
        )
    with pytest.raises(ValueError):
        ManagerOptions(concurrency=0)


def test_flags_round_trip_into_options() -> None:
    parser = argparse.ArgumentParser()
    add_manager_arguments(parser)
    assert options_from_args(parser.parse_args([])) == ManagerOptions()
    args = parser.parse_args(
        [
            "--leader-elect",
            "--leader-elect-lease-duration=20s",
            "--kubeadmcontrolplane-concurrency=3",
            "--sync-period=5m",
            "--watch-filter=shard-a",
            "--metrics-bind-addr=0",
            "--kube-api-qps=50",
        ]
    )
    options = options_from_args(args)
    assert options.leader_elect is True
    assert options.leader_elect_lease_duration == 20.0
    assert options.concurrency == 3
    assert options.sync_period == 300.0
    assert options.watch_filter == "shard-a"
    assert options.metrics_bind_addr == "0"
    assert options.kube_api_qps == 50.0
    assert flag_name("concurrency") == "--kubeadmcontrolplane-concurrency"
    assert "--health-addr" in parser.format_help()
