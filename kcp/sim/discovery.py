"""Bootstrap-token discovery: how a joining node finds the cluster and reads its configuration.

As `kubeadm join` does with a `discovery.bootstrapToken`: read the public
`kube-public/cluster-info` ConfigMap anonymously from the endpoint, trust the
CA in it only if it matches one of the pinned `caCertHashes`, then read
`kube-system/kubeadm-config` with the bootstrap token over TLS verified
against that CA. That request is what proves the token and the RBAC `kubeadm
init` created work. The JWS signature kube-controller-manager's bootstrap
signer would add to `cluster-info` is not checked: no controller manager runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from kcp import certs
from kcp.sim.bootdata import KUBEADM_API_VERSIONS, TokenDiscovery, ca_cert_hash

__all__ = [
    "ClusterInfo",
    "DiscoveryError",
    "cluster_configuration_from_config_map",
    "cluster_info_from_config_map",
    "discover",
    "verify_pinned_ca",
]

_CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
_KUBEADM_CONFIG = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config"


class DiscoveryError(RuntimeError):
    """The joining node could not find or trust the cluster, or read its configuration."""


@dataclass(frozen=True)
class ClusterInfo:
    """What `cluster-info` says: where the API server is, and its CA."""

    server: str
    ca_pem: bytes = field(repr=False)


def discover(discovery: TokenDiscovery, *, timeout: float) -> tuple[ClusterInfo, dict[str, Any]]:
    """Find the cluster through `discovery` and read its ClusterConfiguration with the token."""
    endpoint = discovery.api_server_endpoint
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    config_map = _get(f"https://{endpoint}{_CLUSTER_INFO}", insecure, None, timeout, discovery)
    info = cluster_info_from_config_map(config_map, source=f"cluster-info at {endpoint}")
    verify_pinned_ca(info.ca_pem, discovery)
    trusted = ssl.create_default_context(cadata=info.ca_pem.decode())
    kubeadm_config = _get(
        f"{info.server.rstrip('/')}{_KUBEADM_CONFIG}", trusted, discovery.token, timeout, discovery
    )
    return info, cluster_configuration_from_config_map(kubeadm_config)


def verify_pinned_ca(ca_pem: bytes, discovery: TokenDiscovery) -> None:
    """Refuse a CA whose public key matches none of the pins (unless verification is skipped)."""
    if discovery.unsafe_skip_ca_verification and not discovery.ca_cert_hashes:
        return
    try:
        certificate = certs.decode_certificate(ca_pem, what="the CA in cluster-info")
    except certs.CertificateError as error:
        raise DiscoveryError(str(error)) from None
    pin = ca_cert_hash(certificate)
    if pin not in {h.lower() for h in discovery.ca_cert_hashes}:
        raise DiscoveryError(
            f"the CA in cluster-info at {discovery.api_server_endpoint} ({pin}) matches none of "
            "JoinConfiguration.discovery.bootstrapToken.caCertHashes: the endpoint serves "
            "another cluster, or the pins were computed from another CA"
        )


def cluster_info_from_config_map(config_map: Mapping[str, Any], *, source: str) -> ClusterInfo:
    """The server and CA of the kubeconfig in a `cluster-info` ConfigMap."""
    data = config_map.get("data")
    text = data.get("kubeconfig") if isinstance(data, Mapping) else None
    if not text:
        raise DiscoveryError(f"{source} has no data key kubeconfig")
    try:
        document = yaml.safe_load(str(text))
        cluster = document["clusters"][0]["cluster"]
        server = str(cluster["server"])
        ca_pem = base64.b64decode(str(cluster["certificate-authority-data"]), validate=True)
    except (yaml.YAMLError, KeyError, IndexError, TypeError, binascii.Error, ValueError):
        raise DiscoveryError(
            f"{source} holds no usable kubeconfig (a cluster with server and "
            "certificate-authority-data)"
        ) from None
    return ClusterInfo(server=server, ca_pem=ca_pem)


def cluster_configuration_from_config_map(config_map: Mapping[str, Any]) -> dict[str, Any]:
    """The ClusterConfiguration `kubeadm init` stored in `kube-system/kubeadm-config`."""
    data = config_map.get("data")
    text = data.get("ClusterConfiguration") if isinstance(data, Mapping) else None
    try:
        document = yaml.safe_load(str(text)) if text else None
    except yaml.YAMLError:
        document = None
    if not isinstance(document, dict) or document.get("apiVersion") not in KUBEADM_API_VERSIONS:
        raise DiscoveryError(
            "kube-system/kubeadm-config holds no kubeadm ClusterConfiguration under key "
            "ClusterConfiguration; the first control-plane machine's `kubeadm init` writes it"
        )
    return document


def _get(
    url: str,
    context: ssl.SSLContext,
    token: str | None,
    timeout: float,
    discovery: TokenDiscovery,
) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    who = f"bootstrap token {discovery.token_id}" if token else "an anonymous request"
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read()
    except urllib.error.HTTPError as error:
        raise DiscoveryError(_refusal(url, error.code, who)) from None
    except (OSError, ssl.SSLError) as error:
        raise DiscoveryError(f"GET {url} failed: {error}") from None
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        raise DiscoveryError(f"GET {url} did not return a JSON object")
    return decoded


def _refusal(url: str, code: int, who: str) -> str:
    if code == 401:
        return (
            f"GET {url} with {who}: 401 Unauthorized; the token is unknown to the cluster or "
            "expired (the bootstrap provider creates it in kube-system and refreshes it until "
            "the Machine has a nodeRef)"
        )
    if code == 403:
        return (
            f"GET {url} with {who}: 403 Forbidden; the RBAC rules `kubeadm init` creates "
            "(kubeadm:bootstrap-signer-clusterinfo, kubeadm:nodes-kubeadm-config) are missing"
        )
    if code == 404:
        return (
            f"GET {url}: 404 Not Found; the first control-plane machine's `kubeadm init` did "
            "not upload it yet"
        )
    return f"GET {url} with {who}: HTTP {code}"
