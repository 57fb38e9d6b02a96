"""Summaries of sampled stacks: py-spy's collapsed stacks and `go tool pprof -traces`."""

from __future__ import annotations

import pytest

from kcp.bench.stacks import (
    is_python_wait,
    merge,
    package_of,
    parse_collapsed,
    parse_pprof_traces,
    summarize,
)
from kcp.bench.versus_profile import render

_WORKER = "_bootstrap (threading.py:995);run (kcp/runtime/workers.py:40)"
_RECONCILE = f"{_WORKER};reconcile (kcp/controlplane/reconciler.py:88)"
COLLAPSED = "\n".join(
    [
        f"{_RECONCILE};loads (json/__init__.py:346) 6",
        f"{_RECONCILE};request (urllib3/connectionpool.py:500);recv_into (ssl.py:1300) 5",
        f"{_RECONCILE};loads (json/__init__.py:350) 2",
        f"{_WORKER};reconcile (kcp/controlplane/reconciler.py:91) 2",
        "not a stack line",
    ]
)

TRACES = """\
File: capi-kubeadm-control-plane
Type: cpu
Duration: 20s, Total samples = 60ms ( 0.3%)
-----------+-------------------------------------------------------
      30ms   encoding/json.(*decodeState).object
             encoding/json.Unmarshal
             k8s.io/client-go/rest.Result.Into
             runtime.goexit
-----------+-------------------------------------------------------
       key:  value
      20ms   runtime.memmove (inline)
             encoding/json.(*decodeState).object
             encoding/json.Unmarshal
             k8s.io/client-go/rest.Result.Into
             runtime.goexit
-----------+-------------------------------------------------------
     0.01s   runtime.futex
             runtime.goexit
-----------+-------------------------------------------------------
"""


def test_collapsed_stacks_sum_by_function_whatever_the_line() -> None:
    stacks = parse_collapsed(COLLAPSED)
    json_stack = (
        "_bootstrap (threading.py)",
        "run (kcp/runtime/workers.py)",
        "reconcile (kcp/controlplane/reconciler.py)",
        "loads (json/__init__.py)",
    )
    assert stacks[json_stack] == 8
    assert sum(stacks.values()) == 15


def test_known_waits_count_in_the_total_but_not_in_shares() -> None:
    summary = summarize(parse_collapsed(COLLAPSED), waiting=is_python_wait)
    assert (summary.total, summary.active) == (15, 10)
    function, self_share, cum_share = summary.by_self[0]
    assert function == "loads (json/__init__.py)"
    assert (self_share, cum_share) == (0.8, 0.8)
    reconcile = next(r for r in summary.by_cumulative if r[0].startswith("reconcile"))
    assert reconcile[1:] == (0.2, 1.0)


def test_a_recursive_function_counts_once_per_stack_in_cumulative() -> None:
    summary = summarize({("a", "b", "a", "b"): 3.0, ("a", "c"): 1.0})
    cumulative = {f: c for f, _s, c in summary.by_cumulative}
    assert cumulative == {"a": 1.0, "b": 0.75, "c": 0.25}
    assert summary.by_self[0] == ("b", 0.75, 0.75)


def test_pprof_traces_become_seconds_by_stack_root_first() -> None:
    stacks = parse_pprof_traces(TRACES)
    assert stacks == {
        (
            "runtime.goexit",
            "k8s.io/client-go/rest.Result.Into",
            "encoding/json.Unmarshal",
            "encoding/json.(*decodeState).object",
        ): pytest.approx(0.03),
        (
            "runtime.goexit",
            "k8s.io/client-go/rest.Result.Into",
            "encoding/json.Unmarshal",
            "encoding/json.(*decodeState).object",
            "runtime.memmove",
        ): pytest.approx(0.02),
        ("runtime.goexit", "runtime.futex"): pytest.approx(0.01),
    }
    summary = summarize(stacks)
    assert summary.total == pytest.approx(0.06)
    assert [p for p, _ in summary.by_package] == ["encoding/json", "runtime"]
    assert summary.by_package[0][1] == pytest.approx(0.5)


def test_merge_adds_the_same_stack() -> None:
    assert merge([{("a",): 1.0}, {("a",): 2.0, ("b",): 1.0}]) == {("a",): 3.0, ("b",): 1.0}


PACKAGES = {
    "reconcile (kcp/controlplane/reconciler.py)": "kcp.controlplane",
    "main (kcp/__main__.py)": "kcp",
    "urlopen (urllib3/connectionpool.py)": "urllib3",
    "run (threading.py)": "threading",
    "_call (<frozen importlib._bootstrap>)": "frozen",
    "k8s.io/client-go/tools/cache.(*Reflector).watch": "k8s.io/client-go/tools/cache",
    "runtime.mallocgc": "runtime",
    "sigs.k8s.io/cluster-api/util/secret.Lookup": "sigs.k8s.io/cluster-api/util/secret",
}
"""A frame (Python: `name (file)`; Go: pprof's function name) and its package."""


def test_a_frame_is_grouped_under_its_package() -> None:
    assert {frame: package_of(frame) for frame in PACKAGES} == PACKAGES


def test_the_printed_profile_names_top_functions_and_failures() -> None:
    summary = summarize(parse_collapsed(COLLAPSED), top=2, waiting=is_python_wait).as_dict()
    result = {
        "contender": "kcp",
        "phases": {"settle": {"window_seconds": 100.0, "cpu_cores": 0.5}},
        "profiles": {
            "settle": {
                "profiler": "py-spy",
                "slices": 3,
                "slice_seconds": 10,
                "recorded_seconds": 30.0,
                "file": "p/kcp.settle.collapsed.txt",
                "errors": ["HTTP Error 503"],
                "error_count": 1,
                "summary": summary,
            },
            "rollout_scale_up": {"profiler": "py-spy", "slices": 0},
        },
    }
    text = render([result])
    assert "profile kcp, settle" in text
    assert "50.0 CPU s by /proc" in text
    assert "loads (json/__init__.py)" in text
    assert "1 slice requests failed, the first: HTTP Error 503" in text
    assert "kcp rollout_scale_up" not in text
    assert "no summary: no profile recorded" in text
