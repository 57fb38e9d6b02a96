"""`kcp run` takes the flags Cluster API users know, with Cluster API's defaults."""

from __future__ import annotations

import argparse

import pytest

from kcp.cli import build_parser
from kcp.runtime.options import options_from_args


def _parse(*argv: str):  # type: ignore[no-untyped-def]
    arguments = ["run", *argv]
    return build_parser(arguments).parse_args(arguments)


def test_defaults() -> None:
    args = _parse()
    options = options_from_args(args)
    assert options.concurrency == 100
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


def test_etcd_access_defaults_to_port_forward_as_in_cluster_api() -> None:
    import kcp.controlplane.cli as run_cli
    import kcp.etcd

    assert _parse().etcd_access == "port-forward" == kcp.etcd.DEFAULT_ETCD_ACCESS
    run_parser = argparse.ArgumentParser()
    run_cli.add_arguments(run_parser)
    access = next(a for a in run_parser._actions if a.dest == "etcd_access")
    assert set(access.choices or ()) == set(kcp.etcd.ETCD_ACCESS_MODES)
    assert _parse("--etcd-access", "direct").etcd_access == "direct"
    assert _parse("--etcd-access=port-forward").etcd_access == "port-forward"
    with pytest.raises(SystemExit):
        _parse("--etcd-access", "ssh")


def test_etcd_access_reaches_the_reconciler(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kcp run --etcd-access=direct` hands the mode to the reconciler that chooses endpoints."""
    import kcp.controlplane.cli as run_cli
    import kcp.controlplane.controller as controller
    import kcp.runtime.manager as manager_module
    import kcp.tracker.tracker as tracker_module

    seen: dict[str, object] = {}

    class _Manager:
        registry = None

        def __init__(self, options: object, api_client: object) -> None:
            pass

        def run_until_signal(self) -> int:
            return 0

    class _Tracker:
        @classmethod
        def for_api_client(cls, api_client: object, options: object, **kwargs: object) -> _Tracker:
            seen["tracker_options"] = options
            return cls()

        def close(self) -> None:
            pass

    def fake_setup(*args: object, options: object = None, **kwargs: object) -> None:
        seen["options"] = options

    monkeypatch.setattr(run_cli, "management_api_client", lambda *a, **k: object())
    monkeypatch.setattr(manager_module, "Manager", _Manager)
    monkeypatch.setattr(tracker_module, "Tracker", _Tracker)
    monkeypatch.setattr(controller, "setup", fake_setup)
    for mode in ("direct", "port-forward"):
        assert run_cli.run(_parse("--etcd-access", mode)) == 0
        assert seen["options"].etcd_access == mode
    assert run_cli.run(_parse("--etcd-connections-max", "300")) == 0
    assert seen["tracker_options"].etcd_connections_max == 300


def test_etcd_connections_max_defaults_to_the_trackers() -> None:
    from kcp.tracker import TrackerOptions

    assert _parse().etcd_connections_max == TrackerOptions().etcd_connections_max
    with pytest.raises(SystemExit):
        _parse("--etcd-connections-max", "0")


def test_health_requeue_duration_sets_the_reconcilers_period() -> None:
    from kcp.controlplane.cli import reconciler_options_from_args

    assert reconciler_options_from_args(_parse()).health_requeue == 600.0
    options = reconciler_options_from_args(_parse("--health-requeue-duration", "5m"))
    assert options.health_requeue == 300.0
    assert options.etcd_access == "port-forward"
    with pytest.raises(SystemExit):
        _parse("--health-requeue-duration", "0s")
