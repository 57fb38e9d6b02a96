"""The simulator's API clients: the management cluster's, and a workload cluster's.

Everything the simulator writes carries its own field manager, `kcp-sim`: status
goes through server-side apply, so conditions it does not own (kcp's on a
Machine) stay intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kcp.rest import Kube, Timeout

__all__ = ["FIELD_MANAGER", "certificate_client", "management_client"]

FIELD_MANAGER = "kcp-sim"
TIMEOUT = 10.0
"""Seconds a request to the management API server may take."""


def _timeout(seconds: float) -> Timeout:
    # Everything is on loopback: a connection not made in 5 s is not coming.
    return (min(5.0, seconds), seconds)


def management_client(api_client: Any) -> Kube:
    return Kube(api_client, field_manager=FIELD_MANAGER, timeout=_timeout(TIMEOUT))


def certificate_client(
    url: str, *, ca_file: Path, cert_file: Path, key_file: Path, timeout: float
) -> Kube:
    """A client of `url` that trusts `ca_file` and presents the certificate in `cert_file`."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = url
    configuration.ssl_ca_cert = str(ca_file)
    configuration.cert_file = str(cert_file)
    configuration.key_file = str(key_file)
    return Kube(
        client.ApiClient(configuration), field_manager=FIELD_MANAGER, timeout=_timeout(timeout)
    )
