"""Reading a cluster's ``-etcd`` and ``-kubeconfig`` Secrets, and what the tracker keeps of them.

The tracker reads these Secrets live from the management cluster (never from a
cache that could hold a stale CA), on its own worker threads, with a timeout.
``ApiSecretReader`` does that through a ``kubernetes`` ``ApiClient``;
``InMemorySecrets`` serves the same from a dict, for benchmarks and tests.
Errors name the Secret and the data key and say what to put there; they never
quote the data.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kcp.certs import (
    TLS_CERT_KEY,
    CertificateError,
    KeyPair,
    Kubeconfig,
    KubeconfigError,
    SecretPurpose,
    decode_secret_data,
    key_pair_from_secret_data,
    kubeconfig_from_secret_data,
    secret_name,
)
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.identity import ClusterKey

__all__ = [
    "ApiSecretReader",
    "EtcdCA",
    "InMemorySecrets",
    "SecretData",
    "SecretReader",
    "WorkloadKubeconfig",
    "load_etcd_ca",
    "load_kubeconfig",
]


@dataclass(frozen=True)
class SecretData:
    """A Secret's decoded ``data`` and its resourceVersion; the repr never shows the data."""

    resource_version: str
    data: Mapping[str, bytes] = field(repr=False)

    @property
    def digest(self) -> str:
        """SHA-256 over the data, so a change is seen even without a new resourceVersion."""
        hasher = hashlib.sha256()
        for key in sorted(self.data):
            hasher.update(key.encode())
            hasher.update(b"\0")
            hasher.update(self.data[key])
            hasher.update(b"\0")
        return hasher.hexdigest()


class SecretReader(Protocol):
    """Reads one Secret of the management cluster; ``None`` when it does not exist.

    Any other failure (timeout, refused, 5xx) raises; the tracker keeps what it
    had and tries again later.
    """

    def read(self, namespace: str, name: str, *, timeout: float) -> SecretData | None: ...


class ApiSecretReader:
    """Live ``GET`` of a Secret through a ``kubernetes.client.ApiClient`` (raw JSON, timeout)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)

    def read(self, namespace: str, name: str, *, timeout: float) -> SecretData | None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._core.read_namespaced_secret(
                name, namespace, _request_timeout=(timeout, timeout), _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise RuntimeError(
                f"reading Secret {namespace}/{name} failed: {exc.status} {exc.reason}"
            ) from None
        raw: Any = response
        try:
            body: dict[str, Any] = json.loads(raw.data)
        finally:
            raw.release_conn()
        metadata = body.get("metadata") or {}
        data = decode_secret_data(body.get("data"), secret_name=f"{namespace}/{name}")
        return SecretData(str(metadata.get("resourceVersion") or ""), data)


class InMemorySecrets:
    """Secrets held in memory, with a resourceVersion bumped on every ``put``; thread-safe."""

    def __init__(self) -> None:
        self._secrets: dict[tuple[str, str], SecretData] = {}
        self._version = 0
        self._lock = threading.Lock()
        self.reads = 0

    def put(self, namespace: str, name: str, data: Mapping[str, bytes]) -> str:
        """Create or replace a Secret; returns its new resourceVersion."""
        with self._lock:
            self._version += 1
            version = str(self._version)
            self._secrets[(namespace, name)] = SecretData(version, dict(data))
            return version

    def delete(self, namespace: str, name: str) -> None:
        with self._lock:
            self._secrets.pop((namespace, name), None)

    def read(self, namespace: str, name: str, *, timeout: float) -> SecretData | None:
        with self._lock:
            self.reads += 1
            return self._secrets.get((namespace, name))


@dataclass(frozen=True, eq=False)
class EtcdCA:
    """The cluster's etcd CA: what signs our client certificates and what we trust.

    ``trust_pem`` is the whole ``tls.crt`` (a bundle during a CA rotation);
    ``signer`` is its first certificate with ``tls.key``. ``fingerprint`` changes
    whenever ``tls.crt`` does, which invalidates every certificate issued before.
    """

    signer: KeyPair
    trust_pem: bytes = field(repr=False)
    fingerprint: str
    resource_version: str


@dataclass(frozen=True, eq=False)
class WorkloadKubeconfig:
    """The parsed ``-kubeconfig`` Secret and a digest of its content (rebuild on change)."""

    kubeconfig: Kubeconfig
    digest: str
    resource_version: str


def etcd_secret_name(key: ClusterKey) -> str:
    return secret_name(key.name, SecretPurpose.ETCD)


def kubeconfig_secret_name(key: ClusterKey) -> str:
    return secret_name(key.name, SecretPurpose.KUBECONFIG)


def etcd_secret_ref(key: ClusterKey) -> str:
    """``namespace/name`` of the cluster's ``-etcd`` Secret, as messages name it."""
    return f"{key.namespace}/{etcd_secret_name(key)}"


def kubeconfig_secret_ref(key: ClusterKey) -> str:
    """``namespace/name`` of the cluster's ``-kubeconfig`` Secret, as messages name it."""
    return f"{key.namespace}/{kubeconfig_secret_name(key)}"


def load_etcd_ca(key: ClusterKey, secret: SecretData | None, *, retry_after: float) -> EtcdCA:
    """The etcd CA from the ``<cluster>-etcd`` Secret, or ``ClusterSecretError`` saying why not."""
    name = etcd_secret_ref(key)
    if secret is None:
        raise ClusterSecretError(
            f"Secret {name} not found; it must hold the cluster's etcd CA "
            f"({TLS_CERT_KEY} and tls.key) before etcd can be reached",
            retry_after=retry_after,
        )
    try:
        # The key must match the certificate (checked); the full RSA key validation
        # (~30 ms) is skipped: a damaged key shows as certificates etcd refuses.
        signer = key_pair_from_secret_data(
            secret.data, secret_name=name, require_ca=True, skip_rsa_validation=True
        )
    except CertificateError as exc:
        raise ClusterSecretError(str(exc), retry_after=retry_after) from None
    trust_pem = bytes(secret.data[TLS_CERT_KEY])
    return EtcdCA(
        signer=signer,
        trust_pem=trust_pem,
        fingerprint=hashlib.sha256(trust_pem.strip()).hexdigest(),
        resource_version=secret.resource_version,
    )


def load_kubeconfig(
    key: ClusterKey, secret: SecretData | None, *, retry_after: float
) -> WorkloadKubeconfig:
    """The kubeconfig from the ``<cluster>-kubeconfig`` Secret, or ``ClusterSecretError``."""
    name = kubeconfig_secret_ref(key)
    if secret is None:
        raise ClusterSecretError(
            f"Secret {name} not found; it must hold the workload cluster's admin kubeconfig "
            "in data key value",
            retry_after=retry_after,
        )
    try:
        kubeconfig = kubeconfig_from_secret_data(secret.data, secret_name=name)
    except KubeconfigError as exc:
        raise ClusterSecretError(str(exc), retry_after=retry_after) from None
    return WorkloadKubeconfig(kubeconfig, secret.digest, secret.resource_version)
