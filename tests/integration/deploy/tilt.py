"""Run the Tiltfile in the `starlark` interpreter with Tilt's builtins stubbed.

Each stub has the parameter names of Tilt's API reference (docs.tilt.dev/api.html),
so a misspelt keyword, a missing argument or an undefined name fails like it
would in `tilt up`. The stubs also do what Tilt checks when it loads a
Tiltfile: `kustomize` really runs `kubectl kustomize`, a `k8s_resource` workload
or object must exist in the YAML given to `k8s_yaml`, an image built by
`docker_build` must be used by a workload, live-update steps come in Tilt's
order and sync paths that exist. Everything declared is recorded in a
`TiltRun` for the tests to inspect.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import starlark
import yaml
from starlark import BuiltinFunction, Mutability
from starlark.eval.values import str_starlark

from .manifests import ROOT, Manifest, kubectl

TILTFILE = ROOT / "Tiltfile"


class TiltfileError(Exception):
    """What `tilt up` would report as a Tiltfile load error."""


class Blob:
    """Tilt's blob: text that only `str()` reveals."""

    _starlark_type = "blob"

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Sync:
    local_path: str
    remote_path: str


@dataclass(frozen=True)
class Run:
    cmd: str
    trigger: list[str]


@dataclass(frozen=True)
class FallBackOn:
    files: list[str]


@dataclass(frozen=True)
class PortForward:
    local_port: int
    container_port: int | None
    name: str | None
    link_path: str | None


@dataclass(frozen=True)
class Link:
    url: str
    name: str | None


@dataclass
class TiltRun:
    """Everything a Tiltfile declared."""

    objects: list[Manifest] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    allowed_contexts: list[str] = field(default_factory=list)
    registry: str | None = None
    settings_calls: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    globals: dict[str, Any] = field(default_factory=dict)

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.objects, sort_keys=False)

    def workloads(self) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] in WORKLOAD_KINDS]


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod", "ReplicaSet"}


def _plain(value: Any) -> Any:
    """Starlark lists/dicts (possibly holding host objects) -> Python lists/dicts."""
    if isinstance(value, Blob):
        return value
    if isinstance(value, starlark.Dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, starlark.StarlarkList | list | tuple):
        return [_plain(v) for v in value]
    return value


def _strings(value: Any, what: str) -> list[str]:
    items = [value] if isinstance(value, str) else _plain(value)
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise TiltfileError(f"{what}: expected a string or a list of strings, got {value!r}")
    return items


def _text(value: Any, what: str) -> str:
    if isinstance(value, Blob):
        return value.text
    if isinstance(value, str):
        return value
    raise TiltfileError(f"{what}: expected a string or a blob, got {type(value).__name__}")


def _selector_matches(selector: str, obj: Manifest) -> bool:
    """Tilt's `name:kind:namespace` object selector (each part optional, case-insensitive)."""
    parts = selector.split(":")
    metadata = obj.get("metadata", {})
    actual = [metadata.get("name", ""), obj.get("kind", ""), metadata.get("namespace", "")]
    return all(
        not want or want.lower() == have.lower() for want, have in zip(parts, actual, strict=False)
    )


