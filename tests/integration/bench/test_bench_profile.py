"""`kcp bench profile`, small: py-spy on a real controller process, warm-up vs steady state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcp.bench import profile
from kcp.bench.environment import BenchEnvironment
from kcp.bench.plot import plot
from kcp.bench.progress import Progress
from kcp.runtime.profiler import find_py_spy
from kcp.testing.controlplane import LocalControlPlane

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed"),
]


@pytest.fixture
def bench_env(control_plane: LocalControlPlane, tmp_path: Path) -> BenchEnvironment:
    return BenchEnvironment(plane=control_plane, work_dir=tmp_path / "work")


def test_profile_finds_key_generation_only_in_the_warm_up(
    bench_env: BenchEnvironment, tmp_path: Path
) -> None:
    settings = profile.ProfileSettings(
        clusters=10, steady_seconds=3, output_dir=tmp_path, output_prefix="t"
    )
    try:
        result = profile.measure(bench_env, settings, Progress(enabled=False))
    except RuntimeError as error:
        if "ptrace" in str(error):
            pytest.skip(str(error))
        raise
    json.dumps(result)

    assert result["clusters"] == 10
    warm, steady = result["warmup"], result["steady"]
    for phase in (warm, steady):
        assert phase["samples"] >= phase["active_samples"] >= phase["keygen_samples"] >= 0
        assert phase["threads_sampled"] > 0
        if phase["active_samples"]:
            assert phase["keygen_share"] == pytest.approx(
                phase["keygen_samples"] / phase["active_samples"], abs=1e-4
            )
    # Ten RSA keys are generated while the clusters connect, none once they are.
    assert warm["keygen_samples"] > 0
    assert steady["keygen_samples"] == 0
    assert result["acceptance"]["no_key_generation_after_warmup"] is True
    assert steady["changes_driven"] > 0

    top = result["top_functions"]
    assert len(top) <= 10
    assert all(entry["self_samples"] > 0 for entry in top)
    assert [e["self_samples"] for e in top] == sorted(
        (e["self_samples"] for e in top), reverse=True
    )
    for name in ("warmup", "steady"):
        document = json.loads(Path(result["speedscope"][name]).read_text())
        assert document["profiles"] and document["shared"]["frames"]
        assert Path(result["speedscope"][name]).parent == tmp_path

    assert "key generation" in profile.summary(result)
    png = plot({"profile": result}, tmp_path / "profile.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
