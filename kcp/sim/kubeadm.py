"""What kubeadm makes of a control-plane node's configuration: its settings and its etcd start.

Pure functions over the kubeadm documents (`kcp.sim.bootdata`): the settings a
node's etcd and kube-apiserver run with (service range, certificate SANs, extra
arguments), and whether its etcd starts a new cluster or joins the running one.
What `kubeadm init` uploads to the new cluster is `kcp.sim.kubeadm_init`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kcp.sim.bootdata import DEFAULT_CERTIFICATES_DIR, KubeadmCommand

__all__ = [
    "APISERVER_OWNED_FLAGS",
    "ETCD_OWNED_FLAGS",
    "EtcdStart",
    "EtcdStartConflict",
    "NodeSettings",
    "etcd_start",
    "node_settings",
]

_DEFAULT_SERVICE_SUBNET = "10.96.0.0/12"
_DEFAULT_DNS_DOMAIN = "cluster.local"

APISERVER_OWNED_FLAGS = frozenset(
    {
        "advertise-address",
        "bind-address",
        "secure-port",
        "etcd-servers",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
        "cert-dir",
        "tls-cert-file",
        "tls-private-key-file",
        "client-ca-file",
        "service-account-key-file",
        "service-account-signing-key-file",
        "service-cluster-ip-range",
        "endpoint-reconciler-type",
        "requestheader-client-ca-file",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        # The load balancer checks /readyz anonymously, as a TCP load balancer's probe would.
        "anonymous-auth",
    }
)
"""kube-apiserver flags the simulator sets itself: addresses, ports and its own files."""

ETCD_OWNED_FLAGS = frozenset(
    {
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "listen-metrics-urls",
        "initial-cluster",
        "initial-cluster-state",
        "initial-cluster-token",
        "client-cert-auth",
        "trusted-ca-file",
        "cert-file",
        "key-file",
        "peer-client-cert-auth",
        "peer-trusted-ca-file",
        "peer-cert-file",
        "peer-key-file",
    }
)
"""etcd flags the simulator sets itself: membership, addresses and its own files."""


@dataclass(frozen=True)
class NodeSettings:
    """What a control-plane node's processes run with, from the cluster's ClusterConfiguration."""

    service_cidr: str
    """The first range of `networking.serviceSubnet` (what `--service-cluster-ip-range` gets)."""
    dns_domain: str
    cert_sans: tuple[str, ...]
    """`apiServer.certSANs`."""
    etcd_server_sans: tuple[str, ...]
    etcd_peer_sans: tuple[str, ...]
    apiserver_args: tuple[str, ...]
    """`apiServer.extraArgs` as `--name=value`, minus the flags the simulator owns."""
    etcd_args: tuple[str, ...]
    """`etcd.local.extraArgs` as `--name=value`, minus the flags the simulator owns."""
    certificates_dir: str
    ignored: tuple[str, ...] = ()
    """Extra arguments left out, with why (for a warning in the machine's log)."""


def node_settings(
    cluster_configuration: Mapping[str, Any] | None,
    *,
    default_service_cidr: str = _DEFAULT_SERVICE_SUBNET,
    host_path: Callable[[str], str] | None = None,
) -> NodeSettings:
    """The node's settings; `host_path` maps a path on the node to where the simulator keeps it.

    An extra argument whose value is an absolute path is rewritten through
    `host_path` (the node's disk is a directory of the simulator's).
    """
    config = cluster_configuration or {}
    networking = _mapping(config.get("networking"))
    subnets = str(networking.get("serviceSubnet") or default_service_cidr)
    service_cidr = subnets.split(",", maxsplit=1)[0].strip() or default_service_cidr
    api_server = _mapping(config.get("apiServer"))
    local_etcd = _mapping(_mapping(config.get("etcd")).get("local"))
    ignored: list[str] = []
    apiserver_args = _flags(
        api_server.get("extraArgs"), APISERVER_OWNED_FLAGS, "kube-apiserver", host_path, ignored
    )
    etcd_args = _flags(local_etcd.get("extraArgs"), ETCD_OWNED_FLAGS, "etcd", host_path, ignored)
    return NodeSettings(
        service_cidr=service_cidr,
        dns_domain=str(networking.get("dnsDomain") or _DEFAULT_DNS_DOMAIN),
        cert_sans=_strings(api_server.get("certSANs")),
        etcd_server_sans=_strings(local_etcd.get("serverCertSANs")),
        etcd_peer_sans=_strings(local_etcd.get("peerCertSANs")),
        apiserver_args=apiserver_args,
        etcd_args=etcd_args,
        certificates_dir=str(config.get("certificatesDir") or DEFAULT_CERTIFICATES_DIR),
        ignored=tuple(ignored),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _flags(
    extra_args: object,
    owned: frozenset[str],
    component: str,
    host_path: Callable[[str], str] | None,
    ignored: list[str],
) -> tuple[str, ...]:
    """`extraArgs` (v1beta4 list of name/value, or v1beta3 map) as command-line flags."""
    pairs: list[tuple[str, str]] = []
    if isinstance(extra_args, list):
        for arg in extra_args:
            if isinstance(arg, Mapping) and arg.get("name"):
                pairs.append((str(arg["name"]), str(arg.get("value") or "")))
    elif isinstance(extra_args, Mapping):
        pairs = [(str(k), str(v)) for k, v in extra_args.items()]
    flags: list[str] = []
    for raw_name, raw_value in pairs:
        name, value = raw_name.lstrip("-"), raw_value
        if name in owned:
            ignored.append(f"{component} --{name}: set by the simulator")
            continue
        if value.startswith("/") and host_path is not None:
            if ".." in value.split("/"):
                ignored.append(f"{component} --{name}: path {value} leaves the node's disk")
                continue
            value = host_path(value)
        flags.append(f"--{name}={value}")
    return tuple(flags)


# -- etcd -------------------------------------------------------------------------------


EtcdStart = Literal["new", "join"]


class EtcdStartConflict(RuntimeError):
    """The kubeadm command does not fit the running cluster (a second init, nothing to join)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry
        """True when waiting may resolve it (members down); False when the data is wrong."""


def etcd_start(command: KubeadmCommand, running_members: Sequence[str]) -> EtcdStart:
    """How this node's etcd starts: a new cluster on init, a member added on join.

    `running_members` names the machines of the cluster whose etcd runs now
    (this one excluded). An init beside running members would start a second,
    separate cluster; a join with none running has nothing to join through.
    """
    if command is KubeadmCommand.INIT:
        if running_members:
            raise EtcdStartConflict(
                "the bootstrap data runs `kubeadm init`, but etcd already runs on "
                f"{', '.join(sorted(running_members))}: a second init would start a separate "
                "cluster. Only the first control-plane machine gets init data (the bootstrap "
                "provider's init lock); delete this Machine so a joining one replaces it",
                retry=False,
            )
        return "new"
    if not running_members:
        raise EtcdStartConflict(
            "the bootstrap data runs `kubeadm join`, but no etcd member of the cluster runs "
            "to add this machine through; waiting for one",
            retry=True,
        )
    return "join"
