"""The `<cluster>-kubeconfig` Secret: an admin kubeconfig for the control-plane endpoint.

Its client certificate (`CN=kubernetes-admin`, `O=system:masters`, one year,
signed by the cluster CA) is replaced once less than half of its life remains —
but only when kcp controls the Secret: a kubeconfig the user wrote is theirs.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kcp.api import labels
from kcp.api.groups import SECRET
from kcp.certs import (
    KUBECONFIG_KEY,
    CertificateError,
    KeyPair,
    KubeconfigError,
    SecretPurpose,
    Usage,
    build_kubeconfig,
    decode_certificate,
    issue_certificate,
    kubeconfig_from_secret_data,
    kubeconfig_secret_data,
    secret_name,
)
from kcp.controlplane.secrets import SecretStore, cluster_secret, is_controlled_by
from kcp.rest import ApiError

__all__ = [
    "ADMIN_COMMON_NAME",
    "ADMIN_ORGANIZATION",
    "CLIENT_CERT_VALIDITY",
    "KubeconfigOutcome",
    "admin_kubeconfig",
    "needs_rotation",
    "reconcile_kubeconfig",
]

ADMIN_COMMON_NAME = "kubernetes-admin"
ADMIN_ORGANIZATION = "system:masters"
CLIENT_CERT_VALIDITY = timedelta(days=365)
"""Cluster API's default certificate duration."""
ROTATION_FRACTION = 0.5
_CLIENT_USAGE: tuple[Usage, ...] = ("client",)


@dataclass(frozen=True)
class KubeconfigOutcome:
    """What happened: `created`, `rotated`, `unchanged`, `user-owned` or `waiting`.

    `problem` says why nothing could be done.
    """

    action: str
    problem: str = ""


@dataclass(frozen=True)
class _ClientCertificate:
    not_before: datetime
    not_after: datetime
    server: str


def admin_kubeconfig(
    cluster_name: str, server: str, ca: KeyPair, *, now: datetime | None = None
) -> bytes:
    """A kubeconfig for `server` with a fresh admin client certificate signed by `ca`."""
    client = issue_certificate(
        ca,
        common_name=ADMIN_COMMON_NAME,
        organizations=(ADMIN_ORGANIZATION,),
        usages=_CLIENT_USAGE,
        validity=CLIENT_CERT_VALIDITY,
        now=now,
    )
    return build_kubeconfig(
        cluster_name=cluster_name,
        server=server,
        ca_pem=ca.cert_pem,
        client_cert_pem=client.cert_pem,
        client_key_pem=client.key_pem,
    )


def needs_rotation(not_before: datetime, not_after: datetime, now: datetime) -> bool:
    """Whether less than half of the certificate's life remains."""
    return now >= not_before + (not_after - not_before) * ROTATION_FRACTION


def _client_certificate(where: str, data: dict[str, bytes]) -> _ClientCertificate:
    kubeconfig = kubeconfig_from_secret_data(data, secret_name=where)
    if kubeconfig.client_cert_pem is None:
        raise KubeconfigError(f"Secret {where}: the kubeconfig has no client certificate")
    cert = decode_certificate(
        kubeconfig.client_cert_pem, what=f"Secret {where}: client certificate"
    )
    return _ClientCertificate(
        cert.not_valid_before_utc, cert.not_valid_after_utc, kubeconfig.server
    )


def reconcile_kubeconfig(
    store: SecretStore,
    kcp: Mapping[str, Any],
    cluster_name: str,
    endpoint: tuple[str, int],
    ca: KeyPair | None,
    *,
    now: datetime,
) -> KubeconfigOutcome:
    """Create the kubeconfig Secret when missing; rotate its certificate when due and ours."""
    metadata = kcp.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    name = secret_name(cluster_name, SecretPurpose.KUBECONFIG)
    where = f"{namespace}/{name}"
    server = f"https://{endpoint[0]}:{endpoint[1]}"
    try:
        found = store.parsed_secret(
            namespace, name, "kubeconfig", lambda data: _client_certificate(where, data)
        )
    except (KubeconfigError, CertificateError) as error:
        # A kubeconfig we cannot read: replace it only if it is ours.
        meta = store.exists(namespace, name) or store.read(namespace, name) or {}
        if not is_controlled_by(meta, str(metadata.get("uid") or "")):
            return KubeconfigOutcome("user-owned", str(error))
        found_meta: Mapping[str, Any] | None = meta
        cert = None
    else:
        if found is None:
            return _create(store, kcp, namespace, name, cluster_name, server, ca, now)
        found_meta, cert = found
    if not is_controlled_by(found_meta or {}, str(metadata.get("uid") or "")):
        return KubeconfigOutcome("user-owned")
    if (
        cert is not None
        and not needs_rotation(cert.not_before, cert.not_after, now)
        and (cert.server == server)
    ):
        return KubeconfigOutcome("unchanged")
    if ca is None:
        return KubeconfigOutcome("waiting", "the cluster CA is not available")
    try:
        value = admin_kubeconfig(cluster_name, server, ca, now=now)
    except CertificateError as error:
        return KubeconfigOutcome(
            "waiting", f"Secret {where}: cannot issue a client certificate: {error}"
        )
    version = ((found_meta or {}).get("metadata") or {}).get("resourceVersion")
    encoded = base64.b64encode(value).decode("ascii")
    written = store.kube.merge_patch(
        SECRET,
        namespace,
        name,
        {"metadata": {"resourceVersion": version}, "data": {KUBECONFIG_KEY: encoded}},
    )
    store.remember_written("kubeconfig", written, lambda data: _client_certificate(where, data))
    return KubeconfigOutcome("rotated")


def _create(  # noqa: PLR0917
    store: SecretStore,
    kcp: Mapping[str, Any],
    namespace: str,
    name: str,
    cluster_name: str,
    server: str,
    ca: KeyPair | None,
    now: datetime,
) -> KubeconfigOutcome:
    if ca is None:
        return KubeconfigOutcome("waiting", "the cluster CA is not available")
    try:
        value = admin_kubeconfig(cluster_name, server, ca, now=now)
    except CertificateError as error:
        return KubeconfigOutcome(
            "waiting", f"Secret {namespace}/{name}: cannot issue a client certificate: {error}"
        )
    watch_value = ((kcp.get("metadata") or {}).get("labels") or {}).get(labels.WATCH_LABEL)
    body = cluster_secret(
        namespace=namespace,
        name=name,
        cluster_name=cluster_name,
        data=kubeconfig_secret_data(value),
        owner=kcp,
        extra_labels={labels.WATCH_LABEL: watch_value} if watch_value else None,
    )
    try:
        created = store.kube.create(SECRET, namespace, body)
    except ApiError as error:
        if error.status == 409:
            return KubeconfigOutcome("unchanged")
        raise
    where = f"{namespace}/{name}"
    store.remember_written("kubeconfig", created, lambda data: _client_certificate(where, data))
    return KubeconfigOutcome("created")
