"""Faults: the controller, the management cluster and a workload cluster break; kcp copes.

The tests follow the `victim` cluster's life in order (1 -> 3 -> 1 Machines, then
a rollout) while `bystander` must keep reconciling. `kcp run` is a real child
process: it is SIGKILLed at random points of every scale and rollout step (at
least 20 times), frozen while the management etcd is compacted under it (410
on resume), and left running while the management API server restarts, a
second writer fights it for the same objects (409), an etcd member dies, a
workload API server stops, and the cluster's endpoint swallows connections.
Faults share steps where that costs no clarity, to fit the suite's budget:
the etcd member and the API server (of two different Machines) fail together,
and the management API server restarts in the middle of the scale-down.

After every fault: the cluster converges; no CA Secret was ever replaced; etcd
members are exactly the Machines, each with its KubeadmConfig and LocalMachine
(ones a kill left without a Machine are counted, and must be gone by the end;
a failpoint test crashes kcp exactly between them); a sampler saw quorum at every sample except
while a joining member had not started yet (the simulator joins as kubeadm
does, a voting member added before it runs: counted and reported, not kcp's
doing); the bystander observed a spec change promptly; the controller never
exited on its own.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.rest import ApiError
from kcp.sim import Component, Fault
from tests.reliability.conftest import Summary
from tests.reliability.fleet import (
    TRANSIENT,
    Fleet,
    QuorumWatch,
    condition,
    kcp_name,
    unreferenced,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

VICTIM, BYSTANDER = "victim", "bystander"
NEW_VERSION = "v1.34.5"
PROVISION = 180.0
"""Seconds a scale or rollout step may take with the controller being killed (two cores)."""
BYSTANDER_PROMPT = 15.0
"""Seconds the bystander may take to observe a spec change while the victim suffers."""
KILLS_REQUIRED = 20
KILL_TARGETS = {"scale-up": 7, "scale-down": 6, "rollout": 7}
SEED = random.randrange(1 << 30)
CRITICAL = re.compile(
    r"Machine created|Removed etcd member|Machine deleting|Created cluster certificate"
)
"""Log lines after which a kill is most likely to find half-done work."""


@dataclass
class KillRecord:
    phase: str
    after: str
    mid_transition: bool


KILLS: list[KillRecord] = []
QUORUM: list[QuorumWatch] = []


@pytest.fixture(scope="module")
def rng() -> random.Random:
    print(f"kill schedule seed: {SEED}")
    return random.Random(SEED)


@pytest.fixture(scope="module")
def victim(fleet: Fleet, summary: Summary) -> Iterator[Fleet]:
    """The fleet once victim and bystander are Available, their CA Secrets snapshotted."""
    for cluster in (VICTIM, BYSTANDER):
        fleet.wait_available(cluster, 1, timeout=PROVISION)
        fleet.snapshot_cas(cluster)
    yield fleet
    summary.notes.append(
        f"CA Secret checks:     {fleet.ca_checks} (uid and data unchanged every time)"
    )
    summary.notes.append(
        f"quorum samples:       {sum(w.samples for w in QUORUM)} "
        f"({sum(len(w.violations) for w in QUORUM)} without quorum; "
        f"{sum(len(w.joining) for w in QUORUM)} while a voting member was added, not started)"
    )


@pytest.fixture
def quorum(victim: Fleet, summary: Summary) -> Iterator[QuorumWatch]:
    with QuorumWatch(victim, VICTIM) as watch:
        yield watch
    QUORUM.append(watch)
    print(
        f"quorum: {watch.samples} samples, {len(watch.violations)} without quorum, "
        f"{len(watch.joining)} while a member joined"
    )
    assert watch.samples > 0
    assert watch.violations == [], f"etcd quorum lost: {watch.violations[:5]}"


def check_invariants(fleet: Fleet, replicas: int) -> None:
    fleet.assert_cas_unchanged()
    fleet.assert_no_orphans(VICTIM)
    assert len(fleet.machines(VICTIM)) == replicas
    assert fleet.kcp.crashes == [], fleet.kcp.crashes
    started = time.monotonic()
    generation = fleet.touch(BYSTANDER)
    fleet.observed(BYSTANDER, generation, BYSTANDER_PROMPT)
    print(f"bystander observed generation {generation} in {time.monotonic() - started:.1f}s")


def kill_during(
    fleet: Fleet,
    summary: Summary,
    rng: random.Random,
    phase: str,
    done: Callable[[], Any],
    target: int,
    interlude: tuple[int, Callable[[], None]] | None = None,
) -> int:
    """SIGKILL and restart `kcp run` `target` times while `done()` is false; returns kills.

    Each kill comes a random 0.3-2.5 s after the controller became ready, or, on
    every other kill, right after it logs a Machine create/delete or an etcd
    member removal if that comes first. `interlude` (kill number, function) runs
    the function, on this thread, just before that kill.
    """
    kcp = fleet.kcp
    kills = 0
    while kills < target:
        if interlude is not None and interlude[0] == kills:
            interlude[1]()
        kcp.check_alive()
        assert kcp.running, f"kcp exited on its own:\n{kcp.tail()}"
        offset = kcp.log_size()
        delay = rng.uniform(0.3, 2.5)
        on_event = rng.random() < 0.5
        after = f"{delay:.1f}s"
        deadline = kcp.ready_at + delay
        while time.monotonic() < deadline:
            if on_event:
                match = CRITICAL.search(kcp.log_since(offset))
                if match:
                    after = f"'{match.group(0)}'"
                    break
            time.sleep(0.05)
        try:
            finished = done()
        except TRANSIENT:
            finished = False
        if finished:
            break
        kcp.kill()
        kills += 1
        KILLS.append(KillRecord(phase, after, True))
        summary.kills += 1
        summary.kills_mid_transition += 1
        kcp.start()
    print(f"{phase}: {kills} kills: {[k.after for k in KILLS if k.phase == phase]}")
    return kills


def _carry(phase: str) -> int:
    """This phase's kill target plus whatever earlier phases fell short of theirs."""
    order = list(KILL_TARGETS)
    before = order[: order.index(phase)]
    wanted = sum(KILL_TARGETS[p] for p in before)
    made = sum(1 for k in KILLS if k.phase in before)
    return KILL_TARGETS[phase] + max(0, wanted - made)


