"""Find or build the binaries the local clusters run: Kubernetes' and Cluster API's.

Kubernetes (kube-apiserver, kubectl, etcd): `KUBEBUILDER_ASSETS` (the directory
envtest users already have), else a build from the pinned Go module in
`hack/testbin`. Cluster API (its core manager, the kubeadm bootstrap provider,
its own KubeadmControlPlane controller, and the CRDs the module ships):
`KCP_CAPI_ASSETS` (a directory laid out as `cluster_api_dir()` is), else a build
from the pinned module in `hack/testbin/capi`. The simulator's kubelet
port-forward helper: `KCP_KUBELET_PORTFORWARD` (the binary), else a build from
its own small module in `hack/testbin/kubelet` (the kubelet's streaming library
at the Kubernetes release above; its own cache entry, so changing it rebuilds
nothing else). Builds are cached under the
user's cache directory keyed by the pinned version and a hash of the module
files, so the slow first build happens once per machine.

`python -m kcp.testing.binaries` builds them all (the Makefile calls it).
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

import yaml

MODULE_DIR = Path(__file__).resolve().parents[2] / "hack" / "testbin"
CAPI_MODULE_DIR = MODULE_DIR / "capi"
CAPI_MODULE = "sigs.k8s.io/cluster-api"
CAPI_ASSETS_ENV = "KCP_CAPI_ASSETS"
KUBELET_MODULE_DIR = MODULE_DIR / "kubelet"
KUBELET_PORTFORWARD = "kubelet-portforward"
KUBELET_PORTFORWARD_ENV = "KCP_KUBELET_PORTFORWARD"

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


def _pinned_version(module_dir: Path, module: str) -> str:
    """The version of `module` that `module_dir`'s go.mod requires."""
    match = re.search(rf"{re.escape(module)} (v\S+)", (module_dir / "go.mod").read_text())
    if match is None:
        raise RuntimeError(f"{module_dir}/go.mod does not require {module}")
    return match.group(1)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def kubernetes_version(module_dir: Path = MODULE_DIR) -> str:
    """The Kubernetes release pinned in the testbin module, e.g. `v1.34.4`."""
    return _pinned_version(module_dir, "k8s.io/kubernetes")


def _cache_base() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kcp" / "testbin"


