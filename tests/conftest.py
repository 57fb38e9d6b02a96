"""Shared fixtures: one real local control plane per test session, a namespace per test.

`make test` runs the suite on a few pytest-xdist workers: each worker has its own
session (so its own local control plane), and this file's scheduler sends the tests
sharing a module- or package-scoped fleet to one worker, in order, the longest
groups first.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kcp.testing.controlplane import ControlPlaneOptions, LocalControlPlane


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="also run long soak tests")


FIRST = (
    "tests/integration/controlplane/test_lifecycle.py",
    "tests/reliability",
    "tests/integration/controlplane/test_controlplane.py",
    "tests/integration/test_dev.py",
    "tests/integration/sim/",
    "tests/integration/deploy/test_rbac.py",
    "tests/reliability/test_tracker_leaks.py",
)
"""Where the longest groups are (several minutes each): started first, so that they run
side by side and the short ones fill in around them."""
RELIABILITY_SUMMARY = "reliability_summary"
_worker_summaries: list[dict[str, Any]] = []
OWN_GROUP = ("tests/reliability/test_tracker_leaks.py",)
"""Reliability modules in a group of their own: the tracker's leak loop uses no fleet. (A
fleet of its own for the fault module, to run the package's halves side by side, was tried:
on 2 cores the second fleet's processes compete with every other group for the CPU.)"""


def _group(nodeid: str) -> str:
    """One fleet, one group: the reliability package shares its fleet; a module its own."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/reliability/") and path not in OWN_GROUP:
        return "tests/reliability"
    return path


def _rank(item: pytest.Item) -> int:
    """Where the item's group is in `FIRST` (a group's name, or a folder ending in /)."""
    group = _group(item.nodeid)
    return next(
        (
            i
            for i, first in enumerate(FIRST)
            if group == first or (first.endswith("/") and group.startswith(first))
        ),
        len(FIRST),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_soak = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords and not config.getoption("--soak"):
            item.add_marker(skip_soak)
    items.sort(key=_rank)  # stable: the order inside each group is kept


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole groups to a worker, in collection order (xdist's own `loadgroup` needs marks
    it renames test ids for, which pytest 9 no longer allows)."""
    from xdist.scheduler import LoadScopeScheduling

    class FleetScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return FleetScheduling(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Under xdist: keep what a worker's reliability session summarised, to print it here."""
    part = (getattr(node, "workeroutput", None) or {}).get(RELIABILITY_SUMMARY)
    if part:
        _worker_summaries.append(part)


def _own_summary() -> dict[str, Any] | None:
    """This process's reliability summary, if any test added to it."""
    module = sys.modules.get("tests.reliability.summary")
    if module is None or module.SUMMARY.empty():
        return None
    return dict(module.SUMMARY.finished())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the summary to the controller (a worker's terminal summary
    is never shown)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    part = _own_summary()
    if workeroutput is not None and part is not None:
        workeroutput[RELIABILITY_SUMMARY] = part


def pytest_terminal_summary(terminalreporter: Any) -> None:
    own = _own_summary()
    parts = _worker_summaries or ([own] if own else [])
    if parts:
        from tests.reliability.summary import Summary

        terminalreporter.section("reliability summary")
        for line in Summary.merged(parts).lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[LocalControlPlane]:
    """A real kube-apiserver (WatchList gate on) + etcd with every CRD installed."""
    with LocalControlPlane(ControlPlaneOptions(watch_list=True)) as plane:
        yield plane


@pytest.fixture(scope="session")
def control_plane_watchlist_off() -> Iterator[LocalControlPlane]:
    """A second control plane with the WatchList gate off (paginated-list fallback)."""
    with LocalControlPlane(ControlPlaneOptions(watch_list=False)) as plane:
        yield plane


@pytest.fixture(scope="session")
def api_client(control_plane: LocalControlPlane) -> Any:
    return control_plane.api_client()


@pytest.fixture
def namespace(control_plane: LocalControlPlane, api_client: Any) -> Iterator[str]:
    """A fresh namespace on `control_plane`, deleted (without waiting) after the test."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name)
