"""Lease leader election against a real API server: one leader, fast hand-over on release,
hand-over within the lease duration when the leader dies without releasing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from kcp.runtime.controller import ObjectKey, Result
from kcp.runtime.leaderelection import LeaderElector
from kcp.runtime.manager import Manager
from kcp.runtime.metrics import RuntimeMetrics, new_registry
from kcp.runtime.options import ManagerOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LEASE_DURATION = 3.0
RENEW_DEADLINE = 2.0
RETRY_PERIOD = 0.5
# An acquire attempt waits retry * (1 + random() * 1.2): at most this between two tries.
MAX_RETRY_GAP = RETRY_PERIOD * 2.2


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `condition()`; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def read_lease(api_client: Any, namespace: str, name: str) -> Any:
    return client.CoordinationV1Api(api_client).read_namespaced_lease(name, namespace)


@pytest.fixture
def electors(api_client: Any, namespace: str) -> Iterator[Callable[[str], LeaderElector]]:
    made: list[LeaderElector] = []

    def make(identity: str, lease: str = "election") -> LeaderElector:
        elector = LeaderElector(
            api_client,
            lease_name=lease,
            namespace=namespace,
            identity=identity,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
        )
        made.append(elector)
        return elector

    yield make
    for elector in made:
        elector.stop(timeout=5)


def test_two_candidates_one_leader(
    electors: Callable[[str], LeaderElector], api_client: Any, namespace: str
) -> None:
    first, second = electors("first"), electors("second")
    first.start()
    second.start()
    wait_for(lambda: first.is_leader() or second.is_leader(), 10, "a leader")
    # Over several renew periods, never two leaders, and the Lease names the one.
    deadline = time.monotonic() + 2 * LEASE_DURATION
    while time.monotonic() < deadline:
        assert not (first.is_leader() and second.is_leader())
        time.sleep(0.05)
    leader = first if first.is_leader() else second
    follower = second if leader is first else first
    assert leader.is_leader() and not follower.is_leader()
    lease = read_lease(api_client, namespace, "election")
    assert lease.spec.holder_identity == leader.identity
    assert lease.spec.lease_duration_seconds == 3
    assert lease.spec.acquire_time is not None and lease.spec.renew_time is not None
    assert follower.leader == leader.identity


def test_release_on_stop_hands_over_at_once(
    electors: Callable[[str], LeaderElector], api_client: Any, namespace: str
) -> None:
    first = electors("first")
    first.start()
    wait_for(first.is_leader, 10, "first to lead")
    second = electors("second")
    second.start()
    wait_for(lambda: second.leader == "first", 5, "second to observe the leader")
    transitions = read_lease(api_client, namespace, "election").spec.lease_transitions or 0

    stopped_at = time.monotonic()
    first.stop(timeout=5)
    assert not first.is_leader()
    took = wait_for(second.is_leader, 10, "second to take over")
    took_from_stop = time.monotonic() - stopped_at
    # Released: no waiting out the 3 s lease, only the next acquire attempt.
    assert took_from_stop < LEASE_DURATION, took_from_stop
    assert took <= MAX_RETRY_GAP + 0.5
    lease = read_lease(api_client, namespace, "election")
    assert lease.spec.holder_identity == "second"
    assert lease.spec.lease_transitions == transitions + 1


def test_release_leaves_an_empty_holder(
    electors: Callable[[str], LeaderElector], api_client: Any, namespace: str
) -> None:
    only = electors("only")
    only.start()
    wait_for(only.is_leader, 10, "leadership")
    only.stop(timeout=5)
    lease = read_lease(api_client, namespace, "election")
    assert not lease.spec.holder_identity
    assert lease.spec.lease_duration_seconds == 1


VICTIM = """
import sys, threading
from kubernetes import config
from kcp.runtime.leaderelection import LeaderElector