def _files_digest(module_dir: Path, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update((module_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def cache_dir(module_dir: Path = MODULE_DIR) -> Path:
    digest = _files_digest(module_dir, ("go.mod", "go.sum", "etcd/main.go"))
    return _cache_base() / f"{kubernetes_version(module_dir)}-{digest}"


def from_assets(assets: Path) -> Binaries | None:
    paths = {name: assets / name for name in _PACKAGES}
    if not all(_executable(p) for p in paths.values()):
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


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise RuntimeError(
            "the Go toolchain is needed to build the test binaries "
            "(kube-apiserver, kubectl, etcd, Cluster API's controllers) once"
        )
    return go


def _go_build(
    go: str, module_dir: Path, package: str, output: Path, *, ldflags: str, progress: bool
) -> None:
    """Build `package` into `output`, atomically (a partial file never has the final name)."""
    step = time.monotonic()
    _say(f"go build {output.name} ...", progress)
    partial = output.parent / f".{output.name}.partial"
    subprocess.run(
        [go, "build", "-ldflags", ldflags, "-o", str(partial), package],
        cwd=module_dir,
        check=True,
        env={**os.environ, "GOFLAGS": "-buildvcs=false"},
    )
    partial.rename(output)
    _say(f"built {output.name} in {time.monotonic() - step:.0f}s", progress)


def _build_all(target: Path, *, progress: bool) -> None:
    go = _go()
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
        if not (target / name).exists():
            _go_build(go, MODULE_DIR, package, target / name, ldflags=ldflags, progress=progress)
    _say(f"all binaries ready in {time.monotonic() - started:.0f}s", progress)


# -- Cluster API ---------------------------------------------------------------------------

# binary name -> Go package, relative to the capi module.
_CAPI_PACKAGES = {
    "cluster-api-manager": CAPI_MODULE,
    "kubeadm-bootstrap-manager": f"{CAPI_MODULE}/bootstrap/kubeadm",
    "kubeadm-control-plane-manager": f"{CAPI_MODULE}/controlplane/kubeadm",
}
# crd/<folder> in the cache -> where the module keeps those CRDs.
_CAPI_CRDS = {
    "core": "config/crd/bases",
    "bootstrap": "bootstrap/kubeadm/config/crd/bases",
    "controlplane": "controlplane/kubeadm/config/crd/bases",
}


@dataclass(frozen=True)
class ClusterAPI:
    """Cluster API's controllers and CRDs at the pinned release."""

    root: Path
    version: str

    @property
    def core(self) -> Path:
        return self.root / "cluster-api-manager"

    @property
    def kubeadm_bootstrap(self) -> Path:
        return self.root / "kubeadm-bootstrap-manager"

    @property
    def kubeadm_control_plane(self) -> Path:
        return self.root / "kubeadm-control-plane-manager"

    @property
    def crd_dir(self) -> Path:
        return self.root / "crd"

    def crds(self, *folders: str) -> list[Path]:
        """The CRD files of `folders` (`core`, `bootstrap`, `controlplane`), sorted."""
        return [
            path for folder in folders for path in sorted((self.crd_dir / folder).glob("*.yaml"))
        ]

    def management_crds(self) -> list[Path]:
        """What a management cluster running core and CABPK beside kcp installs."""
        return self.crds("core", "bootstrap")


def cluster_api_version(module_dir: Path = CAPI_MODULE_DIR) -> str:
    """The Cluster API release pinned in the capi module, e.g. `v1.13.6`."""
    return _pinned_version(module_dir, CAPI_MODULE)


# Bumped when what the build puts in the cache changes (the CRDs' labels, say).
_CAPI_LAYOUT = "2"


def cluster_api_dir(module_dir: Path = CAPI_MODULE_DIR) -> Path:
    digest = _files_digest(module_dir, ("go.mod", "go.sum")) + _CAPI_LAYOUT
    return _cache_base() / f"capi-{cluster_api_version(module_dir)}-{digest}"


def _complete_cluster_api(root: Path) -> bool:
    binaries_ok = all(_executable(root / name) for name in _CAPI_PACKAGES)
    return binaries_ok and all(any((root / "crd" / f).glob("*.yaml")) for f in _CAPI_CRDS)


def find_cluster_api() -> ClusterAPI | None:
    """Cluster API's binaries and CRDs if available without building, else None."""
    version = cluster_api_version()
    assets = os.environ.get(CAPI_ASSETS_ENV)
    if assets and _complete_cluster_api(Path(assets)):
        return ClusterAPI(Path(assets), version)
    root = cluster_api_dir()
    return ClusterAPI(root, version) if _complete_cluster_api(root) else None


def ensure_cluster_api(*, progress: bool = True) -> ClusterAPI:
    """Cluster API's binaries and CRDs, building what is missing once (file-locked)."""
    found = find_cluster_api()
    if found is not None:
        return found
    target = cluster_api_dir()
    target.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f"{target.name}.lock"):
        if not _complete_cluster_api(target):
            _build_cluster_api(target, progress=progress)
    return ClusterAPI(target, cluster_api_version())


def _kustomize_labels(kustomization: Path) -> dict[str, str]:
    """The labels a provider's CRD kustomization adds (the contract labels core reads:
    `cluster.x-k8s.io/v1beta2: v1beta2`), as `kubectl apply -k` would add them."""
    if not kustomization.is_file():
        return {}
    document = yaml.safe_load(kustomization.read_text()) or {}
    found: dict[str, str] = dict(document.get("commonLabels") or {})
    for entry in document.get("labels") or []:
        found.update(entry.get("pairs") or {})
    return {str(k): str(v) for k, v in found.items()}


def _labelled(text: str, labels: dict[str, str]) -> str:
    if not labels:
        return text
    documents = [d for d in yaml.safe_load_all(text) if d]
    for document in documents:
        document.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    return yaml.safe_dump_all(documents, sort_keys=False)


def _build_cluster_api(target: Path, *, progress: bool) -> None:
    go = _go()
    version = cluster_api_version()
    major, minor = version[1:].split(".")[:2]
    ldflags = " ".join(
        f"-X {CAPI_MODULE}/version.{key}={value}"
        for key, value in {"gitVersion": version, "gitMajor": major, "gitMinor": minor}.items()
    )
    started = time.monotonic()
    _say(
        f"building Cluster API {version} (core, kubeadm bootstrap, kubeadm control plane) "
        f"into {target}; the first build takes about 10 minutes on 2 cores and is cached",
        progress,
    )
    for name, package in _CAPI_PACKAGES.items():
        if not (target / name).exists():
            _go_build(
                go, CAPI_MODULE_DIR, package, target / name, ldflags=ldflags, progress=progress
            )
    module_source = Path(
        subprocess.run(
            [go, "list", "-m", "-f", "{{.Dir}}", CAPI_MODULE],
            cwd=CAPI_MODULE_DIR,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for folder, relative in _CAPI_CRDS.items():
        destination = target / "crd" / folder
        destination.mkdir(parents=True, exist_ok=True)
        labels = _kustomize_labels(module_source / relative / ".." / "kustomization.yaml")
        for source in sorted((module_source / relative).glob("*.yaml")):
            # The module cache is read-only: write the text, not the mode.
            (destination / source.name).write_text(_labelled(source.read_text(), labels))
    _say(f"Cluster API ready in {time.monotonic() - started:.0f}s", progress)


# -- the simulator's kubelet port-forward helper ------------------------------------------


def kubelet_library_version(module_dir: Path = KUBELET_MODULE_DIR) -> str:
    """The `k8s.io/kubelet` release the helper is built on, e.g. `v0.34.4`."""
    return _pinned_version(module_dir, "k8s.io/kubelet")


def kubelet_portforward_path(module_dir: Path = KUBELET_MODULE_DIR) -> Path:
    digest = _files_digest(module_dir, ("go.mod", "go.sum", "main.go"))
    version = kubelet_library_version(module_dir)
    return _cache_base() / f"kubelet-{version}-{digest}" / KUBELET_PORTFORWARD


def find_kubelet_portforward() -> Path | None:
    """The helper if it is given or built, else None."""
    given = os.environ.get(KUBELET_PORTFORWARD_ENV)
    for path in (Path(given) if given else None, kubelet_portforward_path()):
        if path is not None and _executable(path):
            return path
    return None


def ensure_kubelet_portforward(*, progress: bool = True) -> Path:
    """The kubelet port-forward helper, built once (file-locked; about a minute cold)."""
    found = find_kubelet_portforward()
    if found is not None:
        return found
    path = kubelet_portforward_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent.parent / f"{path.parent.name}.lock"):
        if not path.is_file():
            _go_build(_go(), KUBELET_MODULE_DIR, ".", path, ldflags="-s -w", progress=progress)
    return path


def main() -> int:
    binaries = ensure()
    for path in (binaries.kube_apiserver, binaries.kubectl, binaries.etcd):
        print(path)
    print(ensure_kubelet_portforward())
    capi = ensure_cluster_api()
    for path in (capi.core, capi.kubeadm_bootstrap, capi.kubeadm_control_plane, capi.crd_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
