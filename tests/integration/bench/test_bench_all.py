"""`kcp bench all`: the command line, the combined JSON, the plot, a failing scenario."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from kcp.bench.progress import Progress
from kcp.bench.runner import Scenario, run_scenarios
from kcp.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PNG = b"\x89PNG\r\n\x1a\n"


def test_bench_all_is_a_suite_with_the_documented_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "all", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--json", "--plot", "--quick", "--only", "--controller"):
        assert flag in text
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    suites = capsys.readouterr().out
    for suite in ("tracker", "memory", "scale", "profile", "all"):
        assert suite in suites


def test_a_failing_scenario_is_recorded_and_the_others_still_run(tmp_path: Path) -> None:
    def fine(env: Any, progress: Progress) -> dict[str, Any]:
        return {"value": 1}

    def broken(env: Any, progress: Progress) -> dict[str, Any]:
        raise RuntimeError("no etcd today")

    args = argparse.Namespace(json=tmp_path / "out.json", plot=tmp_path / "out.png", quick=True)
    code = run_scenarios(
        args,
        [
            Scenario("broken", broken, lambda r: "unused", needs_cluster=False),
            Scenario("fine", fine, lambda r: f"fine {r['value']}", needs_cluster=False),
        ],
    )
    assert code == 1
    results = json.loads(args.json.read_text())
    assert "no etcd today" in results["broken"]["error"]
    assert results["fine"]["value"] == 1
    assert results["environment"]["quick"] is True
    assert results["environment"]["cpus"] > 0
    assert args.plot.read_bytes()[:8] == PNG


def test_bench_all_quick_memory_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(
        ["bench", "all", "--quick", "--only", "memory", "--json", str(out), "--plot", str(png)]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) == {"environment", "memory"}
    large = results["memory"]["large"]
    assert large["secrets"] == 100 and large["secrets_mib"] == pytest.approx(100.0)
    growth = {m: v["peak_rss_growth_mib"] for m, v in large["modes"].items()}
    assert growth["full_paginated"] > growth["metadata_streaming"] >= 0
    assert png.read_bytes()[:8] == PNG
    table = capsys.readouterr().out
    assert "memory: controller peak RSS" in table and "acceptance" in table