api = config.new_client_from_config(config_file=sys.argv[1])
elector = LeaderElector(
    api, lease_name="election", namespace=sys.argv[2], identity="victim",
    lease_duration=3.0, renew_deadline=2.0, retry_period=0.5,
    on_started_leading=lambda: print("LEADING", flush=True),
)
elector.run()
"""


def test_killed_leader_is_replaced_within_the_lease_duration(
    control_plane: Any, electors: Callable[[str], LeaderElector], api_client: Any, namespace: str
) -> None:
    victim = subprocess.Popen(
        [sys.executable, "-c", VICTIM, str(control_plane.kubeconfig_path), namespace],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        leading = threading.Event()

        def watch_stdout() -> None:
            assert victim.stdout is not None
            for line in victim.stdout:
                if line.strip() == "LEADING":
                    leading.set()

        threading.Thread(target=watch_stdout, daemon=True).start()
        assert leading.wait(30), "the victim process never led"
        survivor = electors("survivor")
        survivor.start()
        wait_for(lambda: survivor.leader == "victim", 5, "survivor to observe the victim")
        time.sleep(2 * RETRY_PERIOD)
        assert not survivor.is_leader()

        victim.kill()  # SIGKILL: no release
        victim.wait(5)
        took = wait_for(survivor.is_leader, 3 * LEASE_DURATION, "survivor to take over")
        # The survivor times the Lease from the last change it saw (at most one retry
        # before the kill), then needs one more acquire attempt.
        assert took <= LEASE_DURATION + MAX_RETRY_GAP + 0.5, took
        assert took >= LEASE_DURATION - 2 * MAX_RETRY_GAP, took  # it did wait the lease out
        assert read_lease(api_client, namespace, "election").spec.holder_identity == "survivor"
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(5)


def test_a_leader_that_cannot_renew_stops_leading(
    electors: Callable[[str], LeaderElector], api_client: Any, namespace: str
) -> None:
    lost = threading.Event()
    only = electors("only")
    only._on_stopped = lost.set  # observe the callback without changing behaviour
    only.start()
    wait_for(only.is_leader, 10, "leadership")
    # Someone else takes the Lease by force (as after a long pause of ours).
    _usurp(api_client, namespace, "election")
    took = wait_for(lost.is_set, 3 * RENEW_DEADLINE, "leadership to be given up")
    assert not only.is_leader()
    assert took <= RENEW_DEADLINE + 2 * RETRY_PERIOD + 0.5
    assert only.stopping is False


# -- the manager on top -------------------------------------------------------------


def manager(api_client: Any, namespace: str, identity: str, **overrides: Any) -> Manager:
    options = ManagerOptions(
        leader_elect=True,
        leader_elect_lease_duration=LEASE_DURATION,
        leader_elect_renew_deadline=RENEW_DEADLINE,
        leader_elect_retry_period=RETRY_PERIOD,
        leader_election_id="kcp-test",
        leader_election_namespace=namespace,
        health_addr="127.0.0.1:0",
        metrics_bind_addr="0",
        concurrency=1,
        graceful_shutdown_timeout=5,
        **overrides,
    )
    return Manager(
        options,
        api_client=api_client,
        identity=identity,
        metrics=RuntimeMetrics(new_registry(process_collectors=False)),
    )


def test_only_the_leading_manager_reconciles_and_stopping_hands_over(
    api_client: Any, namespace: str
) -> None:
    seen: dict[str, list[ObjectKey]] = {"a": [], "b": []}
    managers = {name: manager(api_client, namespace, name) for name in seen}
    for name, mgr in managers.items():
        controller = mgr.new_controller(
            "things", lambda key, name=name: seen[name].append(key) or Result()
        )
        controller.enqueue(ObjectKey("ns", "x"))  # both have work waiting
        mgr.start()
    try:
        wait_for(lambda: bool(seen["a"]) or bool(seen["b"]), 10, "the leader to reconcile")
        time.sleep(1.0)
        leader = "a" if seen["a"] else "b"
        follower = "b" if leader == "a" else "a"
        assert seen[follower] == []
        assert managers[leader].controllers_running and not managers[follower].controllers_running
        # Both are ready: a standby must not be restarted by its readiness probe.
        for mgr in managers.values():
            assert mgr.ready() is None

        assert managers[leader].stop(timeout=5)
        took = wait_for(lambda: bool(seen[follower]), 10, "the follower to reconcile")
        assert took < LEASE_DURATION
    finally:
        for mgr in managers.values():
            mgr.stop(timeout=5)


def test_shards_have_their_own_leases_and_both_lead(api_client: Any, namespace: str) -> None:
    shard_a = manager(api_client, namespace, "a", watch_filter="shard-a")
    shard_b = manager(api_client, namespace, "b", watch_filter="shard-b")
    assert shard_a.lease_name == "kcp-test-shard-a" and shard_b.lease_name == "kcp-test-shard-b"
    for mgr in (shard_a, shard_b):
        mgr.new_controller("things", lambda key: Result())
        mgr.start()
    try:
        wait_for(lambda: shard_a.controllers_running and shard_b.controllers_running, 10, "both")
        api = client.CoordinationV1Api(api_client)
        assert api.read_namespaced_lease("kcp-test-shard-a", namespace).spec.holder_identity == "a"
        assert api.read_namespaced_lease("kcp-test-shard-b", namespace).spec.holder_identity == "b"
    finally:
        shard_a.stop(timeout=5)
        shard_b.stop(timeout=5)


def test_losing_the_lease_ends_the_run_with_exit_code_1(api_client: Any, namespace: str) -> None:
    mgr = manager(api_client, namespace, "doomed")
    mgr.new_controller("things", lambda key: Result())
    mgr.start()
    try:
        wait_for(lambda: mgr.controllers_running, 10, "leadership")
        _usurp(api_client, namespace, "kcp-test")
        assert mgr.wait(timeout=3 * RENEW_DEADLINE)
        assert mgr.exit_code == 1
    finally:
        mgr.stop(timeout=5)


def _usurp(api_client: Any, namespace: str, lease_name: str) -> None:
    """Take the Lease by force, as another process would after a long pause of ours."""
    api = client.CoordinationV1Api(api_client)
    for _attempt in range(10):  # the leader's own renewal may land between read and write
        lease = api.read_namespaced_lease(lease_name, namespace)
        lease.spec.holder_identity = "usurper"
        try:
            api.replace_namespaced_lease(lease_name, namespace, lease)
            return
        except client.ApiException as error:
            if error.status != 409:
                raise
    pytest.fail(f"could not take Lease {lease_name}: every write conflicted with a renewal")
