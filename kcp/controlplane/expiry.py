"""When a Machine's certificates expire: read once from its API server, kept on its KubeadmConfig.

`spec.rollout.before.certificatesExpiryDays` needs each Machine's certificate
expiry. As Cluster API does, kcp reads the notAfter of the certificate the
Machine's kube-apiserver serves (verified against the cluster CA) and records
it in the `machine.cluster.x-k8s.io/certificates-expiry` annotation of the
Machine's KubeadmConfig, so it is read once per Machine, not once per reconcile.
The API server is reached like etcd (`--etcd-access`): through a port-forward
to the Pod `kube-system/kube-apiserver-<node>`, or at its advertised address.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography import x509

from kcp.api import labels
from kcp.api.conditions import rfc3339
from kcp.api.objects import MachineView, parse_time
from kcp.etcd import DIRECT, Dialer, EtcdAccessMode, PodEndpoint

__all__ = [
    "APISERVER_ENDPOINT_ANNOTATION",
    "apiserver_endpoint",
    "expiry_annotation",
    "recorded_expiry",
    "serving_certificate_expiry",
]

APISERVER_ENDPOINT_ANNOTATION = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"
"""Set by kubeadm on the kube-apiserver static Pod: `host:port` the API server serves on."""
DEFAULT_TIMEOUT = 3.0
APISERVER_PORT = 6443
"""kubeadm's default bind port, when the Pod's annotation does not say."""
KUBE_SYSTEM = "kube-system"


def apiserver_endpoint(
    machine: MachineView,
    pods: Mapping[str, Mapping[str, Any]],
    *,
    access: EtcdAccessMode = "direct",
) -> tuple[str, int] | None:
    """Where the Machine's own kube-apiserver is reached, if its static Pod is listed:
    `("kube-system/kube-apiserver-<node>", port)` through a port-forward, or the
    `(host, port)` its Pod's annotation advertises."""
    node = machine.node_name
    if not node:
        return None
    name = f"kube-apiserver-{node}"
    pod = pods.get(name)
    if pod is None:
        return None
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(
        APISERVER_ENDPOINT_ANNOTATION
    )
    host, port = "", ""
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
    if access == "port-forward":
        return f"{KUBE_SYSTEM}/{name}", int(port) if port.isdigit() else APISERVER_PORT
    return (host, int(port)) if port.isdigit() and host else None


def serving_certificate_expiry(
    endpoint: tuple[str, int],
    ca_pem: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    dialer: Dialer = DIRECT,
) -> datetime:
    """The notAfter of the certificate served at `endpoint`, which must chain to `ca_pem`.

    `endpoint` is a host or a Pod (`kube-system/kube-apiserver-<node>`), which `dialer`
    reaches through a port-forward. The host name is not checked (a Machine's
    certificate names its node and addresses, not necessarily the one dialled);
    raises OSError, ssl.SSLError or `kcp.etcd.EtcdTunnelError`.
    """
    host, port = endpoint
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sni = None if PodEndpoint.parse(target) is not None else host
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii", "replace"))
    context.check_hostname = False
    with (
        dialer.connect(target, timeout).sock as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{endpoint[0]}:{endpoint[1]} presented no certificate")
    return x509.load_der_x509_certificate(der).not_valid_after_utc


def recorded_expiry(
    machine: MachineView, kubeadm_config: Mapping[str, Any] | None
) -> datetime | None:
    """What is known of the Machine's certificate expiry: its own, else its KubeadmConfig's."""
    known = machine.certificates_expiry_date
    if known is not None:
        return known
    annotations = ((kubeadm_config or {}).get("metadata") or {}).get("annotations") or {}
    return parse_time(annotations.get(labels.MACHINE_CERTIFICATES_EXPIRY_DATE_ANNOTATION))


def expiry_annotation(expiry: datetime) -> dict[str, Any]:
    """The metadata patch recording `expiry` on a KubeadmConfig."""
    return {
        "metadata": {
            "annotations": {labels.MACHINE_CERTIFICATES_EXPIRY_DATE_ANNOTATION: rfc3339(expiry)}
        }
    }
