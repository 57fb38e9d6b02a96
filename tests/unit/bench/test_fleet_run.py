"""What `scale` and `profile` share: settings from arguments, the fleet's set-up and tear-down."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest

from kcp.bench import fleet_run


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """What the fakes of the shared etcd, the fleet and the observer were asked, in order."""
    log: list[Any] = []

    class Etcd:
        ca, endpoints = "ca", ["127.0.0.1:2379"]

        def __init__(self, *, standard_port: bool) -> None:
            log.append(("etcd", standard_port))

        def __enter__(self) -> Etcd:
            return self

        def __exit__(self, *exc: object) -> None:
            log.append("etcd stopped")

    class Fleet:
        def __init__(self, *args: Any, workload: Any) -> None:
            log.append(("fleet", *args, workload))

        def create_namespace(self) -> None:
            log.append("namespace")

        def delete_all(self) -> None:
            log.append("fleet deleted")

    class Observer:
        def __init__(self, *args: Any) -> None:
            log.append(("observer", *args))

        def start(self) -> None:
            log.append("observer started")

        def stop(self) -> None:
            log.append("observer stopped")

    class Kubelet:
        @classmethod
        def for_environment(cls, env: Any, etcd: Any) -> Kubelet:
            log.append("kubelet")
            return cls()

        def __enter__(self) -> Kubelet:
            return self

        def __exit__(self, *exc: object) -> None:
            log.append("kubelet stopped")

    monkeypatch.setattr(fleet_run, "SharedEtcd", Etcd)
    monkeypatch.setattr(fleet_run, "SharedKubelet", Kubelet)
    monkeypatch.setattr(fleet_run, "Fleet", Fleet)
    monkeypatch.setattr(fleet_run, "GenerationObserver", Observer)
    monkeypatch.setattr(fleet_run, "steady_workload", lambda env, etcd: "workload")
    yield log


class _Env:
    def api_client(self) -> str:
        return "client"


@pytest.mark.parametrize(
    ("controller", "standard_port", "workload"),
    [("kcp-run", True, "workload"), ("runtime+tracker", False, None)],
)
def test_set_up_then_torn_down_in_order(
    calls: list[Any], controller: str, standard_port: bool, workload: str | None
) -> None:
    with fleet_run.watched_fleet(_Env(), "ns", controller) as (made, observer):  # type: ignore[arg-type]
        assert (type(made).__name__, type(observer).__name__) == ("Fleet", "Observer")
        calls.append("body")
    # `kcp run` reaches etcd through port-forwards: the fleet's Node gets a kubelet.
    kubelet = ["kubelet"] if controller == "kcp-run" else []
    assert calls == [
        ("etcd", standard_port),
        *kubelet,
        ("fleet", "client", "ns", "ca", ["127.0.0.1:2379"], workload),
        "namespace",
        ("observer", "client", "ns"),
        "observer started",
        "body",
        "observer stopped",
        "fleet deleted",
        *(f"{k} stopped" for k in kubelet),
        "etcd stopped",
    ]


def test_torn_down_when_the_measurement_fails(calls: list[Any]) -> None:
    failing = fleet_run.watched_fleet(_Env(), "ns", "kcp-run")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="measurement failed"), failing:
        raise RuntimeError("measurement failed")
    assert calls[-4:] == ["observer stopped", "fleet deleted", "kubelet stopped", "etcd stopped"]


def test_controller_and_clusters_from_arguments() -> None:
    changes = fleet_run.FleetRunSettings.changes_from_args
    assert changes(argparse.Namespace()) == {"controller": "auto"}
    given = argparse.Namespace(controller="kcp-run", clusters=7)
    assert changes(given) == {"controller": "kcp-run", "clusters": 7}
    unset = argparse.Namespace(controller="kcp-run", clusters=0)
    assert changes(unset) == {"controller": "kcp-run"}