# -- the tests, in the order of the victim's life ----------------------------------------------


def test_scale_up_with_the_controller_killed(
    victim: Fleet, quorum: QuorumWatch, summary: Summary, rng: random.Random
) -> None:
    started = time.monotonic()
    victim.scale(VICTIM, 3)
    kill_during(
        victim,
        summary,
        rng,
        "scale-up",
        lambda: victim.available(VICTIM, 3),
        _carry("scale-up"),
    )
    members = victim.wait_available(VICTIM, 3, PROVISION)
    summary.faults.append("SIGKILL during scale-up")
    print(f"1 -> 3 in {time.monotonic() - started:.0f}s, members {members}")
    check_invariants(victim, 3)


def _follower(fleet: Fleet) -> str:
    status = fleet.etcd_status(VICTIM)
    assert status is not None and status.leader_id is not None, status
    machines = {m["metadata"]["name"] for m in fleet.machines(VICTIM)}
    followers = sorted(m.name for m in status.members if m.id != status.leader_id)
    found = [f for f in followers if f in machines]
    assert found, (followers, machines)
    return found[0]


def _wait_condition(
    fleet: Fleet, kind: str, statuses: tuple[str, ...], needle: str, timeout: float
) -> dict[str, Any]:
    def check() -> Any:
        found = condition(fleet.kcp_object(VICTIM), kind)
        ok = found.get("status") in statuses and needle in found.get("message", "")
        return found if ok else False

    result: dict[str, Any] = wait_for(f"{kind} {statuses} naming {needle}", check, timeout)
    return result


def _bystander_keeps_reconciling(fleet: Fleet) -> float:
    generation = fleet.touch(BYSTANDER)
    return fleet.observed(BYSTANDER, generation, BYSTANDER_PROMPT)


