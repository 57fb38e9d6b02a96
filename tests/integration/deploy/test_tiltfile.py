"""The Tiltfile, executed by the `starlark` interpreter with Tilt's builtins stubbed."""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import starlark
import yaml

from kcp.testing.controlplane import LocalControlPlane
from tests.unit.deploy.dockerfile import parse as parse_dockerfile

from .manifests import MANAGER, ROOT, apply, dump, find, manager_container
from .test_kustomize import parse_kcp_run
from .tilt import FallBackOn, Run, Sync, TiltfileError, TiltRun, run_tiltfile

SETTINGS = ROOT / "tilt-settings.yaml"
NO_SETTINGS: dict[str, str | None] = {"tilt-settings.yaml": None, "tilt-settings.json": None}


def _settings(**values: Any) -> dict[str, str | None]:
    return {"tilt-settings.yaml": yaml.safe_dump(values), "tilt-settings.json": None}


def _supervisor() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "supervisor", ROOT / "hack" / "tilt" / "supervisor.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tilt() -> TiltRun:
    """The Tiltfile with the repository's tilt-settings.yaml."""
    return run_tiltfile()


# -- what `tilt up` declares ----------------------------------------------------------------


def test_kcp_resource_forwards_metrics_and_profiler_with_links(tilt: TiltRun) -> None:
    kcp = tilt.resources["kcp"]
    assert kcp["workload"] == MANAGER
    forwards = {f.name: f for f in kcp["port_forwards"]}
    settings = yaml.safe_load(SETTINGS.read_text())["debug"]["kcp"]
    metrics, profiler = forwards["metrics"], forwards["profiler"]
    assert (metrics.local_port, metrics.container_port) == (settings["metrics_port"], 8080)
    assert metrics.link_path == "/metrics"
    assert (profiler.local_port, profiler.container_port) == (settings["profiler_port"], 6060)
    urls = [link.url for link in kcp["links"]]
    local = f"http://localhost:{settings['profiler_port']}/debug/pprof"
    assert f"{local}/profile?seconds=10" in urls
    assert f"{local}/threads" in urls
    # Forwarded container ports are ports the manager really declares.
    container = manager_container(tilt.objects)
    declared = {p["containerPort"] for p in container["ports"]}
    assert {metrics.container_port, profiler.container_port} <= declared


def test_every_applied_object_belongs_to_a_resource(tilt: TiltRun) -> None:
    grouped = [s for r in tilt.resources.values() for s in r["objects"]]
    workloads = {r["workload"] for r in tilt.resources.values()}
    for obj in tilt.objects:
        if obj["kind"] == "Deployment":
            assert obj["metadata"]["name"] in workloads
        else:
            assert any(
                s.split(":")[0] == obj["metadata"]["name"]
                and s.split(":")[1] == obj["kind"].lower()
                for s in grouped
            ), obj["metadata"]["name"]


def test_profiler_port_deploys_the_debug_overlay_made_live_updatable(tilt: TiltRun) -> None:
    container = manager_container(tilt.objects)
    assert container["securityContext"]["capabilities"]["add"] == ["SYS_PTRACE"]
    assert "--profiler-address=:6060" in container["args"]
    # Tilt syncs into the image's /app/kcp: only the Tilt copy has a writable root.
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    extra = yaml.safe_load(SETTINGS.read_text())["extra_args"]["kcp"]
    assert container["args"][-len(extra) :] == extra
    assert tilt.allowed_contexts == yaml.safe_load(SETTINGS.read_text())["allowed_contexts"]


def test_extra_args_in_settings_are_kcp_run_flags(tilt: TiltRun) -> None:
    parse_kcp_run(manager_container(tilt.objects)["args"])


def test_image_is_built_from_the_dev_stage_with_live_update(tilt: TiltRun) -> None:
    image = tilt.images["kcp-controller"]
    assert image["target"] == "dev"
    steps = image["live_update"]
    assert isinstance(steps[0], FallBackOn)
    assert "constraints.txt" in steps[0].files and "pyproject.toml" in steps[0].files
    syncs = [s for s in steps if isinstance(s, Sync)]
    runs = [s for s in steps if isinstance(s, Run)]
    assert syncs == [Sync("kcp", "/app/kcp")]
    assert runs == [Run(f"touch {_supervisor().DEFAULT_TRIGGER}", [])]


