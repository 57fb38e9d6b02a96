"""The benchmark picture: the versus panels, from results shaped as `kcp bench versus` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from kcp.bench.plot import plot

matplotlib.use("Agg")


def _contender(name: str, seconds: float, cpu: float) -> dict[str, Any]:
    return {
        "contender": name,
        "phases": {
            "settle": {"seconds_to_available": seconds, "cpu_cores": cpu},
            "steady": {"cpu_cores": cpu / 10},
        },
        "peak_rss_mib": 100.0,
    }


def _versus(shared: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "clusters": 10,
        "contenders": [_contender("kcp", 80.0, 0.05), _contender("capi", 100.0, 0.06)],
    }
    if shared:
        result["shared"] = {
            "points": [
                {
                    "clusters": size,
                    "contenders": [
                        _contender("kcp", size / 10, 0.5),
                        _contender("capi", size / 8, 0.7),
                    ],
                }
                for size in (100, 1000)
            ]
        }
    return result


def _panel_titles(results: dict[str, Any], path: Path, monkeypatch: Any) -> list[str]:
    import matplotlib.pyplot as plt

    titles: list[str] = []
    close = plt.close

    def keep_titles(figure: Any = None) -> None:
        titles.extend(ax.get_title() for ax in figure.axes if ax.get_title())
        close(figure)

    monkeypatch.setattr(plt, "close", keep_titles)
    plot(results, path)
    assert path.stat().st_size > 0
    return titles


def test_the_shared_fleet_gets_a_panel_of_its_own(tmp_path: Path, monkeypatch: Any) -> None:
    titles = _panel_titles({"versus": _versus(shared=True)}, tmp_path / "v.png", monkeypatch)
    assert titles == [
        "versus: 10 clusters on real simulated machines",
        "versus: the cheap shared fleet (kcp / capi)",
    ]


def test_no_shared_panel_without_shared_sizes(tmp_path: Path, monkeypatch: Any) -> None:
    titles = _panel_titles({"versus": _versus(shared=False)}, tmp_path / "v.png", monkeypatch)
    assert titles == ["versus: 10 clusters on real simulated machines"]
