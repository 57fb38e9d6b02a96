"""CpuGauge: readings over windows, unknown after a quiet spell, headroom below the limit."""

from __future__ import annotations

from kcp.runtime.cpugauge import CpuGauge


class FakeTimes:
    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 5.0

    def advance(self, seconds: float, cores: float) -> None:
        self.now += seconds
        self.cpu += seconds * cores


def gauge(times: FakeTimes) -> CpuGauge:
    return CpuGauge(busy_cores=0.75, window=0.25, clock=lambda: times.now, cpu=lambda: times.cpu)


def test_a_reading_is_the_cores_used_over_the_last_window() -> None:
    times = FakeTimes()
    g = gauge(times)
    assert g.cores is None and not g.has_headroom()  # nothing measured yet
    times.advance(0.3, 0.5)
    assert g.has_headroom() and g.cores is not None and abs(g.cores - 0.5) < 1e-9
    times.advance(0.3, 0.9)
    assert not g.has_headroom()


def test_a_window_too_short_keeps_the_last_reading() -> None:
    times = FakeTimes()
    g = gauge(times)
    times.advance(0.3, 0.2)
    g.update()
    times.advance(0.1, 1.0)  # busy, but not for a whole window yet
    assert g.has_headroom()
    times.advance(0.2, 1.0)
    assert not g.has_headroom()


def test_after_a_quiet_spell_the_first_look_is_unknown() -> None:
    times = FakeTimes()
    g = gauge(times)
    times.advance(0.3, 0.1)
    assert g.has_headroom()
    times.advance(60.0, 0.01)  # nobody looked for a minute
    assert not g.has_headroom() and g.cores is None
    times.advance(0.3, 0.1)
    assert g.has_headroom()
