"""How one etcd member is addressed and launched, shared by every place that runs real etcd.

`LocalControlPlane` (one member, client TLS only), `EtcdCluster` (test members
with mutual TLS) and the simulator's machines (kubeadm-style members) all start
etcd the same way; only which optional parts they ask for differs. Flags keep
one fixed order so a launch's argv reads the same wherever it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EtcdTuning", "MemberURLs", "TLSFiles", "etcd_argv"]


class MemberURLs:
    """The URLs of a member on `host` with client, peer and metrics ports.

    A mixin: the class that uses it provides the four attributes (as fields,
    or as constants where the ports are fixed).
    """

    host: str
    client_port: int
    peer_port: int
    metrics_port: int

    @property
    def client_url(self) -> str:
        return f"https://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"https://{_url_host(self.host)}:{self.peer_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.metrics_port}"

    @property
    def endpoint(self) -> str:
        """`host:port` of the client URL, as gRPC dials it."""
        return f"{_url_host(self.host)}:{self.client_port}"


def _url_host(host: str) -> str:
    # An IPv6 literal needs brackets in a URL.
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class TLSFiles:
    """The CA a listener trusts and the certificate and key it presents."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class EtcdTuning:
    """Raft and storage settings for members that take real load (tests, simulator)."""

    snapshot_count: int
    quota_backend_bytes: int = 256 * 1024 * 1024
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000


def etcd_argv(
    binary: Path,
    *,
    name: str,
    data_dir: Path,
    client_url: str,
    peer_url: str,
    initial_cluster: str,
    client_tls: TLSFiles,
    peer_tls: TLSFiles | None = None,
    metrics_url: str | None = None,
    state: str | None = None,
    token: str | None = None,
    tuning: EtcdTuning | None = None,
) -> list[str]:
    """argv for one member; a None option leaves its flags out (etcd's default applies).

    Client connections always need a certificate from `client_tls.ca`; with
    `peer_tls` peers do too. `token` is only for a member of a new cluster.
    """
    argv = [
        str(binary),
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
    ]
    if metrics_url is not None:
        argv.append(f"--listen-metrics-urls={metrics_url}")
    argv.append(f"--initial-cluster={initial_cluster}")
    if state is not None:
        argv.append(f"--initial-cluster-state={state}")
    argv += [
        "--client-cert-auth",
        f"--trusted-ca-file={client_tls.ca}",
        f"--cert-file={client_tls.cert}",
        f"--key-file={client_tls.key}",
    ]
    if peer_tls is not None:
        argv += [
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={peer_tls.ca}",
            f"--peer-cert-file={peer_tls.cert}",
            f"--peer-key-file={peer_tls.key}",
        ]
    if tuning is not None:
        argv += [
            f"--snapshot-count={tuning.snapshot_count}",
            f"--quota-backend-bytes={tuning.quota_backend_bytes}",
            f"--heartbeat-interval={tuning.heartbeat_interval_ms}",
            f"--election-timeout={tuning.election_timeout_ms}",
        ]
    # Every caller's store is throwaway (tests, simulated machines): fsync buys nothing.
    argv += ["--unsafe-no-fsync", "--log-level=warn"]
    if token is not None:
        argv.append(f"--initial-cluster-token={token}")
    return argv