def run_tiltfile(
    files: Mapping[str, str | None] | None = None,
    *,
    tiltfile: Path = TILTFILE,
    source: str | None = None,
) -> TiltRun:
    """Execute the Tiltfile from the repository root.

    `files` overrides what the Tiltfile sees on disk, by path relative to the
    root: a string is the file's content, None makes it absent (used to inject
    tilt-settings.yaml variants without touching the working tree).
    """
    overrides = {str(Path(p)): v for p, v in (files or {}).items()}
    result = TiltRun()
    mutable = Mutability("tilt")

    def resolve(path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else ROOT / candidate

    def relative(path: str) -> str:
        return str(resolve(path).relative_to(ROOT))

    def read(path: str) -> str | None:
        key = relative(path)
        if key in overrides:
            return overrides[key]
        full = resolve(path)
        return full.read_text() if full.is_file() else None

    def exists(path: str) -> bool:
        key = relative(path)
        if key in overrides:
            return overrides[key] is not None
        return resolve(path).exists()

    def to_starlark(value: Any) -> Any:
        return starlark.to_value(value, mutability=mutable)

    # -- builtins, with Tilt's parameter names ---------------------------------------

    def version_settings(check_updates: bool = True, constraint: str = "") -> None:
        if constraint and not re.fullmatch(r"[<>=!~^ .,0-9]+", constraint):
            raise TiltfileError(f"version_settings: bad constraint {constraint!r}")

    def allow_k8s_contexts(contexts: Any) -> None:
        result.allowed_contexts.extend(_strings(contexts, "allow_k8s_contexts"))

    def default_registry(
        host: str, host_from_cluster: str | None = None, single_name: str = ""
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TiltfileError("default_registry: host must be a non-empty string")
        result.registry = host

    def update_settings(
        max_parallel_updates: int = 3,
        k8s_upsert_timeout_secs: int = 30,
        suppress_unused_image_warnings: Any = None,
    ) -> None:
        result.settings_calls.append("update_settings")

    def read_yaml(path: str, default: Any = None) -> Any:
        text = read(path)
        if text is None:
            if default is None:
                raise TiltfileError(f"read_yaml: {path} does not exist")
            return default
        return to_starlark(yaml.safe_load(text))

    def read_json(path: str, default: Any = None) -> Any:
        text = read(path)
        if text is None:
            if default is None:
                raise TiltfileError(f"read_json: {path} does not exist")
            return default
        return to_starlark(json.loads(text))

    def listdir(directory: str, recursive: bool = False) -> Any:
        base = resolve(directory)
        paths = base.rglob("*") if recursive else base.iterdir()
        return to_starlark(sorted(str(p) for p in paths if p.is_file()))

    def kustomize(pathToDir: str, kustomize_bin: str | None = None, flags: Any = None) -> Blob:
        completed = subprocess.run(
            [str(kubectl()), "kustomize", str(resolve(pathToDir)), *_strings(flags or [], "flags")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if completed.returncode != 0:
            raise TiltfileError(f"kustomize {pathToDir}: {completed.stderr}")
        return Blob(completed.stdout)

    def blob(contents: str) -> Blob:
        return Blob(_text(contents, "blob"))

    def decode_yaml_stream(yaml: Any) -> Any:
        import yaml as pyyaml

        documents = [d for d in pyyaml.safe_load_all(_text(yaml, "decode_yaml_stream")) if d]
        return to_starlark(documents)

    def encode_yaml_stream(objs: Any) -> Blob:
        return Blob(yaml.safe_dump_all(starlark.from_value(objs), sort_keys=False))

    def k8s_yaml(yaml: Any, allow_duplicates: bool = False) -> None:
        import yaml as pyyaml

        if isinstance(yaml, Blob | str) and "\n" in _text(yaml, "k8s_yaml"):
            texts = [_text(yaml, "k8s_yaml")]
        else:
            texts = []
            for path in _strings(_plain(yaml), "k8s_yaml"):
                content = read(path)
                if content is None:
                    raise TiltfileError(f"k8s_yaml: {path} does not exist")
                texts.append(content)
        for text in texts:
            for document in pyyaml.safe_load_all(text):
                if not document:
                    continue
                key = _object_key(document)
                if not allow_duplicates and any(_object_key(o) == key for o in result.objects):
                    raise TiltfileError(f"k8s_yaml: duplicate object {key}")
                result.objects.append(document)

    def docker_build(
        ref: str,
        context: str,
        build_args: Any = None,
        dockerfile: str = "Dockerfile",
        dockerfile_contents: Any = "",
        live_update: Any = None,
        match_in_env_vars: bool = False,
        ignore: Any = None,
        only: Any = None,
        entrypoint: Any = None,
        target: str = "",
        ssh: Any = "",
        network: str = "",
        secret: Any = "",
        extra_tag: Any = "",
        container_args: Any = None,
        cache_from: Any = None,
        pull: bool = False,
        platform: str = "",
        extra_hosts: Any = None,
        env_vars: Any = None,
    ) -> None:
        if ref in result.images:
            raise TiltfileError(f"docker_build: image {ref} is already built")
        if not resolve(context).is_dir():
            raise TiltfileError(f"docker_build: context {context} is not a directory")
        steps = _plain(live_update or [])
        _check_live_update(steps, context, resolve)
        result.images[ref] = {
            "context": context,
            "dockerfile": dockerfile,
            "target": target,
            "only": _strings(only or [], "only"),
            "ignore": _strings(ignore or [], "ignore"),
            "live_update": steps,
            "entrypoint": entrypoint,
        }

    def sync(local_path: str, remote_path: str) -> Sync:
        return Sync(local_path, remote_path)

    def run(cmd: Any, trigger: Any = None, echo_off: bool = False) -> Run:
        command = cmd if isinstance(cmd, str) else " ".join(_strings(cmd, "run"))
        return Run(command, _strings(trigger or [], "run trigger"))

    def fall_back_on(files: Any) -> FallBackOn:
        return FallBackOn(_strings(files, "fall_back_on"))

    def port_forward(
        local_port: int,
        container_port: int | None = None,
        name: str | None = None,
        link_path: str | None = None,
        host: str | None = None,
    ) -> PortForward:
        for port in (local_port, container_port):
            if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
                raise TiltfileError(f"port_forward: bad port {port!r}")
        return PortForward(local_port, container_port, name, link_path)

    def link(url: str, name: str | None = None) -> Link:
        if not url.startswith(("http://", "https://")):
            raise TiltfileError(f"link: {url!r} is not a URL")
        return Link(url, name)

    def k8s_resource(
        workload: str = "",
        new_name: str = "",
        port_forwards: Any = None,
        extra_pod_selectors: Any = None,
        trigger_mode: Any = None,
        resource_deps: Any = None,
        objects: Any = None,
        auto_init: bool = True,
        pod_readiness: str = "",
        links: Any = None,
        labels: Any = None,
        discovery_strategy: str = "",
    ) -> None:
        if not workload and not new_name:
            raise TiltfileError("k8s_resource: needs a workload or a new_name")
        if workload and not any(o["metadata"]["name"] == workload for o in result.workloads()):
            raise TiltfileError(f"k8s_resource: no workload named {workload!r} in k8s_yaml")
        selectors = _strings(objects or [], "objects")
        for selector in selectors:
            found = [o for o in result.objects if _selector_matches(selector, o)]
            if len(found) != 1:
                raise TiltfileError(
                    f"k8s_resource: object selector {selector!r} matches {len(found)} objects"
                )
        name = new_name or workload
        if name in result.resources:
            raise TiltfileError(f"k8s_resource: resource {name!r} declared twice")
        forwards = _plain(port_forwards or [])
        forwards = forwards if isinstance(forwards, list) else [forwards]
        result.resources[name] = {
            "workload": workload,
            "objects": selectors,
            "port_forwards": [
                f if isinstance(f, PortForward) else PortForward(int(f), None, None, None)
                for f in forwards
            ],
            "links": _plain(links or []),
            "labels": _strings(labels or [], "labels"),
            "resource_deps": _strings(resource_deps or [], "resource_deps"),
        }

    def tilt_print(*args: Any, sep: str = " ") -> None:
        result.printed.append(sep.join(str_starlark(a) for a in args))

    def os_path_exists(path: str) -> bool:
        return exists(path)

    def os_getenv(key: str, default: Any = None) -> Any:
        return default

    def os_path_join(path: str, *paths: str) -> str:
        return str(Path(path).joinpath(*paths))

    functions: dict[str, Callable[..., Any]] = {
        "version_settings": version_settings,
        "allow_k8s_contexts": allow_k8s_contexts,
        "default_registry": default_registry,
        "update_settings": update_settings,
        "read_yaml": read_yaml,
        "read_json": read_json,
        "listdir": listdir,
        "kustomize": kustomize,
        "blob": blob,
        "decode_yaml_stream": decode_yaml_stream,
        "encode_yaml_stream": encode_yaml_stream,
        "k8s_yaml": k8s_yaml,
        "docker_build": docker_build,
        "sync": sync,
        "run": run,
        "fall_back_on": fall_back_on,
        "port_forward": port_forward,
        "link": link,
        "k8s_resource": k8s_resource,
        "print": tilt_print,
    }
    predeclared: dict[str, Any] = {n: BuiltinFunction(n, f) for n, f in functions.items()}
    predeclared["os"] = starlark.namespace(
        "os",
        {
            "getenv": os_getenv,
            "path": starlark.namespace("os.path", {"exists": os_path_exists, "join": os_path_join}),
        },
    )
    text = source if source is not None else tiltfile.read_text()
    try:
        module = starlark.exec_file(text, str(tiltfile.name), predeclared=predeclared)
    except (starlark.EvalError, starlark.StarlarkSyntaxException) as error:
        raise TiltfileError(str(error)) from error
    result.globals = dict(module.globals)
    _check_images_used(result)
    return result


def _object_key(obj: Manifest) -> tuple[str, str, str, str]:
    metadata = obj.get("metadata", {})
    return (
        obj.get("apiVersion", ""),
        obj.get("kind", ""),
        metadata.get("namespace", ""),
        metadata.get("name", ""),
    )


def _check_live_update(steps: list[Any], context: str, resolve: Callable[[str], Path]) -> None:
    """Tilt's rules: fall_back_on first, then syncs, then runs; sync paths inside the context."""
    order = {FallBackOn: 0, Sync: 1, Run: 2}
    ranks = []
    for step in steps:
        if type(step) not in order:
            raise TiltfileError(f"live_update: {step!r} is not a live update step")
        ranks.append(order[type(step)])
        if isinstance(step, Sync):
            local = resolve(step.local_path)
            if not local.exists():
                raise TiltfileError(f"sync: {step.local_path} does not exist")
            if not local.resolve().is_relative_to(resolve(context).resolve()):
                raise TiltfileError(f"sync: {step.local_path} is outside the build context")
            if not step.remote_path.startswith("/"):
                raise TiltfileError(f"sync: remote path {step.remote_path} must be absolute")
    if ranks != sorted(ranks):
        raise TiltfileError("live_update: steps must be fall_back_on, then sync, then run")


def _check_images_used(result: TiltRun) -> None:
    """Tilt warns about a built image no workload uses; for us that is a broken Tiltfile."""
    used = {
        container["image"].split("@")[0].rsplit(":", 1)[0]
        for workload in result.workloads()
        for container in workload["spec"]["template"]["spec"]["containers"]
    }
    for ref in result.images:
        if ref not in used:
            raise TiltfileError(f"docker_build: image {ref} is used by no workload ({used})")
