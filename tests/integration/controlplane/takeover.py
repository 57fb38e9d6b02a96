"""Taking a cluster over from Cluster API's own KubeadmControlPlane controller, beside a fleet.

Cluster API's KCP (the pinned module's binary) runs on the fleet's namespace with
`--watch-filter=capi` while the fleet's kcp reconciles only its own label; it brings up a
second cluster, a renamed copy of the HA sample. Then, as a user switching over would, the
test stops it and starts kcp with the same flags, and checks what kcp does with what Cluster
API made; at the end kcp adopts (or refuses) a Machine that lost its controller reference.
All of that runs in a thread, so that it overlaps the fleet's own tests instead of
adding to them; `Takeover.finish` waits for it and raises what failed.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.rest import ApiError
from kcp.testing.capi import KUBEADM_CONTROL_PLANE, CapiOptions, ClusterAPIProcesses
from kcp.testing.controlplane import LocalControlPlane
from tests.integration.controlplane.e2e import (
    PROVISION_TIMEOUT,
    Env,
    QuorumWatch,
    _apply,
    _available,
    _condition,
    _kcp,
    _machines,
    _reconciles,
    _run_kcp,
    _sample,
    _scale,
    _wait,
)

CAPI = "capi"
"""The `--watch-filter` value of Cluster API's KCP, then of the kcp that takes over."""
TAKEOVER, TAKEOVER_KCP = "takeover", "takeover-control-plane"
TAKEOVER_AVAILABLE = 60.0
"""Seconds from kcp's start until it must report the taken-over control plane Available."""
CERTIFICATES = tuple(f"{TAKEOVER}-{s}" for s in ("ca", "etcd", "proxy", "sa", "kubeconfig"))


def takeover_cluster() -> list[dict[str, Any]]:
    """The HA sample renamed: Cluster `takeover`, KubeadmControlPlane `takeover-control-plane`.

    Its Machines carry the watch-filter label too: Cluster API's KCP filters their events."""
    documents = _sample("cluster-ha.yaml")
    for document in documents:
        kind, spec = document["kind"], document.get("spec") or {}
        if kind == "Cluster":
            document["metadata"]["name"] = TAKEOVER
            spec["infrastructureRef"]["name"] = TAKEOVER
            spec["controlPlaneRef"]["name"] = TAKEOVER_KCP
        elif kind == "LocalCluster":
            document["metadata"]["name"] = TAKEOVER
        elif kind == "LocalMachineTemplate":
            document["metadata"]["name"] = TAKEOVER_KCP
        elif kind == "KubeadmControlPlane":
            document["metadata"]["name"] = TAKEOVER_KCP
            template = spec["machineTemplate"]
            template["spec"]["infrastructureRef"]["name"] = TAKEOVER_KCP
            template["metadata"]["labels"][labels.WATCH_LABEL] = CAPI
    return documents


def _cluster_secrets(env: Env) -> dict[str, tuple[str, Any]]:
    """The takeover cluster's Secrets by name: (UID, data)."""
    return {
        s["metadata"]["name"]: (s["metadata"]["uid"], s.get("data"))
        for s in env.kube.list(
            groups.SECRET, env.namespace, label_selector=f"{labels.CLUSTER_NAME_LABEL}={TAKEOVER}"
        )
    }


def _machine_uids(env: Env) -> dict[str, str]:
    return {m["metadata"]["name"]: m["metadata"]["uid"] for m in _machines(env, TAKEOVER)}


def _events(env: Env, reason: str) -> list[str]:
    """Messages of the takeover control plane's Events with `reason`."""
    return [
        str(e.get("message"))
        for e in env.kube.list(groups.EVENT, env.namespace)
        if (e.get("involvedObject") or {}).get("name") == TAKEOVER_KCP and e.get("reason") == reason
    ]


def _patch(env: Env, spec: dict[str, Any]) -> None:
    env.kube.merge_patch(groups.KUBEADM_CONTROL_PLANE, env.namespace, TAKEOVER_KCP, {"spec": spec})


