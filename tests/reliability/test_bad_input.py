"""Bad input: every malformed input ends in a condition and an Event that say what to fix.

One cluster per input from `corpus.CORPUS`, all created at once in the
namespace the simulator does not watch, all reconciled by the same `kcp run`
that serves the healthy fleet. Each must show a condition that is not True and
a Warning Event, both naming where the problem is (the Secret and its data
key, or the spec field) and carrying an instruction; meanwhile the controller
process must not exit and the healthy `bystander` cluster must keep
reconciling. A wrong etcd CA needs a running etcd to be noticed: the `victim`
cluster gets one (and its own back) before the fault tests use it. Inputs the
API server refuses itself are checked to be refused with a message naming the
field.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from kcp import certs
from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.rest import ApiError
from tests.reliability.conftest import Summary
from tests.reliability.corpus import CORPUS, REJECTED, BadInput
from tests.reliability.fleet import Fleet, condition, kcp_name, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

INSTRUCTION = re.compile(
    r"\b(put|provide|replace|set|restore|create|fix|store|use|check|remove|add|embed|install|"
    r"point|wait|must)\b",
    re.IGNORECASE,
)
"""An instruction: an imperative verb, or a requirement ("its kind must end in Template")."""
OUTCOME_TIMEOUT = 150.0
"""Seconds for each bad input to be reported (10-20 s in a serial run; the
suite runs on three workers on two cores, so a reconcile can wait its turn a while)."""
XFAIL_TIMEOUT = 5.0
"""Inputs of a known bug are given less time: the rest of the corpus is done by then."""


def says_what_to_fix(message: str, where: str, needle: str | None = None) -> bool:
    text = message.lower()
    return (
        where.lower() in text
        and INSTRUCTION.search(message) is not None
        and (needle is None or needle.lower() in text)
    )


@dataclass
class Created:
    case: BadInput
    cluster: str
    kcp: str
    uid: str = ""
    after: Future[Any] | None = None
    outcome: dict[str, Any] = field(default_factory=dict)


OUTCOMES: dict[str, Created] = {}


def _create(fleet: Fleet, case: BadInput) -> Created:
    namespace = fleet.bad_namespace
    cluster = case.name
    kcp = case.kcp or kcp_name(cluster)
    secrets = case.secrets(namespace, cluster) if case.secrets else []
    spec: dict[str, Any] | None = None
    if case.spec is not None:
        spec = {
            "replicas": 1,
            "version": "v1.34.4",
            "machineTemplate": {
                "spec": {
                    "infrastructureRef": {
                        "apiGroup": groups.INFRASTRUCTURE_GROUP,
                        "kind": groups.LOCAL_MACHINE_TEMPLATE.kind,
                        "name": kcp[:253],
                    }
                }
            },
        }
        case.spec(spec)
    options: dict[str, Any] = {"kcp": kcp, "with_template": case.with_template}
    if spec is not None:
        options["kcp_spec"] = spec
    if case.template is not None:
        options["template"] = case.template(namespace, cluster)
    created = fleet.add_unsimulated_cluster(
        cluster, infrastructure=case.infrastructure, secrets=secrets, **options
    )
    return Created(case, cluster, kcp, uid=created["metadata"]["uid"])


def _after_machine(fleet: Fleet, created: Created) -> None:
    """Wait for the cluster's first Machine, then break it (`case.after_machine`)."""
    assert created.case.after_machine is not None
    wait_for(
        f"a Machine of {created.cluster}",
        lambda: fleet.kube.list(
            groups.MACHINE,
            fleet.bad_namespace,
            label_selector=f"{labels.CLUSTER_NAME_LABEL}={created.cluster}",
        ),
        OUTCOME_TIMEOUT,
    )
    created.case.after_machine(fleet.kube, fleet.bad_namespace, created.cluster)


LONG_CLUSTER = "c" * 63
LONG_KCP = "k" * 253


@pytest.fixture(scope="module")
def corpus(fleet: Fleet, summary: Summary) -> Iterator[dict[str, Created]]:
    started = time.monotonic()
    with ThreadPoolExecutor(4, thread_name_prefix="bad-input") as pool:
        futures = {case.name: pool.submit(_create, fleet, case) for case in CORPUS}
        long_names = pool.submit(
            fleet.add_unsimulated_cluster, LONG_CLUSTER, infrastructure=True, kcp=LONG_KCP
        )
        made = {name: future.result() for name, future in futures.items()}
        long_uid = long_names.result()["metadata"]["uid"]
        made["long-names"] = Created(CORPUS[0], LONG_CLUSTER, LONG_KCP, uid=long_uid)
        print(f"{len(made)} clusters with bad input created in {time.monotonic() - started:.1f}s")
        for created in made.values():
            if created.case.after_machine is not None:
                created.after = pool.submit(_after_machine, fleet, created)
        # On a worker too: it waits for the victim to run, and overlaps with the corpus.
        made["etcd-wrong-ca"] = Created(
            CORPUS[0], "victim", kcp_name("victim"), after=pool.submit(_wrong_etcd_ca, fleet)
        )
        yield made
    lines = [f"{'input':<22} {'condition':<40} event"]
    for name, created in OUTCOMES.items():
        found = created.outcome
        lines.append(
            f"{name:<22} {found.get('condition', '-'):<40} {found.get('event', '-')}\n"
            f"    condition: {found.get('condition_message', '')[:400]}\n"
            f"    event:     {found.get('event_message', '')[:400]}"
        )
    print("\n".join(lines))


