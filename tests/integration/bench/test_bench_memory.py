"""`kcp bench memory`, small: real Secrets in the real API server, one fresh child per mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kcp.bench import memory
from kcp.bench.environment import BenchEnvironment
from kcp.bench.plot import plot
from kcp.bench.progress import Progress
from kcp.testing.controlplane import LocalControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def bench_env(control_plane: LocalControlPlane, tmp_path: Path) -> BenchEnvironment:
    return BenchEnvironment(plane=control_plane, work_dir=tmp_path / "work")


def test_memory_compares_metadata_streaming_with_full_paginated(
    bench_env: BenchEnvironment, tmp_path: Path
) -> None:
    settings = memory.MemorySettings(
        large_count=8,
        small_count=100,
        modes=(memory.PRODUCT_MODE, memory.BASELINE_MODE),
        child_timeout=120,
    )
    result = memory.measure(bench_env, settings, Progress(enabled=False))
    json.dumps(result)  # the JSON the runner writes
    assert result["peak_reset_after_warmup"] is True

    large = result["large"]
    assert large["secrets"] == 8
    assert large["bytes_per_secret"] == 1024 * 1024
    for data_set in ("large", "small"):
        modes = result[data_set]["modes"]
        assert set(modes) == {"metadata_streaming", "full_paginated"}
        product, baseline = modes["metadata_streaming"], modes["full_paginated"]
        for mode in (product, baseline):
            assert mode["objects"] == result[data_set]["secrets"]
            assert mode["baseline_peak_rss_mib"] > 0
            # The peak was reset after the warm-up: the measured phase's peak is its own.
            assert mode["peak_reset"] is True
            assert mode["warmup_peak_rss_mib"] > 0
            assert mode["peak_rss_mib"] >= mode["baseline_peak_rss_mib"]
            assert mode["peak_rss_growth_mib"] >= 0
            assert mode["threads"] > 0
        # What each mode really did: a streaming list of metadata, a paginated list of objects.
        assert product["list_mode_used"] == "streaming"
        assert "PartialObjectMetadata" in product["accept_header"]
        assert product["data_bytes_in_cache"] == 0
        assert baseline["list_mode_used"] == "paginated"
        assert baseline["data_bytes_in_cache"] > 0
        ratio = result[data_set]["growth_ratio_full_over_metadata"]
        expected = baseline["peak_rss_growth_mib"] / max(
            product["peak_rss_growth_mib"], memory.GROWTH_RESOLUTION_MIB
        )
        assert ratio == pytest.approx(expected, rel=0.01, abs=0.01)

    # 8 MiB of Secrets: caching whole objects costs more than their size, metadata far less.
    product, baseline = large["modes"]["metadata_streaming"], large["modes"]["full_paginated"]
    assert baseline["peak_rss_growth_mib"] > large["secrets_mib"]
    assert product["peak_rss_growth_mib"] < baseline["peak_rss_growth_mib"]
    acceptance: dict[str, Any] = result["acceptance"]
    assert acceptance["full_growth_over_secrets_size"] is True
    assert acceptance["streaming_list_used"] is True

    text = memory.summary(result)
    assert "metadata_streaming" in text and "full_paginated" in text and "growth" in text

    png = plot({"memory": result}, tmp_path / "memory.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
