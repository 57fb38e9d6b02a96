"""`kcp run` takes the flags Cluster API users know, with Cluster API's defaults."""

from __future__ import annotations

import pytest

from kcp.cli import build_parser
from kcp.runtime.options import options_from_args


def _parse(*argv: str):  # type: ignore[no-untyped-def]
    arguments = ["run", *argv]
    return build_parser(arguments).parse_args(arguments)


def test_defaults() -> None:
    args = _parse()
    options = options_from_args(args)
    assert options.concurrency == 10
    assert options.sync_period == 600.0
    assert options.health_addr == ":9440"
    assert options.leader_elect is False
    assert options.watch_filter is None
    assert args.etcd_dial_timeout_duration == 10.0
    assert args.etcd_call_timeout_duration == 15.0
    assert args.v == 0


def test_flags_as_cluster_api_spells_them() -> None:
    args = _parse(
        "--kubeconfig",
        "/tmp/kc",
        "--leader-elect",
        "--leader-elect-lease-duration",
        "30s",
        "--leader-elect-renew-deadline",
        "20s",
        "--leader-elect-retry-period",
        "4s",
        "--namespace",
        "team-a",
        "--watch-filter",
        "shard-1",
        "--kubeadmcontrolplane-concurrency",
        "25",
        "--sync-period",
        "5m",
        "--kube-api-qps",
        "50",
        "--kube-api-burst",
        "80",
        "--health-addr",
        ":19440",
        "--metrics-bind-addr",
        "127.0.0.1:18080",
        "--profiler-address",
        "localhost:6060",
        "--etcd-dial-timeout-duration",
        "3s",
        "--etcd-call-timeout-duration",
        "1m",
        "--v",
        "2",
    )
    options = options_from_args(args)
    assert args.kubeconfig == "/tmp/kc"
    assert options.leader_elect
    assert (options.leader_elect_lease_duration, options.leader_elect_renew_deadline) == (
        30.0,
        20.0,
    )
    assert options.leader_elect_retry_period == 4.0
    assert options.namespace == "team-a"
    assert options.watch_filter == "shard-1"
    assert options.concurrency == 25
    assert options.sync_period == 300.0
    assert (options.kube_api_qps, options.kube_api_burst) == (50.0, 80)
    assert options.health_addr == ":19440"
    assert options.metrics_bind_addr == "127.0.0.1:18080"
    assert options.profiler_address == "localhost:6060"
    assert (args.etcd_dial_timeout_duration, args.etcd_call_timeout_duration) == (3.0, 60.0)
    assert args.v == 2


def test_bad_duration_is_refused() -> None:
    with pytest.raises(SystemExit):
        _parse("--etcd-call-timeout-duration", "soon")
