"""`kcp bench tracker` end to end, small: a real etcd, every mode, the JSON it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcp.bench.environment import BenchEnvironment
from kcp.bench.tracker import run_benchmark
from kcp.cli import main
from kcp.testing.controlplane import LocalControlPlane

pytestmark = pytest.mark.integration


def test_bench_tracker_writes_the_documented_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tracker.json"
    code = main(
        [
            "bench",
            "tracker",
            "--clusters=3",
            "--reconciles=2",
            "--etcd-access=direct",
            "--json",
            str(out),
        ]
    )
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


def test_bench_tracker_through_port_forwards_keeps_its_tunnels(
    control_plane: LocalControlPlane, tmp_path: Path
) -> None:
    """Every mode against one member, directly and through port-forwards via the API server:
    kept tunnels are opened at warm-up only; Cluster API's pattern opens one per reconcile
    and costs more CPU than keeping them."""
    env = BenchEnvironment(plane=control_plane, work_dir=tmp_path / "work")
    result = run_benchmark(3, 2, key_algorithm="ecdsa-p256", etcd_access="both", env=env)
    found = result.as_dict()["tracker"]
    assert found["etcd_access"] == "both"
    for mode in ("cached", "naive", "kept", "capi"):
        assert found[mode]["cpu_ms_per_reconcile"] > 0, mode
    assert found["kept"]["keys_generated"] == found["capi"]["keys_generated"] == 3
    assert found["kept"]["tunnels_opened"] == 0  # opened at warm-up, reused since
    assert found["capi"]["tunnels_opened"] == 3 * 2  # one per reconcile and member
    assert found["capi_over_kept"] > 1
    assert found["kept_over_direct"] > 0
    for mode in ("cached", "kept"):  # RSS per kept connection (page-sized steps: any sign)
        assert isinstance(found[mode]["kib_per_connection"], float), mode
    assert "kept_over_direct_memory" in found
    table = result.table()
    assert "capi/kept" in table and "kept/direct" in table
    assert "RSS per kept connection" in table
