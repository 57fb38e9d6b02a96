"""Shared fixtures: one real local control plane per test session, a namespace per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kcp.testing.controlplane import ControlPlaneOptions, LocalControlPlane


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="also run long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_soak = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords and not config.getoption("--soak"):
            item.add_marker(skip_soak)


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
