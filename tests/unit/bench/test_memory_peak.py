"""`kcp bench memory` reports the measured phase's own peak RSS, not the warm-up's."""

from __future__ import annotations

import mmap
from typing import Any

import pytest

from kcp.bench import memory, procstat
from kcp.bench.memory_child import run_phases
from kcp.bench.procstat import MIB

WARMUP_BYTES = 256 * MIB
MEASURED_BYTES = 16 * MIB


def _touch_fresh_pages(size: int) -> int:
    """Make `size` bytes resident in pages of their own, then give them back. An anonymous
    map, not a bytes object: malloc could serve that from heap an earlier test in this
    worker left resident, and the RSS would not move."""
    with mmap.mmap(-1, size) as block:
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        return size


def _warm_up() -> int:
    return _touch_fresh_pages(WARMUP_BYTES)


def _measured() -> int:
    return _touch_fresh_pages(MEASURED_BYTES)


def test_a_big_warm_up_does_not_hide_a_small_measured_peak() -> None:
    if not procstat.reset_peak():
        pytest.skip("this kernel refuses /proc/self/clear_refs: the peak cannot be reset")
    _, _, peaks = run_phases(_warm_up, _measured)

    assert peaks.peak_reset is True
    # The warm-up's block shows in its own peak only.
    assert peaks.warmup_peak_rss - peaks.start.rss > WARMUP_BYTES // 2
    # The measured phase's peak is its 16 MiB over where it started, not the warm-up's 256.
    growth = peaks.peak_rss - peaks.start.peak_rss
    assert MEASURED_BYTES // 2 < growth < 4 * MEASURED_BYTES
    assert peaks.peak_rss < peaks.warmup_peak_rss - WARMUP_BYTES // 2


def test_a_refused_reset_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procstat, "reset_peak", lambda pid="self": False)
    _, _, peaks = run_phases(_warm_up, _measured)

    assert peaks.peak_reset is False
    assert peaks.peak_rss >= peaks.warmup_peak_rss  # the warm-up's peak, as the output says

    mode: dict[str, Any] = {
        "list_mode_used": "streaming",
        "warmup_peak_rss_mib": 300.0,
        "baseline_peak_rss_mib": 300.0,
        "peak_rss_mib": 300.0,
        "peak_rss_growth_mib": 0.0,
        "retained_rss_growth_mib": 0.0,
        "sync_seconds": 0.1,
        "peak_reset": False,
    }
    data_set = {"secrets": 1, "bytes_per_secret": 1024, "modes": {memory.PRODUCT_MODE: mode}}
    result = {"large": data_set, "small": data_set, "peak_reset_after_warmup": False}
    assert "peak NOT reset after the warm-up" in memory.summary(result)
    assert "NOT reset" not in memory.summary({**result, "peak_reset_after_warmup": True})
