"""Manager without a cluster: start order, readiness, graceful stop, signals, exit codes."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from kcp.runtime.controller import ObjectKey, Result
from kcp.runtime.manager import Manager
from kcp.runtime.metrics import RuntimeMetrics, new_registry
from kcp.runtime.options import ManagerOptions

LOOPBACK = "127.0.0.1:0"


class FakeInformer:
    def __init__(self) -> None:
        self.synced = threading.Event()
        self.started = False
        self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def has_synced(self) -> bool:
        return self.synced.is_set()


def options(**overrides: object) -> ManagerOptions:
    values: dict[str, object] = {
        "health_addr": LOOPBACK,
        "metrics_bind_addr": LOOPBACK,
        "graceful_shutdown_timeout": 5.0,
        "concurrency": 2,
    }
    values.update(overrides)
    return ManagerOptions(**values)  # type: ignore[arg-type]


def manager_with(opts: ManagerOptions) -> Manager:
    return Manager(opts, metrics=RuntimeMetrics(new_registry(process_collectors=False)))


def status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_controllers_start_only_after_informers_sync_and_readyz_follows() -> None:
    manager = manager_with(options())
    informer = FakeInformer()
    manager.add_informer(informer)
    reconciled: list[ObjectKey] = []
    controller = manager.new_controller("things", lambda key: reconciled.append(key) or Result())
    assert controller.concurrency == 2
    manager.start()
    try:
        health = manager.server("health")
        assert health is not None
        assert informer.started
        assert status(health.url + "/healthz") == (200, "ok")
        code, text = status(health.url + "/readyz")
        assert code == 500 and "informers not synced: FakeInformer" in text
        controller.enqueue(ObjectKey("ns", "a"))
        time.sleep(0.2)
        assert reconciled == []  # no worker before the caches are synced
        informer.synced.set()
        wait_for(lambda: reconciled == [ObjectKey("ns", "a")])
        # The workers may reconcile before the thread that started them marks them started.
        wait_for(lambda: manager.controllers_running)
        assert status(health.url + "/readyz") == (200, "ok")
        metrics = manager.server("metrics")
        assert metrics is not None
        code, text = status(metrics.url + "/metrics")
        assert (
            'controller_runtime_reconcile_total{controller="things",result="success"} 1.0' in text
        )
    finally:
        assert manager.stop()
    assert informer.stopped
    assert manager.exit_code == 0


def test_cache_sync_timeout_ends_the_run_with_exit_code_1() -> None:
    manager = manager_with(options(cache_sync_timeout=0.2))
    manager.add_informer(FakeInformer())  # never syncs
    manager.start()
    try:
        assert manager.wait(timeout=5)
        assert manager.exit_code == 1
    finally:
        manager.stop()


def test_stop_finishes_in_flight_reconciles_within_the_bound() -> None:
    manager = manager_with(options())
    started = threading.Event()
    finished = threading.Event()

    def slow(key: ObjectKey) -> Result:
        started.set()
        time.sleep(0.3)
        finished.set()
        return Result()

    controller = manager.new_controller("slow", slow)
    manager.start()
    controller.enqueue(ObjectKey("ns", "x"))
    assert started.wait(5)
    assert manager.stop(timeout=5)
    assert finished.is_set()


def test_disabled_servers_are_not_started() -> None:
    manager = manager_with(options(health_addr="0", metrics_bind_addr="0"))
    manager.start()
    try:
        assert manager.servers == []
    finally:
        manager.stop()


def test_leader_election_needs_an_api_client() -> None:
    manager = manager_with(options(leader_elect=True))
    with pytest.raises(ValueError, match="api_client"):
        manager.start()
    manager.stop()


def test_label_selector_and_lease_name_follow_the_watch_filter() -> None:
    manager = manager_with(options(watch_filter="shard-a", leader_election_id="kcp"))
    assert manager.label_selector == "cluster.x-k8s.io/watch-filter=shard-a"
    assert manager.lease_name == "kcp-shard-a"
    assert manager_with(options()).label_selector is None


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_sigterm_stops_gracefully_with_exit_code_0() -> None:
    manager = manager_with(options())
    in_flight = threading.Event()
    finished = threading.Event()

    def slow(key: ObjectKey) -> Result:
        in_flight.set()
        time.sleep(0.3)
        finished.set()
        return Result()

    controller = manager.new_controller("sig", slow)
    previous = signal.getsignal(signal.SIGTERM)

    def send_sigterm() -> None:
        wait_for(lambda: manager.controllers_running)
        controller.enqueue(ObjectKey("ns", "x"))
        assert in_flight.wait(5)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_sigterm, daemon=True)
    sender.start()
    assert manager.run_until_signal() == 0
    assert finished.is_set()
    assert signal.getsignal(signal.SIGTERM) == previous