def _warning_events(fleet: Fleet, namespace: str, uid: str) -> list[dict[str, Any]]:
    return [
        e
        for e in fleet.kube.list(groups.EVENT, namespace)
        if (e.get("involvedObject") or {}).get("uid") == uid and e.get("type") == "Warning"
    ]


def _params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else [],
        )
        for case in CORPUS
    ]


@pytest.mark.parametrize("case", _params())
def test_bad_input_gets_a_condition_and_an_event_that_say_what_to_fix(
    corpus: dict[str, Created], fleet: Fleet, summary: Summary, case: BadInput
) -> None:
    created = corpus[case.name]
    if created.after is not None:
        created.after.result(timeout=OUTCOME_TIMEOUT)
    where = case.where_text(created.cluster, created.kcp)
    namespace = fleet.bad_namespace
    summary.bad_inputs.append(case.name)
    OUTCOMES[case.name] = created

    def reported() -> Any:
        obj = fleet.kube.get(groups.KUBEADM_CONTROL_PLANE, namespace, created.kcp)
        found = condition(obj, case.condition)
        message = str(found.get("message", ""))
        if found.get("status") not in case.statuses or not says_what_to_fix(
            message, where, case.needle
        ):
            return False
        events = [
            e
            for e in _warning_events(fleet, namespace, created.uid)
            if says_what_to_fix(str(e.get("message", "")), where)
        ]
        if not events:
            return False
        created.outcome = {
            "condition": f"{case.condition}={found['status']} ({found.get('reason')})",
            "condition_message": message,
            "event": f"Warning {events[0].get('reason')} x{events[0].get('count', 1)}",
            "event_message": str(events[0].get("message", "")),
        }
        return True

    try:
        wait_for(
            f"{case.name}: a condition and an Event naming {where}",
            reported,
            XFAIL_TIMEOUT if case.xfail else OUTCOME_TIMEOUT,
        )
    except AssertionError:
        obj = fleet.kube.get(groups.KUBEADM_CONTROL_PLANE, namespace, created.kcp) or {}
        conditions = [
            f"{x['type']}={x['status']} {x.get('reason')}: {x.get('message', '')[:300]}"
            for x in (obj.get("status") or {}).get("conditions") or []
        ]
        events = [
            f"{e.get('reason')}: {e.get('message', '')[:300]}"
            for e in _warning_events(fleet, namespace, created.uid)
        ]
        pytest.fail(
            f"{case.name} ({case.what}) not reported as expected.\nconditions: {conditions}\n"
            f"events: {events}"
        )
    assert fleet.kcp.running and fleet.kcp.crashes == [], fleet.kcp.crashes


def test_the_ca_is_never_regenerated_once_machines_exist(
    corpus: dict[str, Created], fleet: Fleet
) -> None:
    """After the cluster CA went bad under running Machines, kcp reports and waits."""
    for name in ("ca-corrupted-later", "ca-deleted-later"):
        created = corpus[name]
        assert created.after is not None
        created.after.result(timeout=OUTCOME_TIMEOUT)
    time.sleep(2)
    corrupted = fleet.kube.get(groups.SECRET, fleet.bad_namespace, "ca-corrupted-later-ca")
    assert corrupted is not None
    assert base64.b64decode(corrupted["data"]["tls.crt"]) == b"garbage, not a certificate"
    assert fleet.kube.get(groups.SECRET, fleet.bad_namespace, "ca-deleted-later-ca") is None


def test_the_controller_kept_running_and_the_healthy_cluster_kept_reconciling(
    corpus: dict[str, Created], fleet: Fleet
) -> None:
    assert fleet.kcp.running, fleet.kcp.tail()
    assert fleet.kcp.crashes == []
    fleet.wait_available("bystander", 1, timeout=180)
    generation = fleet.touch("bystander")
    took = fleet.observed("bystander", generation, 10)
    print(f"bystander observed a change in {took:.1f}s with {len(corpus)} broken clusters around")


