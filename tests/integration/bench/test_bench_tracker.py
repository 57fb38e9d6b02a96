"""`kcp bench tracker` end to end, small: a real etcd, both modes, the JSON it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcp.cli import main

pytestmark = pytest.mark.integration


def test_bench_tracker_writes_the_documented_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tracker.json"
    code = main(["bench", "tracker", "--clusters", "3", "--reconciles", "2", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())["tracker"]
    assert result["clusters"] == 3
    assert result["reconciles"] == 2
    for mode in ("cached", "naive"):
        assert isinstance(result[mode]["keys_generated"], int)
        assert isinstance(result[mode]["cpu_ms_per_reconcile"], float)
        assert result[mode]["cpu_ms_per_reconcile"] > 0
    assert result["cached"]["keys_generated"] == 3  # one per cluster
    assert result["naive"]["keys_generated"] == 3 * 2  # one per reconcile
    assert isinstance(result["cpu_ratio"], float)
    assert result["cpu_ratio"] == pytest.approx(
        result["naive"]["cpu_ms_per_reconcile"] / result["cached"]["cpu_ms_per_reconcile"],
        rel=0.01,
    )
    assert result["cpu_ratio"] > 1
    table = capsys.readouterr().out
    assert "cached" in table and "naive" in table and "CPU ratio" in table


def test_bench_lists_its_suites(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "tracker" in capsys.readouterr().out
