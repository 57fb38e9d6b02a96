"""Health probes of a workload cluster's API server and etcd, and the state they build.

Each probe is bounded by the probe timeout and reports a ``ProbeResult`` (never
raises): ``success``, ``failure``, ``timeout`` or ``unauthorized`` (the API
server answered 401, which disconnects the cluster at once). The etcd probe
asks the known endpoints in turn, starting with the last one that answered, and
succeeds as soon as one member answers and sees a leader: a member being
replaced must not make the whole cluster look down.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import urllib3

from kcp.etcd import (
    DIRECT,
    ChannelPool,
    Dialer,
    EtcdCallTimeout,
    EtcdClient,
    EtcdError,
    EtcdTimeouts,
    EtcdTLS,
)
from kcp.tracker.metrics import HealthResult, ProbeTarget
from kcp.tracker.workload import WorkloadClient

__all__ = ["ClusterHealth", "ConnectionState", "ProbeResult", "probe_api_server", "probe_etcd"]

ConnectionState = Literal["connecting", "connected", "down"]


@dataclass(frozen=True)
class ClusterHealth:
    """What the reconciler may read about a cluster's connection (a snapshot).

    ``api_server_ok`` and ``etcd_ok`` are None until that part has been probed.
    ``last_error`` is the newest problem in words fit for a condition message.
    """

    connected: bool
    api_server_ok: bool | None
    etcd_ok: bool | None
    last_error: str
    consecutive_failures: int
    last_probe_time: datetime | None
    state: ConnectionState


@dataclass(frozen=True)
class ProbeResult:
    target: ProbeTarget
    result: HealthResult
    error: str = ""
    answered_by: str = ""
    """For etcd: the endpoint that answered."""

    @property
    def ok(self) -> bool:
        return self.result == "success"


def probe_api_server(
    client: WorkloadClient, timeout: float, *, kubeconfig_source: str = "its kubeconfig Secret"
) -> ProbeResult:
    """``GET /readyz`` on the workload API server.

    ``kubeconfig_source`` names the Secret its credentials came from (on a 401)."""
    where = f"workload API server {client.server}"
    try:
        status, body = client.probe("/readyz", timeout=timeout)
    except (ConnectionRefusedError, socket.gaierror) as exc:
        return ProbeResult("api_server", "failure", f"{where} is unreachable: {exc}")
    except urllib3.exceptions.NewConnectionError as exc:
        # Refused, or the name does not resolve: urllib3 2 derives these from
        # ConnectTimeoutError, but nothing timed out and no waiting will help.
        return ProbeResult("api_server", "failure", f"{where} is unreachable: {exc}")
    except (urllib3.exceptions.TimeoutError, TimeoutError):
        return ProbeResult(
            "api_server", "timeout", f"{where} did not answer /readyz within {timeout:g}s"
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return ProbeResult("api_server", "failure", f"{where} is unreachable: {reason}")
    if status == 200:
        return ProbeResult("api_server", "success")
    if status == 401:
        return ProbeResult(
            "api_server",
            "unauthorized",
            f"{where} refused the kubeconfig's credentials (401 Unauthorized); "
            f"check {kubeconfig_source}",
        )
    text = body[:200].decode("utf-8", "replace").strip()
    return ProbeResult("api_server", "failure", f"{where} answered /readyz with {status}: {text}")


def probe_etcd(
    endpoints: Sequence[str],
    tls: EtcdTLS,
    pool: ChannelPool,
    timeout: float,
    *,
    prefer: str = "",
    dialer: Dialer = DIRECT,
) -> ProbeResult:
    """Etcd ``Status`` on the endpoints in turn until one answers and sees a leader (Pod
    endpoints through ``dialer``'s port-forward)."""
    if not endpoints:
        return ProbeResult("etcd", "failure", "no etcd endpoints are known for this cluster")
    order = sorted(endpoints, key=lambda endpoint: endpoint != prefer)
    timeouts = EtcdTimeouts(dial=timeout, call=timeout)
    problems: list[str] = []
    timeouts_seen = 0
    for endpoint in order:
        started = time.monotonic()
        try:
            client = EtcdClient.open(endpoint, tls, timeouts=timeouts, pool=pool, dialer=dialer)
            status = client.status()
        except EtcdCallTimeout as exc:
            timeouts_seen += 1
            problems.append(str(exc))
            continue
        except (EtcdError, ValueError) as exc:
            # A silent server shows as a connection that never completes: a dial timeout.
            if time.monotonic() - started >= timeout:
                timeouts_seen += 1
            problems.append(str(exc))
            continue
        if status.has_leader:
            return ProbeResult("etcd", "success", answered_by=endpoint)
        problems.append(f"etcd member at {endpoint} sees no leader")
    result: HealthResult = "timeout" if timeouts_seen == len(order) else "failure"
    return ProbeResult("etcd", result, "; ".join(problems))