def test_names_at_the_length_limit_are_reconciled(corpus: dict[str, Created], fleet: Fleet) -> None:
    """A 63-character Cluster name and a 253-character KubeadmControlPlane name work."""
    cluster, kcp = LONG_CLUSTER, LONG_KCP
    machines = wait_for(
        "a Machine of the long-named cluster",
        lambda: fleet.kube.list(
            groups.MACHINE,
            fleet.bad_namespace,
            label_selector=f"{labels.CLUSTER_NAME_LABEL}={cluster}",
        ),
        OUTCOME_TIMEOUT,
    )
    machine = machines[0]
    assert len(machine["metadata"]["name"]) <= 63
    assert machine["metadata"]["labels"][labels.MACHINE_CONTROL_PLANE_NAME_LABEL].startswith(
        "hash_"
    )
    for suffix in ("ca", "etcd", "proxy", "sa", "kubeconfig"):
        assert fleet.kube.get(groups.SECRET, fleet.bad_namespace, f"{cluster}-{suffix}")
    obj = wait_for(
        "the long-named control plane's status",
        lambda: (
            (o := fleet.kube.get(groups.KUBEADM_CONTROL_PLANE, fleet.bad_namespace, kcp))
            and condition(o, c.CERTIFICATES_AVAILABLE).get("status") == c.TRUE
            and o
        ),
        30,
    )
    assert obj["metadata"]["uid"] == corpus["long-names"].uid


@pytest.mark.parametrize("case", REJECTED, ids=lambda case: case.name)
def test_input_the_api_server_refuses_names_the_field(
    fleet: Fleet, summary: Summary, case: Any
) -> None:
    resource, obj = case.build(fleet.bad_namespace)
    with pytest.raises(ApiError) as refused:
        fleet.kube.create(resource, fleet.bad_namespace, obj)
    assert refused.value.status in (400, 413, 422), refused.value
    assert case.needle.lower() in str(refused.value).lower(), refused.value
    summary.admission_rejected.append(case.name)
    print(f"{case.name}: {refused.value.status} {str(refused.value)[:300]}")


def _wrong_etcd_ca(fleet: Fleet) -> dict[str, Any]:
    """Give the running victim's `-etcd` Secret another (valid) CA; then its own back."""
    cluster = "victim"
    fleet.wait_available(cluster, 1, timeout=180)
    original = fleet.kube.get(groups.SECRET, fleet.namespace, f"{cluster}-etcd")
    assert original is not None
    other = certs.key_pair_to_secret_data(
        certs.new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")
    )
    fleet.kube.merge_patch(
        groups.SECRET,
        fleet.namespace,
        f"{cluster}-etcd",
        {"data": {k: base64.b64encode(v).decode() for k, v in other.items()}},
    )
    try:
        fleet.touch(cluster)

        def reported() -> Any:
            found = condition(fleet.kcp_object(cluster), c.ETCD_CLUSTER_HEALTHY)
            return found if found.get("status") in (c.FALSE, c.UNKNOWN) else False

        found = wait_for("the wrong etcd CA to be reported", reported, 60)
        uid = (fleet.kcp_object(cluster) or {})["metadata"]["uid"]
        events = wait_for(
            "a Warning Event about the wrong etcd CA",
            lambda: _warning_events(fleet, fleet.namespace, uid),
            60,
        )
    finally:
        with contextlib.suppress(ApiError):
            fleet.kube.merge_patch(
                groups.SECRET, fleet.namespace, f"{cluster}-etcd", {"data": original["data"]}
            )
    fleet.touch(cluster)
    fleet.wait_available(cluster, 1, timeout=90)
    return {"condition": found, "events": events, "secret": f"{fleet.namespace}/{cluster}-etcd"}


def test_a_wrong_etcd_ca_on_a_running_cluster_is_reported_and_recovered(
    corpus: dict[str, Created], summary: Summary
) -> None:
    """The server's certificate is refused, the user told to check the `-etcd` Secret."""
    experiment = corpus["etcd-wrong-ca"].after
    assert experiment is not None
    outcome: dict[str, Any] = experiment.result(timeout=300)
    summary.bad_inputs.append("etcd-wrong-ca")
    found = outcome["condition"]
    message = str(found.get("message", ""))
    print(f"wrong etcd CA: EtcdClusterHealthy={found['status']}: {message}")
    print(f"events: {[(e.get('reason'), e.get('message', '')[:300]) for e in outcome['events']]}")
    assert kcp_says_tls(message), found
    assert f"check Secret {outcome['secret']} against" in message, "names no Secret"
    assert outcome["events"]


def test_broken_clusters_can_be_deleted(fleet: Fleet, summary: Summary) -> None:
    """Every bad-input control plane goes away when deleted (and stops costing reconciles)."""
    namespace = fleet.bad_namespace
    started = time.monotonic()
    for resource in (groups.KUBEADM_CONTROL_PLANE, groups.CLUSTER):
        for obj in fleet.kube.list(resource, namespace):
            with contextlib.suppress(ApiError):
                fleet.kube.delete(resource, namespace, obj["metadata"]["name"])
    left = wait_for(
        "every bad-input KubeadmControlPlane to be gone",
        lambda: not fleet.kube.list(groups.KUBEADM_CONTROL_PLANE, namespace) or None,
        90,
        interval=1.0,
    )
    assert left
    took = time.monotonic() - started
    summary.notes.append(f"broken clusters:      all deleted in {took:.0f}s")
    assert fleet.kcp.running and fleet.kcp.crashes == []


def kcp_says_tls(message: str) -> bool:
    text = message.lower()
    return any(word in text for word in ("certificate", "tls", "ssl", "handshake", "verify"))