def test_etcd_member_killed_and_api_server_stopped(
    victim: Fleet, quorum: QuorumWatch, summary: Summary
) -> None:
    """One machine's etcd is killed (a follower: no election), another's API server stopped."""
    dead_etcd = _follower(victim)
    stopped = next(m for m in sorted(_machine_names(victim)) if m != dead_etcd)
    victim.sim.inject(victim.namespace, dead_etcd, Component.ETCD, Fault.KILLED)
    victim.sim.inject(victim.namespace, stopped, Component.API_SERVER, Fault.STOPPED)
    try:
        victim.touch(VICTIM)
        etcd = _wait_condition(victim, c.ETCD_CLUSTER_HEALTHY, (c.FALSE,), dead_etcd, 45)
        print(f"EtcdClusterHealthy: {etcd['message']}")
        components = _wait_condition(
            victim, c.CONTROL_PLANE_COMPONENTS_HEALTHY, (c.FALSE, c.UNKNOWN), stopped, 45
        )
        print(f"ControlPlaneComponentsHealthy: {components['message']}")
        took = _bystander_keeps_reconciling(victim)
        print(f"bystander reconciled in {took:.1f}s meanwhile")
    finally:
        victim.sim.restore(victim.namespace, dead_etcd, Component.ETCD)
        victim.sim.restore(victim.namespace, stopped, Component.API_SERVER)
    victim.touch(VICTIM)
    victim.wait_available(VICTIM, 3, 90)
    summary.faults.append("etcd member killed")
    summary.faults.append("workload API server stopped")
    check_invariants(victim, 3)


def _machine_names(fleet: Fleet) -> list[str]:
    return [m["metadata"]["name"] for m in fleet.machines(VICTIM)]


def test_workload_endpoint_accepts_tcp_and_never_answers(
    victim: Fleet, quorum: QuorumWatch, summary: Summary
) -> None:
    victim.sim.blackhole_endpoint(victim.namespace, VICTIM)
    try:
        started = time.monotonic()
        victim.touch(VICTIM)

        def reported() -> Any:
            found = condition(victim.kcp_object(VICTIM), c.CONTROL_PLANE_COMPONENTS_HEALTHY)
            return found if found.get("status") in (c.UNKNOWN, c.FALSE) else False

        found = wait_for("the silent endpoint to be reported", reported, 60)
        print(
            f"silent endpoint reported after {time.monotonic() - started:.1f}s: "
            f"{found.get('reason')}: {found.get('message', '')[:300]}"
        )
        # The silent cluster holds at most one worker at a time: others are served at once.
        slowest = max(_bystander_keeps_reconciling(victim) for _ in range(3))
        print(f"bystander reconciled three times, slowest {slowest:.1f}s")
        assert victim.kcp.running
    finally:
        victim.sim.restore_endpoint(victim.namespace, VICTIM)
    victim.touch(VICTIM)
    victim.wait_available(VICTIM, 3, 90)
    summary.faults.append("workload endpoint blackholed")
    check_invariants(victim, 3)


def test_watches_expire_while_the_controller_is_frozen(
    victim: Fleet, quorum: QuorumWatch, summary: Summary
) -> None:
    """SIGSTOP kcp, change things, compact etcd, restart the API server, SIGCONT: 410, relist."""
    kcp = victim.kcp
    offset = kcp.log_size()
    kcp.freeze()
    try:
        generation = victim.touch(BYSTANDER)
        for _ in range(5):  # enough revisions that the frozen watches' ones are compacted away
            victim.touch(VICTIM)
        revision = victim.plane.compact_etcd()
        victim.restart_management()
    finally:
        kcp.thaw()
    thawed = time.monotonic()
    victim.observed(BYSTANDER, generation, 60)
    print(
        f"etcd compacted at revision {revision}; the change made while frozen was observed "
        f"{time.monotonic() - thawed:.1f}s after resuming"
    )
    log = wait_for(
        "the informers to report the expired watch",
        lambda: (text := kcp.log_since(offset)) and "watch expired" in text and text,
        30,
    )
    relists = log.count("watch expired, listing again")
    print(f"informers relisted after 410: {relists}")
    assert relists >= 1
    victim.wait_available(VICTIM, 3, 60)
    summary.faults.append("management API server restarted and etcd compacted (410)")
    check_invariants(victim, 3)


RESTARTS: list[float] = []
UNAVAILABLE = (429, 500, 503, 504)
"""What the management API server answers while it restarts."""


def _restart_management(fleet: Fleet) -> None:
    RESTARTS.append(fleet.restart_management())
    print(f"management API server restarted mid-scale-down in {RESTARTS[-1]:.1f}s")