def test_live_update_lands_where_the_dev_image_imports_kcp(tilt: TiltRun) -> None:
    dockerfile = parse_dockerfile()
    dev = dockerfile.stage(tilt.images["kcp-controller"]["target"])
    (sync,) = [s for s in tilt.images["kcp-controller"]["live_update"] if isinstance(s, Sync)]
    copies = [c.flags_and_words()[1] for c in dev.all("COPY")]
    assert [sync.local_path, sync.remote_path] in copies
    assert dockerfile.env(dev)["PYTHONPATH"] == str(Path(sync.remote_path).parent)
    # The supervisor the trigger talks to is the dev image's entrypoint.
    entrypoint = dockerfile.effective(dev, "ENTRYPOINT")
    assert entrypoint is not None and "/app/hack/tilt/supervisor.py" in entrypoint.arguments


def test_docker_build_only_covers_every_file_the_dev_image_copies(tilt: TiltRun) -> None:
    dockerfile = parse_dockerfile()
    image = tilt.images["kcp-controller"]
    only = image["only"]
    stages = dockerfile.chain(dockerfile.stage(image["target"]))
    stages += [dockerfile.stage("builder")]
    for stage in stages:
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" in flags:
                continue
            for source in words[:-1]:
                assert any(source == o or source.startswith(o.rstrip("/") + "/") for o in only), (
                    f"{source} (Dockerfile line {copy.line}) is not in docker_build(only=...)"
                )


def test_without_a_settings_file_the_defaults_deploy_config_default() -> None:
    tilt = run_tiltfile(NO_SETTINGS)
    container = manager_container(tilt.objects)
    assert "add" not in container["securityContext"]["capabilities"]
    assert not any(a.startswith("--profiler-address") for a in container["args"])
    assert tilt.resources["kcp"]["port_forwards"] == []
    assert tilt.registry is None
    assert set(tilt.resources) == {"kcp"}


def test_settings_may_be_json() -> None:
    files = {
        "tilt-settings.yaml": None,
        "tilt-settings.json": json.dumps({"default_registry": "localhost:5001"}),
    }
    assert run_tiltfile(files).registry == "localhost:5001"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"default_regsitry": "x"}, 'unknown setting "default_regsitry"'),
        ({"debug": {"kcp": {"profiler_prot": 1}}}, 'unknown key "profiler_prot"'),
        ({"debug": {"capi": {"profiler_port": 1}}}, 'unknown component "capi"'),
        ({"extra_args": {"core": ["--v=2"]}}, 'unknown component "core"'),
        ({"deploy_observability": ["grafana"]}, 'unknown tool "grafana"'),
        ({"debug": "6060"}, "debug must be a mapping"),
    ],
)
def test_bad_settings_fail_naming_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(TiltfileError, match=message):
        run_tiltfile(_settings(**settings))


def test_substitutions_and_observability() -> None:
    tilt = run_tiltfile(
        _settings(
            deploy_observability=["prometheus"],
            kustomize_substitutions={"KCP_SCRAPE_INTERVAL": "30s"},
        )
    )
    prometheus = tilt.resources["prometheus"]
    assert [(f.local_port, f.container_port) for f in prometheus["port_forwards"]] == [(9090, 9090)]
    config = find(tilt.objects, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    assert "scrape_interval: 30s" in config
    scraped = yaml.safe_load(config)["scrape_configs"][0]["static_configs"][0]["targets"]
    service = find(tilt.objects, "Service", "kcp-controller-manager-metrics-service")
    assert scraped == [
        f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc:"
        f"{service['spec']['ports'][0]['port']}"
    ]
    default = run_tiltfile(_settings(deploy_observability=["prometheus"]))
    config = find(default.objects, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    assert "scrape_interval: 15s" in config


def test_a_placeholder_without_value_or_default_fails() -> None:
    source = (ROOT / "Tiltfile").read_text() + '\nsubstitute("a: ${KCP_UNSET}", {})\n'
    with pytest.raises(TiltfileError, match=r"\$\{KCP_UNSET\} is used but not set"):
        run_tiltfile(NO_SETTINGS, source=source)


def test_capi_crds_are_applied_only_on_request() -> None:
    tilt = run_tiltfile(_settings(deploy_capi_crds=True))
    crds = [o["metadata"]["name"] for o in tilt.objects if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == len(set(crds)) == len(list((ROOT / "config/crd/bases").glob("*.yaml")))
    # All but kcp's own two (KubeadmControlPlane and its template), which config/crd deploys.
    assert len(tilt.resources["capi-crds"]["objects"]) == len(crds) - 2


# -- the stubs catch what `tilt up` would ----------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("k8s_resource(\n", "k8s_resouce(\n", "not defined"),
        ("port_forwards = port_forwards,", "port_forward = port_forwards,", "unexpected keyword"),
        ("workload = MANAGER,", "workload = MANAGR,", "not defined"),
        ('sync("kcp", "/app/kcp")', 'sync("kcpp", "/app/kcp")', "does not exist"),
        ('obj.get("kind").lower())', '"secret")', "matches 0 objects"),
        ('IMAGE = "kcp-controller"', 'IMAGE = "kcp-manager"', "used by no workload"),
        ('"config/debug" if', '"config/debugg" if', "kustomize config/debugg"),
    ],
)
def test_a_broken_tiltfile_fails(old: str, new: str, message: str) -> None:
    source = (ROOT / "Tiltfile").read_text()
    assert old in source
    with pytest.raises(TiltfileError, match=message):
        run_tiltfile(source=source.replace(old, new, 1))


# -- tilt-settings.yaml against what the Tiltfile reads ---------------------------------------


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, list | tuple):
        for item in node:
            yield from _walk(item)
        return
    fields = getattr(node, "__dataclass_fields__", None) or getattr(node, "__slots__", ())
    for name in fields:
        child = getattr(node, name, None)
        if isinstance(child, list | tuple) or hasattr(child, "start"):
            yield from _walk(child)


