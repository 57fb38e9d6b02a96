"""Every default of `kcp run` is its option's, and the docs quote the current one.

The options dataclasses (`ManagerOptions`, `TrackerOptions`, `ReconcilerOptions`)
hold the defaults; a flag whose default differs from its option's, a flag that
sets no option, or a README/docs sentence quoting a stale default fails here.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
from typing import Any

import pytest

import kcp.controlplane.cli as run_cli
from kcp.controlplane.reconciler import ReconcilerOptions
from kcp.runtime.options import ManagerOptions, parse_duration
from kcp.tracker import TrackerOptions

ROOT = pathlib.Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

WITHOUT_OPTION = {"help", "kubeconfig", "v", "log_level", "log_format"}
"""Flags that set no options field: `--kubeconfig` defaults to $KUBECONFIG; the logging
flags and their defaults are `kcp.runtime.logging`'s alone."""


def _run_flags() -> dict[str, argparse.Action]:
    """`kcp run`'s flags by their long name."""
    parser = argparse.ArgumentParser()
    run_cli.add_arguments(parser)
    return {
        next(o for o in action.option_strings if o.startswith("--")): action
        for action in parser._actions
    }


def _option_defaults() -> dict[str, Any]:
    """The default each `kcp run` flag should have, by argparse `dest`."""
    found: dict[str, Any] = {spec.name: spec.default for spec in dataclasses.fields(ManagerOptions)}
    tracker = TrackerOptions()
    found.update({dest: getattr(tracker, name) for dest, name in run_cli.TRACKER_FLAGS.items()})
    found["etcd_access"] = ReconcilerOptions().etcd_access
    found["health_requeue_duration"] = ReconcilerOptions().health_requeue
    return found


def test_every_flag_default_is_its_options_default() -> None:
    expected = _option_defaults()
    for flag, action in _run_flags().items():
        if action.dest in WITHOUT_OPTION:
            continue
        assert action.dest in expected, f"{flag} sets no options field: add it to one"
        assert action.default == expected[action.dest], (
            f"{flag} defaults to {action.default!r}, its option to {expected[action.dest]!r}"
        )


def test_every_tracker_flag_names_a_tracker_option() -> None:
    names = {spec.name for spec in dataclasses.fields(TrackerOptions)}
    assert set(run_cli.TRACKER_FLAGS.values()) <= names


def _same(action: argparse.Action, quoted: str) -> bool:
    """Whether `quoted` (as a doc writes it: `10s`, `10m`, `:9440`, `gateway`) is the
    flag's default."""
    if action.type is parse_duration or action.metavar == "DURATION":
        return bool(parse_duration(quoted) == action.default)
    if isinstance(action.default, bool | int | float):
        return float(quoted) == action.default
    return quoted == str(action.default)


QUOTES = [
    # "`--sync-period` (10m)", "`--etcd-transport` (`gateway`: ...", "(4096: ..." (not words)
    re.compile(r"`(?P<flag>--[a-z0-9-]+)`\s+\((?P<value>`[^`]+`|[\d:][:\w.]*)"),
    # "`--etcd-access=port-forward`, the default"
    re.compile(r"`(?P<flag>--[a-z0-9-]+)=(?P<value>[^`]+)`,? the default"),
    # "(`--etcd-transport`, default `gateway`)"
    re.compile(r"`(?P<flag>--[a-z0-9-]+)`,? default `(?P<value>[^`]+)`"),
]


def _quoted_defaults() -> list[tuple[str, str, str]]:
    """(where, flag, value) for every sentence in the docs that quotes a flag's default."""
    flags = _run_flags()
    found = []
    for path in DOCS:
        text = path.read_text()
        for pattern in QUOTES:
            for match in pattern.finditer(text):
                flag, value = match["flag"], match["value"].strip("`").rstrip(":")
                if flag not in flags:
                    continue  # another command's flag
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", flag, value))
    return found


def test_docs_quote_the_current_defaults() -> None:
    flags = _run_flags()
    quoted = _quoted_defaults()
    # README's flag list and docs/performance.md quote these; fewer means a pattern rotted.
    assert {flag for _, flag, _ in quoted} >= {
        "--kubeadmcontrolplane-concurrency",
        "--sync-period",
        "--health-addr",
        "--etcd-dial-timeout-duration",
        "--etcd-call-timeout-duration",
        "--etcd-transport",
        "--etcd-access",
        "--etcd-connections-max",
    }
    stale = [
        f"{where}: {flag} quoted as {value!r}, default {flags[flag].default!r}"
        for where, flag, value in quoted
        if not _same(flags[flag], value)
    ]
    assert not stale


def test_the_performance_note_quotes_the_default_workers_and_client_rate() -> None:
    text = (ROOT / "docs" / "performance.md").read_text()
    match = re.search(r"`kcp run` \((\d+) workers, client QPS (\d+)/burst\s+(\d+)\)", text)
    assert match, "docs/performance.md no longer says kcp run's workers and client rate"
    defaults = ManagerOptions()
    assert tuple(int(v) for v in match.groups()) == (
        defaults.concurrency,
        defaults.kube_api_qps,
        defaults.kube_api_burst,
    )


@pytest.mark.parametrize("flag", ["--etcd-transport", "--etcd-connections-max"])
def test_help_says_the_default(flag: str) -> None:
    action = _run_flags()[flag]
    assert f"(default: {action.default})" in (action.help or "")


def test_docs_quote_the_trackers_current_defaults() -> None:
    """The tracker settings the README and docs/performance.md describe kcp running with."""
    options = TrackerOptions()
    readme = (ROOT / "README.md").read_text()
    performance = " ".join((ROOT / "docs" / "performance.md").read_text().split())
    validity = re.search(r"short-lived \((\d+) h\) client certificates", readme)
    assert validity, "README.md no longer says how long client certificates live"
    assert int(validity[1]) * 3600 == options.certificate_validity.total_seconds()
    probes = re.findall(r"API server probes every (\d+) s, etcd probes every (\d+) s", performance)
    probes += [
        (api, etcd)
        for etcd, api in re.findall(
            r"etcd probed every (\d+) s \(API server every (\d+) s", performance
        )
    ]
    assert len(probes) == 2, "docs/performance.md no longer says how often clusters are probed"
    for api, etcd in probes:
        assert (float(api), float(etcd)) == (options.probe_interval, options.etcd_probe_interval)