@dataclasses.dataclass
class Takeover:
    """Cluster API's KCP, the cluster it makes, and kcp's takeover of it, in a thread."""

    env: Env
    control_plane: LocalControlPlane
    processes: ClusterAPIProcesses | None = None
    report: list[str] = dataclasses.field(default_factory=list)
    """What was measured, one line each, for the test to print."""
    error: BaseException | None = None
    _thread: threading.Thread | None = None
    _stopping: threading.Event = dataclasses.field(default_factory=threading.Event)

    def start(self) -> None:
        """Start Cluster API's KCP, create the cluster, and hand over once it is Available."""
        self.processes = ClusterAPIProcesses(
            self.control_plane.kubeconfig_path,
            CapiOptions(
                controllers=(KUBEADM_CONTROL_PLANE,),
                namespace=self.env.namespace,
                work_dir=self.env.sim.work_dir / "capi-kubeadm-control-plane",
                extra_args={KUBEADM_CONTROL_PLANE: [f"--watch-filter={CAPI}"]},
            ),
        )
        self.processes.start()
        _apply(self.env, takeover_cluster(), CAPI)
        self._thread = threading.Thread(target=self._run, name="takeover", daemon=True)
        self._thread.start()

    def finish(self, timeout: float) -> list[str]:
        """Wait for the takeover to end; raise what failed in it; return its report."""
        assert self._thread is not None, "the takeover was never started"
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the takeover did not end in {timeout:.0f}s: {self.report}")
        if self.error is not None:
            raise self.error
        return self.report

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.processes is not None:
            self.processes.stop()

    def _run(self) -> None:
        try:
            self._take_over(time.monotonic())
        except BaseException as error:  # pytest.fail raises a BaseException
            self.error = error

    def _take_over(self, created: float) -> None:
        env = self.env
        members = _wait(
            "Cluster API's KCP to make the takeover cluster Available with 3 Machines",
            lambda: _available(env, TAKEOVER_KCP, 3, TAKEOVER),
            PROVISION_TIMEOUT,
            3.0,
        )
        assert len(members) == 3
        self.report.append(
            f"Cluster API's KCP: Available with 3 Machines {time.monotonic() - created:.0f}s "
            "after the cluster was created"
        )
        machines, secrets = _machine_uids(env), _cluster_secrets(env)
        assert set(CERTIFICATES) <= set(secrets), sorted(secrets)
        assert self.processes is not None
        self.processes.stop_controller(KUBEADM_CONTROL_PLANE)
        if self._stopping.is_set():
            return
        started = time.monotonic()
        with _run_kcp(self.control_plane, env.namespace, watch_filter=CAPI) as kcp:
            taken = dataclasses.replace(
                env,
                tracker=kcp.tracker,
                controller=kcp.controller,
                registry=kcp.registry,
                created_clusters={TAKEOVER},
                watch_filter=CAPI,
            )

            def available_under_kcp() -> Any:
                """As kcp itself says: it reconciled with the cluster tracked, not a status
                Cluster API's KCP left."""
                tracked = {key.name for key in kcp.tracker.clusters()}
                reconciled = _reconciles(taken, "success", "requeue_after") > 0
                return (
                    TAKEOVER in tracked
                    and reconciled
                    and _available(env, TAKEOVER_KCP, 3, TAKEOVER)
                )

            _wait(
                "kcp to report the taken-over control plane Available",
                available_under_kcp,
                TAKEOVER_AVAILABLE,
                0.5,
            )
            self.report.append(
                f"kcp: Available {time.monotonic() - started:.1f}s after kcp started"
            )
            time.sleep(5)  # more reconciles: still the same Machines and Secrets
            assert _machine_uids(env) == machines
            now = _cluster_secrets(env)
            changed = sorted(name for name in secrets if now.get(name) != secrets[name])
            assert not changed, f"Secrets changed by the takeover: {changed}"
            assert _condition(_kcp(env, TAKEOVER_KCP), c.ROLLING_OUT).get("status") == c.FALSE
            self._relabel(env, machines)
            self._scale_down(taken, machines)
            self._roll_out(env, secrets)
            self._orphan_and_adopt(env)
            self._delete(env)

    def _relabel(self, env: Env, machines: dict[str, str]) -> None:
        """In place, on Machines whose labels Cluster API's field managers applied: a label
        removed from the template goes, one added comes, no Machine is replaced."""
        _patch(
            env,
            {"machineTemplate": {"metadata": {"labels": {"environment": None, "kcp": "yes"}}}},
        )

        def relabelled() -> bool:
            found = [m["metadata"].get("labels") or {} for m in _machines(env, TAKEOVER)]
            return len(found) == 3 and all(
                x.get("kcp") == "yes" and "environment" not in x for x in found
            )

        _wait("the template's label change to reach the 3 Machines in place", relabelled, 60)
        assert _machine_uids(env) == machines

    def _scale_down(self, taken: Env, machines: dict[str, str]) -> None:
        started = time.monotonic()
        with QuorumWatch(taken, TAKEOVER) as watch:
            _scale(taken, TAKEOVER_KCP, 1)
            _wait("scale down to 1", lambda: _available(taken, TAKEOVER_KCP, 1, TAKEOVER), 240, 2.0)
        assert watch.violations == [], watch.violations
        assert set(_machine_uids(taken).values()) <= set(machines.values())
        self.report.append(f"kcp: scaled 3 -> 1 in {time.monotonic() - started:.0f}s")

    def _roll_out(self, env: Env, secrets: dict[str, tuple[str, Any]]) -> None:
        """The last Machine Cluster API made is replaced by one kcp makes at a new version."""
        [last] = _machines(env, TAKEOVER)
        started = time.monotonic()

        def upgraded() -> Any:
            found = _machines(env, TAKEOVER)
            done = (
                len(found) == 1
                and found[0]["metadata"]["uid"] != last["metadata"]["uid"]
                and found[0]["spec"]["version"] == "v1.34.5"
            )
            return done and _available(env, TAKEOVER_KCP, 1, TAKEOVER)

        _patch(env, {"version": "v1.34.5"})
        _wait("the last Machine to be replaced at v1.34.5", upgraded, PROVISION_TIMEOUT, 2.0)
        after = _cluster_secrets(env)
        for name in CERTIFICATES:
            assert after[name] == secrets[name], name
        self.report.append(f"kcp: rolled out to v1.34.5 in {time.monotonic() - started:.0f}s")

    def _orphan_and_adopt(self, env: Env) -> None:
        """The Machine kcp made loses its controller reference (as a KubeadmControlPlane
        deleted with `--cascade=orphan` leaves it) and runs, it says, a version two minors
        back: kcp refuses to adopt it, says why, and makes or deletes no Machine. With its
        version back, kcp adopts it: the same Machine, controlled by the KubeadmControlPlane."""
        [machine] = _machines(env, TAKEOVER)
        name, uid = machine["metadata"]["name"], machine["metadata"]["uid"]
        control_plane = _kcp(env, TAKEOVER_KCP) or {}
        started = time.monotonic()
        for attempt in range(5):
            # Guarded by resourceVersion, so kcp's or core's writes to the Machine meanwhile
            # are not overwritten: on a conflict, read it again and orphan that version.
            metadata = machine["metadata"]
            try:
                env.kube.merge_patch(
                    groups.MACHINE,
                    env.namespace,
                    name,
                    {
                        "metadata": {
                            "ownerReferences": [
                                r
                                for r in metadata.get("ownerReferences") or []
                                if not r.get("controller")
                            ],
                            "resourceVersion": metadata["resourceVersion"],
                        },
                        "spec": {"version": "v1.32.5"},
                    },
                )
                break
            except ApiError as error:
                if error.status != 409 or attempt == 4:
                    raise
                machine = env.kube.get(groups.MACHINE, env.namespace, name) or machine

        def refused() -> Any:
            found = _condition(_kcp(env, TAKEOVER_KCP), c.SCALING_UP)
            ok = found.get("reason") == "AdoptionFailed" and "v1.32.5" in found.get("message", "")
            return found if ok else False

        said = _wait("kcp to say why it does not adopt the Machine", refused, 60, 0.5)
        assert f"Machine {env.namespace}/{name} cannot be adopted" in said["message"]
        time.sleep(3)  # more reconciles: nothing made or deleted meanwhile
        assert [m["metadata"]["uid"] for m in _machines(env, TAKEOVER)] == [uid]
        assert _events(env, "AdoptionFailed")
        env.kube.merge_patch(groups.MACHINE, env.namespace, name, {"spec": {"version": "v1.34.5"}})

        def adopted() -> bool:
            found = _machines(env, TAKEOVER)
            refs = [r for m in found for r in m["metadata"].get("ownerReferences") or []]
            return [m["metadata"]["uid"] for m in found] == [uid] and any(
                r.get("controller") and r.get("uid") == control_plane["metadata"]["uid"]
                for r in refs
            )

        _wait("kcp to adopt the Machine", adopted, 60, 0.5)
        _wait(
            "the adopted control plane to be Available",
            lambda: _available(env, TAKEOVER_KCP, 1, TAKEOVER),
            60,
        )
        assert _events(env, "MachinesAdopted")
        self.report.append(
            f"kcp: refused, then adopted an orphaned Machine in {time.monotonic() - started:.0f}s"
        )

    def _delete(self, env: Env) -> None:
        started = time.monotonic()
        env.kube.delete(groups.KUBEADM_CONTROL_PLANE, env.namespace, TAKEOVER_KCP)
        env.kube.delete(groups.CLUSTER, env.namespace, TAKEOVER)
        _wait("the takeover cluster's Machines to go", lambda: not _machines(env, TAKEOVER), 180)
        _wait("kcp to drop its finalizer", lambda: _kcp(env, TAKEOVER_KCP) is None, 60)
        _wait(
            "the takeover cluster's processes to go",
            lambda: env.sim.cluster(env.namespace, TAKEOVER) is None,
            60,
        )
        self.report.append(f"kcp: deleted the cluster in {time.monotonic() - started:.0f}s")
