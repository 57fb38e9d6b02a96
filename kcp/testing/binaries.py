"""Find or build the kube-apiserver, kubectl and etcd binaries the local clusters run.

Order: `KUBEBUILDER_ASSETS` (the directory envtest users already have), else a
build from the pinned Go module in `hack/testbin`, cached under the user's cache
directory keyed by the Kubernetes version and a hash of the module files, so the
slow first build happens once per machine and later runs start in seconds.

`python -m kcp.testing.binaries` builds them (the Makefile calls it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "hack" / "testbin"

# binary name -> Go package built for it, relative to the testbin module.
_PACKAGES = {
    "etcd": "./etcd",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kubectl: Path
    etcd: Path


def kubernetes_version(module_dir: Path = MODULE_DIR) -> str:
    """The Kubernetes release pinned in the testbin module, e.g. `v1.34.4`."""
    match = re.search(r"k8s\.io/kubernetes (v\S+)", (module_dir / "go.mod").read_text())
    if match is None:
        raise RuntimeError(f"{module_dir}/go.mod does not require k8s.io/kubernetes")
    return match.group(1)


def cache_dir(module_dir: Path = MODULE_DIR) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "etcd/main.go"):
        digest.update((module_dir / name).read_bytes())
    return base / "kcp" / "testbin" / f"{kubernetes_version(module_dir)}-{digest.hexdigest()[:12]}"


def from_assets(assets: Path) -> Binaries | None:
    paths = {name: assets / name for name in _PACKAGES}
    if not all(p.is_file() and os.access(p, os.X_OK) for p in paths.values()):
        return None
    return Binaries(paths["kube-apiserver"], paths["kubectl"], paths["etcd"])


def find() -> Binaries | None:
    """The binaries if they are available without building, else None."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        found = from_assets(Path(assets))
        if found is not None:
            return found
    return from_assets(cache_dir())


def ensure(*, progress: bool = True) -> Binaries:
    """Return the binaries, building the missing ones once (serialised by a file lock)."""
    found = find()
    if found is not None:
        return found
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f"{target.name}.lock"):
        found = from_assets(target)  # another process may have built them meanwhile
        if found is not None:
            return found
        _build_all(target, progress=progress)
    built = from_assets(target)
    assert built is not None
    return built


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"[testbin] {message}", file=sys.stderr, flush=True)


def _build_all(target: Path, *, progress: bool) -> None:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise RuntimeError("the Go toolchain is needed to build kube-apiserver/kubectl/etcd")
    version = kubernetes_version()
    ldflags = " ".join(
        f"-X k8s.io/component-base/version.{key}={value}"
        for key, value in {
            "gitVersion": version,
            "gitMajor": version[1:].split(".")[0],
            "gitMinor": version[1:].split(".")[1],
        }.items()
    )
    started = time.monotonic()
    _say(
        f"building Kubernetes {version} kube-apiserver, kubectl and etcd into {target}; "
        "the first build takes 10-20 minutes on 2 cores and is cached for later runs",
        progress,
    )
    for name, package in _PACKAGES.items():
        if (target / name).exists():
            continue
        step = time.monotonic()
        _say(f"go build {name} ...", progress)
        partial = target / f".{name}.partial"
        subprocess.run(
            [go, "build", "-ldflags", ldflags, "-o", str(partial), package],
            cwd=MODULE_DIR,
            check=True,
            env={**os.environ, "GOFLAGS": "-buildvcs=false"},
        )
        partial.rename(target / name)
        _say(f"built {name} in {time.monotonic() - step:.0f}s", progress)
    _say(f"all binaries ready in {time.monotonic() - started:.0f}s", progress)


def main() -> int:
    binaries = ensure()
    for path in (binaries.kube_apiserver, binaries.kubectl, binaries.etcd):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
