"""`kcp run --kubeconfig` on a kubeconfig that embeds its client key: the key stays in memory.

The kubernetes client's `load_kube_config` writes an embedded `client-key-data` to a
temporary file (removed only at exit). Here the child gets a fresh TMPDIR, HOME and
working directory, and while it runs every file written since it started there and
in the usual places (/tmp, /var/tmp, /dev/shm, ~/.cache) is searched for the key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from kcp import certs
from kcp.testing.controlplane import LocalControlPlane
from kcp.testing.processes import free_port
from tests import keyscan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _admin_kubeconfig(plane: LocalControlPlane, path: Path) -> certs.KeyPair:
    """A kubeconfig embedding a fresh RSA-2048 admin key that exists nowhere else."""
    _, admin = plane.kubeconfig_for("kcp-run-kubeconfig-test", algorithm="rsa-2048", path=path)
    return admin


def test_kcp_run_never_writes_the_kubeconfig_key_to_a_file(
    control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    admin = _admin_kubeconfig(control_plane, kubeconfig)
    der = admin.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    needles = keyscan.key_needles(der, owner="test", by="kubeconfig")
    index = keyscan.KeyIndex([needles])
    assert index.find(kubeconfig.read_bytes()) == [needles], "the scan must see the key"

    temp, home, work = tmp_path / "tmp", tmp_path / "home", tmp_path / "work"
    for directory in (temp, home, work):
        directory.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(TMPDIR=str(temp), HOME=str(home))
    health = free_port()
    log = tmp_path / "kcp-run.log"
    started = time.time()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcp",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                namespace,
                "--health-addr",
                f"127.0.0.1:{health}",
                "--metrics-bind-addr",
                f"127.0.0.1:{free_port()}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
    try:
        deadline = time.monotonic() + 60
        while not _ready(f"http://127.0.0.1:{health}/readyz"):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "kcp run never became ready"
            time.sleep(0.5)
        # Ready means its informers listed and watched as the kubeconfig's user: the key
        # was loaded. While it still runs, nothing it wrote may hold the key.
        roots = keyscan.scan_roots(temp, home, work, tmp_path)
        holding, scanned = [], 0
        for path in keyscan.written_files(roots, since=started - 1):
            if path == kubeconfig:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            scanned += 1
            if index.find(data, raw=[needles]):
                holding.append(str(path))
        print(f"{scanned} files written since kcp run started, under {[str(r) for r in roots]}")
        assert holding == [], f"the kubeconfig's private key is on disk in {holding}"
        assert scanned > 0
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
    assert code == 0, log.read_text()[-3000:]
