"""`kcp bench versus`: counting from audit and kubelet logs, metrics, and the ratio table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcp.bench.versus_counts import (
    AuditCounter,
    LogRotated,
    PortForwardCounter,
    WorkloadAuditCounter,
    audit_requests,
    contender_requests,
    metric_value,
    port_forwards,
)
from kcp.bench.versus_phases import kind_difference
from kcp.bench.versus_report import (
    FAILED,
    cell,
    comparison_rows,
    render,
    requests_by_kind,
    requests_by_kind_rows,
)


def _event(audit_id: str, user: str, stage: str = "ResponseComplete") -> str:
    return json.dumps(
        {"auditID": audit_id, "stage": stage, "user": {"username": user}, "verb": "get"}
    )


def test_audit_counts_each_request_once_per_user() -> None:
    lines = [
        _event("a", "kcp-bench-kcp", "ResponseStarted"),  # a watch: two stages, one request
        _event("a", "kcp-bench-kcp"),
        _event("b", "kcp-bench-capi"),
        _event("c", "kcp-bench-capi"),
        '{"auditID": "d", "user": {"usern',  # a line cut short
    ]
    assert audit_requests(lines) == {"kcp-bench-kcp": 1, "kcp-bench-capi": 2}


def test_audit_counter_reads_only_whole_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_event("a", "u") + "\n" + _event("b", "u")[:10])
    counter = AuditCounter(log)
    assert counter.totals() == {"u": 1}
    with log.open("a") as file:
        file.write(_event("b", "u")[10:] + "\n" + _event("a", "u", "ResponseStarted") + "\n")
    assert counter.totals() == {"u": 2}


def test_port_forwards_by_pod(tmp_path: Path) -> None:
    lines = [
        'I1207 04:50:01.1   12 main.go:203] "Port-forward" pod="kube-system/etcd-m1" user="x"',
        'I1207 04:50:01.2   12 main.go:203] "Port-forward" pod="kube-system/kube-apiserver-m1"',
        'I1207 04:50:01.3   12 main.go:145] "Forwarding" pod="kube-system/etcd-m1" port=2379',
    ]
    assert port_forwards(lines) == {"etcd": 1, "kube-apiserver": 1}
    log = tmp_path / "kubelet.log"
    log.write_text("\n".join(lines) + "\n")
    counter = PortForwardCounter(lambda: [log, tmp_path / "gone.log"])
    assert counter.poll() == {"etcd": 1, "kube-apiserver": 1}
    assert counter.poll() == {"etcd": 1, "kube-apiserver": 1}


def test_metric_value_filters_by_label() -> None:
    text = "\n".join(
        [
            "# TYPE controller_runtime_reconcile_total counter",
            'controller_runtime_reconcile_total{controller="kubeadmcontrolplane",result="ok"} 7',
            'controller_runtime_reconcile_total{controller="kubeadmcontrolplane",result="x"} 2',
            'controller_runtime_reconcile_total{controller="clustercache",result="ok"} 50',
            "# TYPE go_goroutines gauge",
            "go_goroutines 312",
        ]
    )
    reconciles = "controller_runtime_reconcile_total"
    assert metric_value(text, reconciles, controller="kubeadmcontrolplane") == 9
    assert metric_value(text, "go_goroutines") == 312
    assert metric_value(text, "absent") == 0


def _result(name: str, cores: float, *, failed: bool = False) -> dict[str, object]:
    steady: dict[str, object] = {"error": "boom"} if failed else {"cpu_cores": cores}
    return {"contender": name, "phases": {"steady": steady}, "peak_rss_mib": 100.0}


def test_table_gives_kcp_over_each_other_and_marks_failures() -> None:
    results = [_result("kcp", 0.05), _result("capi", 0.2), _result("capi-tuned", 0.0, failed=True)]
    assert cell(results[2], "steady", "cpu_cores") == FAILED
    rows = {row[0]: row[1:] for row in comparison_rows(results)}
    assert rows["steady: CPU cores"] == ["0.050", "0.200", FAILED, "0.25", "-"]
    assert rows["whole run: peak RSS MiB"] == ["100.0", "100.0", "100.0", "1.00", "1.00"]
    assert "rollout 3 cp: seconds" not in rows  # measured by nobody: no row
    text = render(results, "title")
    assert "kcp/capi" in text.splitlines()[1]
    assert "capi-tuned steady: FAILED: boom" in text


def test_a_failed_part_of_a_phase_is_failed_and_listed() -> None:
    kcp = {
        "contender": "kcp",
        "phases": {
            "rollout_scale_up": {
                "cpu_cores": 0.1,
                "rollout": {"seconds": 90.0, "machines_created": 3},
                "scale_up": {"seconds": 40.0, "machines_created": 2},
            }
        },
    }
    capi = {
        "contender": "capi",
        "phases": {
            "rollout_scale_up": {
                "cpu_cores": 0.2,
                "rollout": {"error": "not finished"},
                "scale_up": {"seconds": 50.0, "machines_created": 2},
            }
        },
    }
    rows = {row[0]: row[1:] for row in comparison_rows([kcp, capi])}
    assert rows["rollout 3 cp: seconds"] == ["90.0", FAILED, "-"]
    assert rows["rollout 3 cp: Machines created"] == ["3", FAILED, "-"]
    assert rows["scale-up 1->3: seconds"] == ["40.0", "50.0", "0.80"]
    assert rows["rollout+scale-up: CPU cores"] == ["0.100", "0.200", "0.50"]
    assert "capi rollout_scale_up.rollout: FAILED: not finished" in render([kcp, capi], "t")


def test_figures_measured_on_a_fleet_not_all_available_are_marked() -> None:
    kcp = {"contender": "kcp", "phases": {"steady": {"cpu_cores": 0.1, "available_error": "v00"}}}
    capi = {"contender": "capi", "phases": {"steady": {"cpu_cores": 0.2}}}
    rows = {row[0]: row[1:] for row in comparison_rows([kcp, capi])}
    assert rows["steady: CPU cores"] == ["0.100!", "0.200", "0.50"]
    assert "kcp steady (figures marked !): v00" in render([kcp, capi], "t")


def _request(audit_id: str, verb: str, resource: str, code: int = 200, **ref: str) -> str:
    return json.dumps(
        {
            "auditID": audit_id,
            "stage": "ResponseComplete",
            "user": {"username": "kcp-bench-kcp"},
            "verb": verb,
            "objectRef": {"resource": resource, **ref},
            "responseStatus": {"code": code},
        }
    )


def test_audit_counter_breaks_requests_down_by_verb_and_resource(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = [
        _request("a", "patch", "kubeadmcontrolplanes", subresource="status"),
        _request("b", "patch", "kubeadmcontrolplanes", 409, subresource="status"),
        _request("c", "create", "events"),
        _request("d", "get", "secrets"),
        json.dumps(
            {
                "auditID": "e",
                "user": {"username": "kcp-bench-kcp"},
                "verb": "get",
                "requestURI": "/apis/cluster.x-k8s.io?timeout=32s",
                "responseStatus": {"code": 200},
            }
        ),
        _event("f", "kcp-bench-capi"),
    ]
    log.write_text("\n".join(lines) + "\n")
    counter = AuditCounter(log)
    total, by_kind = counter.of("kcp-bench-kcp")
    assert total == 5
    assert by_kind == {
        "patch kubeadmcontrolplanes/status": 1,
        "patch kubeadmcontrolplanes/status 409": 1,
        "create events": 1,
        "get secrets": 1,
        "get /apis/cluster.x-k8s.io": 1,
    }
    assert counter.of("nobody") == (0, {})


def test_a_window_keeps_the_requests_it_saw_by_kind() -> None:
    before = {"get secrets": 2, "create events": 1}
    now = {"get secrets": 5, "create events": 1, "patch machines": 1}
    assert kind_difference(now, before) == {"get secrets": 3, "patch machines": 1}


def test_the_report_compares_requests_by_kind_over_every_phase() -> None:
    kcp = {
        "contender": "kcp",
        "phases": {
            "settle": {"requests_by_kind": {"create events": 4, "get secrets": 2}},
            "change": {
                "requests_by_kind": {"create events": 1},
                "workload_requests_by_kind": {"list nodes": 7},
            },
        },
    }
    capi = {"contender": "capi", "phases": {"settle": {"requests_by_kind": {"get secrets": 3}}}}
    assert requests_by_kind(kcp) == {"create events": 5, "get secrets": 2}
    rows = requests_by_kind_rows([kcp, capi])
    assert rows == [["create events", "5", "0", "+5"], ["get secrets", "2", "3", "-1"]]
    text = render([kcp, capi], "t")
    assert "kcp-capi" in text
    assert "workload API requests, all phases" in text
    assert requests_by_kind_rows([kcp, capi], key="workload_requests_by_kind") == [
        ["list nodes", "7", "0", "+7"]
    ]
    assert "FAILED" not in text  # a phase's breakdown is not mistaken for a failed part


def _workload_event(audit_id: str, agent: str, stage: str = "ResponseComplete") -> str:
    return json.dumps(
        {
            "auditID": audit_id,
            "stage": stage,
            "user": {"username": "kubernetes-admin"},
            "userAgent": agent,
            "verb": "get",
            "objectRef": {"resource": "pods", "namespace": "kube-system"},
        }
    )


def test_workload_requests_are_told_apart_by_user_agent(tmp_path: Path) -> None:
    capi_kcp = "kubeadm-control-plane-manager/v1.13.6 (linux/amd64) cluster.x-k8s.io/abc"
    core = "cluster-api-manager/v1.13.6 (linux/amd64) cluster.x-k8s.io/abc"
    first, second = tmp_path / "m1-audit.log", tmp_path / "m2-audit.log"
    first.write_text(
        "\n".join(
            [
                _workload_event("a", capi_kcp, "ResponseStarted"),  # a port-forward: two stages
                _workload_event("a", capi_kcp),
                _workload_event("b", core),
                _workload_event("c", "OpenAPI-Generator/37.0.0/python"),
            ]
        )
        + "\n"
    )
    second.write_text(_workload_event("a", "OpenAPI-Generator/37.0.0/python") + "\n")
    counter = WorkloadAuditCounter(lambda: [first, second, tmp_path / "gone.log"])
    totals = counter.poll()
    assert totals == {
        "kubeadm-control-plane-manager": 1,
        "cluster-api-manager": 1,
        "OpenAPI-Generator": 2,  # audit IDs are per server: the same ID twice is two requests
    }
    assert contender_requests(totals, "capi") == 1
    assert contender_requests(totals, "kcp") == 2
    assert counter.poll() == totals
    assert counter.kinds_of("kcp") == {"get pods": 2}
    assert counter.kinds_of("capi") == {"get pods": 1}


def _paired_result() -> dict[str, object]:
    return {
        "clusters": 10,
        "together": True,
        "steady_seconds": 60.0,
        "fleet": "f",
        "pairs": [
            {"contenders": [_result("kcp", 0.05), _result("capi", 0.2)], "wall_seconds": 300.0},
            {
                "contenders": [_result("kcp", 0.06), _result("capi-tuned", 0.3)],
                "wall_seconds": 310.0,
            },
        ],
    }


def test_three_contenders_run_as_pairs_beside_kcp_unless_all_at_once() -> None:
    from kcp.bench.versus import VersusSettings, _paired
    from kcp.bench.versus_fleet import CONTENDERS

    three = [CONTENDERS[n] for n in ("kcp", "capi", "capi-tuned")]
    assert _paired(VersusSettings(), three)
    assert not _paired(VersusSettings(pairs=False), three)
    assert not _paired(VersusSettings(together=False), three)
    assert not _paired(VersusSettings(), three[:2])  # a pair already


def test_each_pair_has_its_own_table_and_ratios_from_its_own_kcp() -> None:
    from kcp.bench.versus import summary
    from kcp.bench.versus_report import pairs_of, ratios

    result = _paired_result()
    pairs = pairs_of(result)
    assert [[r["contender"] for r in p["contenders"]] for p in pairs] == [
        ["kcp", "capi"],
        ["kcp", "capi-tuned"],
    ]
    assert ratios(pairs[1]["contenders"], "capi-tuned")[0] == ("steady: CPU cores", 0.2)
    text = summary(result)
    assert "the pair kcp + capi;" in text and "the pair kcp + capi-tuned;" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("steady: CPU cores")]
    assert [row[-1] for row in rows] == ["0.25", "0.20"]


def test_a_run_of_all_contenders_is_one_pair() -> None:
    from kcp.bench.versus_report import pairs_of

    contenders = [_result("kcp", 0.05), _result("capi", 0.2)]
    assert pairs_of({"contenders": contenders, "wall_seconds": 1.0}) == [
        {"contenders": contenders, "wall_seconds": 1.0}
    ]


def test_a_rotated_audit_log_is_an_error_not_a_silent_zero(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_event("a", "kcp-bench-kcp") + "\n")
    counter = AuditCounter(log)
    assert counter.of("kcp-bench-kcp")[0] == 1
    log.rename(tmp_path / "audit-2026-12-07T14-00-00.000.log")
    log.write_text(_event("b", "kcp-bench-kcp") + "\n")  # a new file, shorter than counted
    with pytest.raises(LogRotated, match="rotated or truncated"):
        counter.of("kcp-bench-kcp")