class ConflictingWriter:
    """Another client writing the KubeadmControlPlane (spec and status) and the Machines.

    Updates are PUTs carrying the resourceVersion read up to 0.3 s before (a slow
    client): each one that kcp's writes overtook ends in a 409, and kcp's status
    patches, which carry a resourceVersion too, meet the writer's. Its own
    annotation, label and condition must survive whatever kcp writes.
    """

    CONDITION = "ReliabilityExternalCheck"

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.writes = 0
        self.conflicts = 0
        self.unavailable = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conflicting-writer", daemon=True)

    def __enter__(self) -> ConflictingWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _put(self, path: str, obj: dict[str, Any]) -> None:
        try:
            self.fleet.kube.request("PUT", path, body=obj)
            self.writes += 1
        except ApiError as error:
            if error.status == 409:
                self.conflicts += 1
            elif error.status in UNAVAILABLE:
                self.unavailable += 1
            elif not error.not_found:
                self.errors.append(str(error))

    def _run(self) -> None:
        fleet, counter = self.fleet, 0
        resource = groups.KUBEADM_CONTROL_PLANE
        path = resource.path(fleet.namespace, kcp_name(VICTIM))
        rng = random.Random(SEED)
        while not self._stop.wait(0.2):
            counter += 1
            try:
                obj = fleet.kcp_object(VICTIM)
                if obj is None:
                    continue
                time.sleep(rng.uniform(0.0, 0.3))
                obj["metadata"].setdefault("annotations", {})["reliability/writer"] = str(counter)
                self._put(path, obj)
                obj = fleet.kcp_object(VICTIM) or obj
                conditions = [
                    x
                    for x in (obj.get("status") or {}).get("conditions") or []
                    if x["type"] != self.CONDITION
                ]
                conditions.append(
                    {
                        "type": self.CONDITION,
                        "status": "True",
                        "reason": "Checked",
                        "message": f"write {counter}",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                )
                obj.setdefault("status", {})["conditions"] = conditions
                self._put(f"{path}/status", obj)
                for machine in fleet.machines(VICTIM):
                    machine["metadata"].setdefault("labels", {})["reliability/writer"] = "yes"
                    self._put(
                        groups.MACHINE.path(fleet.namespace, machine["metadata"]["name"]), machine
                    )
            except ApiError as error:
                if error.status in UNAVAILABLE:
                    self.unavailable += 1
                else:
                    self.errors.append(str(error))
            except TRANSIENT:
                self.unavailable += 1  # the management API server is restarting


def test_scale_down_with_the_controller_killed_and_a_conflicting_writer(
    victim: Fleet, quorum: QuorumWatch, summary: Summary, rng: random.Random
) -> None:
    started = time.monotonic()
    # On this thread: the test control plane's processes die with the thread that started them.
    restart = (rng.randrange(1, 3), lambda: _restart_management(victim))
    with ConflictingWriter(victim) as writer:
        victim.scale(VICTIM, 1)
        kill_during(
            victim,
            summary,
            rng,
            "scale-down",
            lambda: victim.available(VICTIM, 1),
            _carry("scale-down"),
            interlude=restart,
        )
        members = victim.wait_available(VICTIM, 1, PROVISION)
    assert RESTARTS, "the management API server was not restarted"
    print(
        f"3 -> 1 in {time.monotonic() - started:.0f}s, members {members}; the other writer "
        f"wrote {writer.writes} times and met {writer.conflicts} conflicts"
    )
    assert writer.writes > 0 and not writer.errors, writer.errors[:5]
    assert writer.conflicts > 0, "no write of the other writer ever conflicted with kcp's"
    obj = victim.kcp_object(VICTIM) or {}
    assert obj["metadata"]["annotations"].get("reliability/writer"), "kcp dropped an annotation"
    external = condition(obj, ConflictingWriter.CONDITION)
    assert external.get("status") == "True", "kcp dropped another writer's condition"
    summary.faults.append("SIGKILL during scale-down")
    summary.faults.append("management API server restarted during scale-down")
    summary.faults.append(f"conflicting writer ({writer.conflicts} x 409)")
    check_invariants(victim, 1)


def test_rollout_with_the_controller_killed(
    victim: Fleet, quorum: QuorumWatch, summary: Summary, rng: random.Random
) -> None:
    old = {m["metadata"]["name"] for m in victim.machines(VICTIM)}
    started = time.monotonic()
    victim.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE,
        victim.namespace,
        kcp_name(VICTIM),
        {"spec": {"version": NEW_VERSION}},
    )

    def rolled() -> Any:
        machines = victim.machines(VICTIM)
        names = {m["metadata"]["name"] for m in machines}
        return not names & old and victim.available(VICTIM, 1, NEW_VERSION)

    kill_during(victim, summary, rng, "rollout", rolled, _carry("rollout"))
    wait_for("the rollout to finish", rolled, PROVISION, interval=1.0)
    print(f"rolled out in {time.monotonic() - started:.0f}s")
    summary.faults.append("SIGKILL during rollout")
    check_invariants(victim, 1)
    assert all(m["spec"]["version"] == NEW_VERSION for m in victim.machines(VICTIM))