def _path(node: Any, aliases: dict[str, str]) -> str | None:
    """`settings.get("a").get("b")` -> "settings.a.b"; names assigned such a chain resolve too."""
    kind = type(node).__name__
    if kind == "Identifier":
        return aliases.get(node.name, node.name)
    is_get = (
        kind == "CallExpression"
        and type(node.fn).__name__ == "DotExpression"
        and node.fn.name.name == "get"
        and node.args
    )
    if is_get:
        key = getattr(node.args[0], "value", None)
        receiver = _path(node.fn.obj, aliases)
        if receiver is not None and type(key).__name__ == "StringLiteral":
            return f"{receiver}.{key.value}"
    return None


def tiltfile_reads() -> dict[str, set[str]]:
    """Every `<x>.get("key")` in the Tiltfile, by the settings path of `<x>`."""
    tree = starlark.parse((ROOT / "Tiltfile").read_text())
    aliases: dict[str, str] = {}
    for node in _walk(tree.statements):
        if type(node).__name__ == "AssignmentStatement" and type(node.lhs).__name__ == "Identifier":
            path = _path(node.rhs, aliases)
            if path is not None:
                aliases[node.lhs.name] = path
    reads: dict[str, set[str]] = defaultdict(set)
    for node in _walk(tree.statements):
        path = _path(node, aliases)
        if path is not None and "." in path:
            receiver, _, key = path.rpartition(".")
            reads[receiver].add(key)
    return reads


def test_every_setting_in_the_file_is_read_by_the_tiltfile(tilt: TiltRun) -> None:
    reads = tiltfile_reads()
    settings = yaml.safe_load(SETTINGS.read_text())
    assert set(settings) <= reads["settings"]
    for component, ports in settings["debug"].items():
        assert component in reads["settings.debug"]
        assert set(ports) <= reads[f"settings.debug.{component}"]
    assert set(settings["extra_args"]) <= reads["settings.extra_args"]


def test_every_default_setting_is_read_and_every_read_has_a_default(tilt: TiltRun) -> None:
    defaults = starlark.from_value(tilt.globals["DEFAULT_SETTINGS"])
    reads = tiltfile_reads()
    assert set(defaults) == reads["settings"]
    assert reads["settings.debug.kcp"] == set(starlark.from_value(tilt.globals["KNOWN_DEBUG_KEYS"]))
    assert set(yaml.safe_load(SETTINGS.read_text())) == set(defaults), (
        "tilt-settings.yaml documents every setting"
    )


# -- against the real API server --------------------------------------------------------------


def test_everything_tilt_applies_passes_server_side_dry_run(
    control_plane: LocalControlPlane,
) -> None:
    tilt = run_tiltfile(_settings(deploy_observability=["prometheus"], deploy_capi_crds=True))
    namespaces = [o for o in tilt.objects if o["kind"] == "Namespace"]
    assert {n["metadata"]["name"] for n in namespaces} == {"kcp-system", "observability"}
    created = apply(control_plane.kubeconfig_path, dump(namespaces), dry_run=False)
    assert created.returncode == 0, created.stderr
    completed = apply(control_plane.kubeconfig_path, tilt.yaml(), dry_run=True)
    assert completed.returncode == 0, completed.stderr
    applied = [line for line in completed.stdout.splitlines() if line.strip()]
    assert len(applied) == len(tilt.objects)
