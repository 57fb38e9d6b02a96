"""Render the kustomize tree with the pinned kubectl and pick objects out of it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from kcp.testing import binaries

ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = "kcp-system"
MANAGER = "kcp-controller-manager"

Manifest = dict[str, Any]


def kubectl() -> Path:
    return binaries.ensure(progress=False).kubectl


def kustomize(directory: str | Path) -> str:
    """`kubectl kustomize <directory>` (relative to the repository root) as text."""
    completed = subprocess.run(
        [str(kubectl()), "kustomize", str(ROOT / directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"kubectl kustomize {directory}: {completed.stderr}"
    return completed.stdout


def render(directory: str | Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(kustomize(directory)) if doc]


def find(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    matches = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def manager_container(manifests: Iterable[Manifest]) -> Manifest:
    deployment = find(manifests, "Deployment", MANAGER)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "manager")


def apply(
    kubeconfig: Path, documents: str, *, dry_run: bool, extra: Iterable[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --server-side [--dry-run=server] -f -` with `documents` on stdin."""
    command = [
        str(kubectl()),
        f"--kubeconfig={kubeconfig}",
        "apply",
        "--server-side",
        "--field-manager=kcp-deploy-test",
        "-f",
        "-",
        *extra,
    ]
    if dry_run:
        command.append("--dry-run=server")
    return subprocess.run(
        command, input=documents, capture_output=True, text=True, timeout=120, check=False
    )


def dump(manifests: Iterable[Manifest]) -> str:
    return yaml.safe_dump_all(list(manifests), sort_keys=False)
