"""The names other packages import: changing them breaks kcp.tracker, kcp.etcd, ..."""

from __future__ import annotations

import ast
import pathlib

import kcp.certs

EXPECTED = {
    "CertificateError", "KubeconfigError",
    "KeyAlgorithm", "PrivateKey", "Usage",
    "generate_private_key", "encode_private_key", "decode_private_key",
    "encode_certificate", "decode_certificate", "decode_certificates",
    "encode_public_key", "fingerprint",
    "KeyPair", "new_certificate_authority", "issue_certificate",
    "load_key_pair", "check_validity", "verify_signed_by",
    "build_kubeconfig", "Kubeconfig", "parse_kubeconfig",
    "SecretPurpose", "secret_name", "TLS_CERT_KEY", "TLS_KEY_KEY", "KUBECONFIG_KEY",
    "CLUSTER_SECRET_TYPE", "key_pair_to_secret_data", "key_pair_from_secret_data",
    "new_service_account_key", "service_account_key_from_secret_data",
    "kubeconfig_secret_data", "decode_secret_data",
}  # fmt: skip


def test_exports() -> None:
    assert set(kcp.certs.__all__) >= EXPECTED
    for name in kcp.certs.__all__:
        assert hasattr(kcp.certs, name), name


def test_imports_nothing_else_of_kcp() -> None:
    package = pathlib.Path(kcp.certs.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kcp"):
                assert node.module.startswith("kcp.certs"), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("kcp"), f"{path.name} imports {alias.name}"