SOAK_CYCLES = 5


@pytest.mark.soak
def test_soak_scale_cycles_with_the_controller_killed(
    victim: Fleet, quorum: QuorumWatch, summary: Summary, rng: random.Random
) -> None:
    """`--soak`: five more 1 -> 3 -> 1 cycles, ten kills each way."""
    for cycle in range(SOAK_CYCLES):
        for replicas in (3, 1):
            victim.scale(VICTIM, replicas)
            kill_during(
                victim,
                summary,
                rng,
                f"soak-{cycle}-{replicas}",
                lambda r=replicas: victim.available(VICTIM, r),
                10,
            )
            victim.wait_available(VICTIM, replicas, PROVISION)
            check_invariants(victim, replicas)
    summary.faults.append(f"SIGKILL during {SOAK_CYCLES} soak scale cycles")


RECOVERY = 8.0
"""Seconds the restarted controller gets to clean up (it reconciles the cluster every 2 s)."""


def test_a_crash_between_creating_the_kubeadm_config_and_the_machine_leaves_nothing(
    victim: Fleet, summary: Summary
) -> None:
    """A failpoint SIGKILLs kcp right after it created a Machine's KubeadmConfig.

    The infrastructure machine and the KubeadmConfig no Machine references are deleted
    by the restarted controller (kcp/controlplane/orphans.py, since 5e2962b; the suite
    found the leak).
    """
    kcp = victim.kcp
    kcp.kill()
    kcp.start(crash_after_create=groups.KUBEADM_CONFIG.kind)
    name = "crash-point"
    victim.add_unsimulated_cluster(name, infrastructure=True)
    wait_for("the failpoint to fire", lambda: (kcp.check_alive(), not kcp.running)[1], 60)
    assert kcp.failpoint_crashes == 1, kcp.tail()
    left = unreferenced(victim.kube, victim.bad_namespace, name)
    assert left, "the failpoint fired before anything was created"
    kcp.start()
    summary.faults.append("failpoint crash between KubeadmConfig and Machine")
    wait_for(
        "a Machine for the cluster",
        lambda: victim.kube.list(
            groups.MACHINE,
            victim.bad_namespace,
            label_selector=f"{labels.CLUSTER_NAME_LABEL}={name}",
        ),
        60,
    )
    deadline = time.monotonic() + RECOVERY
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = unreferenced(victim.kube, victim.bad_namespace, name)
    assert not left, f"after the crash and {RECOVERY:.0f}s of recovery: {sorted(left)}"
    kcp_uid = (
        victim.kube.get(groups.KUBEADM_CONTROL_PLANE, victim.bad_namespace, kcp_name(name)) or {}
    )["metadata"]["uid"]
    reasons = {
        e.get("reason")
        for e in victim.kube.list(groups.EVENT, victim.bad_namespace)
        if (e.get("involvedObject") or {}).get("uid") == kcp_uid
    }
    print(f"events of the crashed-into control plane: {sorted(r for r in reasons if r)}")
    assert "DeletedOrphan" in reasons


def test_at_least_twenty_kills_and_no_crash(victim: Fleet, summary: Summary) -> None:
    mid = [k for k in KILLS if k.mid_transition]
    print(f"{len(KILLS)} kills, {len(mid)} during a transition; seed {SEED}")
    left = wait_for(
        "every orphan of the random kills to be cleaned up",
        lambda: not unreferenced(victim.kube, victim.namespace, VICTIM) or None,
        30,
    )
    assert left
    summary.notes.append(
        f"orphaned objects:     {len(victim.orphans)} KubeadmConfig/LocalMachine seen after "
        "random kills, all deleted by kcp by the end"
    )
    assert len(KILLS) >= KILLS_REQUIRED
    assert len(mid) >= KILLS_REQUIRED
    assert victim.kcp.crashes == []
