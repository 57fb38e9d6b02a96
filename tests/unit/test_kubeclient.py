"""ApiClients from kubeconfigs keep the private key in memory, and resolve the file as kubectl.

The kubernetes client's `load_kube_config` writes an embedded `client-key-data` to a
temporary file; here the temporary directory must stay empty. A real TLS handshake
shows the key loaded in memory is the one presented.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import tempfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.config import incluster_config
from kubernetes.config.config_exception import ConfigException

from kcp import certs
from kcp.kubeclient import in_cluster_api_client, kubeconfig_api_client
from tests.unit.tracker.servers import mutual_tls_server


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.new_certificate_authority("kubeclient-test-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def client_pair(ca: certs.KeyPair) -> certs.KeyPair:
    return certs.issue_certificate(
        ca, common_name="kubeclient-user", organizations=("team",), algorithm="ecdsa-p256"
    )


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary directory, where the kubernetes client would write keys."""
    directory = tmp_path / "tmpdir"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


class _WhoAmI(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        peer = self.connection.getpeercert() or {}  # type: ignore[attr-defined]
        subject = dict(item[0] for item in peer.get("subject", ()))
        body = json.dumps({"cn": subject.get("commonName")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(ca: certs.KeyPair) -> Iterator[str]:
    """An HTTPS server on loopback that requires a client certificate of `ca` and
    answers with the client's common name."""
    with mutual_tls_server(ca, _WhoAmI, common_name="server") as url:
        yield url


def _kubeconfig(server: str, user: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def _who(api_client: Any) -> str | None:
    response = api_client.rest_client.pool_manager.request(
        "GET", f"{api_client.configuration.host}/whoami", timeout=5.0, retries=False
    )
    return json.loads(response.data)["cn"]  # type: ignore[no-any-return]


def _embedded(server: str, ca: certs.KeyPair, pair: certs.KeyPair) -> dict[str, Any]:
    return _kubeconfig(
        server,
        {"client-certificate-data": _b64(pair.cert_pem), "client-key-data": _b64(pair.key_pem)},
        {"certificate-authority-data": _b64(ca.cert_pem)},
    )


def test_an_embedded_key_is_presented_from_memory(
    tmp_path: Path,
    temp_dir: Path,
    server: str,
    ca: certs.KeyPair,
    client_pair: certs.KeyPair,
) -> None:
    path = _write(tmp_path / "kubeconfig", _embedded(server, ca, client_pair))
    api_client = kubeconfig_api_client(path, connections=3)
    try:
        configuration = api_client.configuration
        assert (configuration.cert_file, configuration.key_file) == (None, None)
        assert configuration.connection_pool_maxsize == 3
        assert _who(api_client) == "kubeclient-user"
    finally:
        api_client.close()
    assert list(temp_dir.iterdir()) == [], "the kubeconfig's key was written to a file"


def test_files_named_by_the_kubeconfig_are_read_relative_to_it(
    tmp_path: Path, temp_dir: Path, server: str, ca: certs.KeyPair, client_pair: certs.KeyPair
) -> None:
    pki = tmp_path / "conf" / "pki"
    pki.mkdir(parents=True)
    (pki / "ca.crt").write_bytes(ca.cert_pem)
    (pki / "user.crt").write_bytes(client_pair.cert_pem)
    (pki / "user.key").write_bytes(client_pair.key_pem)
    document = _kubeconfig(
        server,
        {"client-certificate": "pki/user.crt", "client-key": "pki/user.key"},
        {"certificate-authority": "pki/ca.crt"},
    )
    api_client = kubeconfig_api_client(_write(tmp_path / "conf" / "kubeconfig", document))
    try:
        assert _who(api_client) == "kubeclient-user"
    finally:
        api_client.close()
    assert list(temp_dir.iterdir()) == []


def test_kubeconfig_env_lists_files_merged_and_home_is_the_default(
    tmp_path: Path,
    temp_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: str,
    ca: certs.KeyPair,
    client_pair: certs.KeyPair,
) -> None:
    document = _embedded(server, ca, client_pair)
    contexts_only = {
        "contexts": document.pop("contexts"),
        "current-context": document.pop("current-context"),
    }
    first = _write(tmp_path / "a" / "config", contexts_only)
    second = _write(tmp_path / "b" / "config", document)
    monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{second}")
    api_client = kubeconfig_api_client()
    try:
        assert _who(api_client) == "kubeclient-user"
    finally:
        api_client.close()

    monkeypatch.delenv("KUBECONFIG")
    home = tmp_path / "home"
    _write(home / ".kube" / "config", _embedded(server, ca, client_pair))
    monkeypatch.setenv("HOME", str(home))
    api_client = kubeconfig_api_client(None)
    try:
        assert _who(api_client) == "kubeclient-user"
    finally:
        api_client.close()
    assert list(temp_dir.iterdir()) == []


def test_a_named_context_and_a_token(tmp_path: Path, server: str, ca: certs.KeyPair) -> None:
    document = _kubeconfig(server, {"token": "abc"}, {"certificate-authority-data": "x"})
    document["clusters"].append(
        {
            "name": "other",
            "cluster": {"server": "https://127.0.0.2:1", "insecure-skip-tls-verify": True},
        }
    )
    document["contexts"].append({"name": "other", "context": {"cluster": "other", "user": "u"}})
    api_client = kubeconfig_api_client(_write(tmp_path / "kubeconfig", document), context="other")
    try:
        configuration = api_client.configuration
        assert configuration.host == "https://127.0.0.2:1"
        assert configuration.api_key["BearerToken"] == "Bearer abc"
        context = api_client.rest_client.pool_manager.connection_pool_kw["ssl_context"]
        assert context.verify_mode == ssl.CERT_NONE
    finally:
        api_client.close()


def test_an_exec_plugins_client_key_stays_in_memory(
    tmp_path: Path, temp_dir: Path, server: str, ca: certs.KeyPair, client_pair: certs.KeyPair
) -> None:
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": client_pair.cert_pem.decode(),
            "clientKeyData": client_pair.key_pem.decode(),
        },
    }
    plugin = tmp_path / "plugin.py"
    plugin.write_text(f"import json\nprint(json.dumps({credential!r}))\n")
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    document = _kubeconfig(server, user, {"certificate-authority-data": _b64(ca.cert_pem)})
    api_client = kubeconfig_api_client(_write(tmp_path / "kubeconfig", document))
    try:
        assert _who(api_client) == "kubeclient-user"
    finally:
        api_client.close()
    assert list(temp_dir.iterdir()) == []


def test_errors_name_the_entry_but_never_quote_key_data(
    tmp_path: Path, server: str, ca: certs.KeyPair, client_pair: certs.KeyPair
) -> None:
    key_data = _b64(client_pair.key_pem)
    document = _kubeconfig(
        server,
        {"client-key-data": key_data},
        {"certificate-authority-data": _b64(ca.cert_pem)},
    )
    with pytest.raises(ConfigException) as missing:
        kubeconfig_api_client(_write(tmp_path / "kubeconfig", document))
    assert "user 'u'" in str(missing.value) and "client-certificate" in str(missing.value)
    document["users"][0]["user"] = {"client-certificate-data": "!!", "client-key-data": key_data}
    with pytest.raises(ConfigException) as bad:
        kubeconfig_api_client(_write(tmp_path / "kubeconfig", document))
    assert "not valid base64" in str(bad.value)
    document["contexts"][0]["context"]["cluster"] = "nowhere"
    with pytest.raises(ConfigException) as unknown:
        kubeconfig_api_client(_write(tmp_path / "kubeconfig", document))
    for error in (missing, bad, unknown):
        assert key_data[80:120] not in str(error.value)


def test_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: certs.KeyPair) -> None:
    token, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("sa-token")
    ca_file.write_bytes(ca.cert_pem)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca_file))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api_client = in_cluster_api_client(connections=7)
    try:
        configuration = api_client.configuration
        assert configuration.host == "https://10.96.0.1:443"
        assert configuration.ssl_ca_cert == str(ca_file)
        assert configuration.connection_pool_maxsize == 7
        assert configuration.get_api_key_with_prefix("BearerToken").lower() == "bearer sa-token"
    finally:
        api_client.close()
