"""The two etcd timeouts, with their defaults written once."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_CALL_TIMEOUT", "DEFAULT_DIAL_TIMEOUT", "EtcdTimeouts"]

DEFAULT_DIAL_TIMEOUT = 10.0
"""Seconds; Cluster API's ``--etcd-dial-timeout-duration`` default (10s)."""
DEFAULT_CALL_TIMEOUT = 15.0
"""Seconds; Cluster API's ``--etcd-call-timeout-duration`` default (15s)."""


@dataclass(frozen=True)
class EtcdTimeouts:
    """How long etcd access may wait; every client call honours both."""

    dial: float = DEFAULT_DIAL_TIMEOUT
    """Seconds to wait for a connection (TCP + TLS handshake) before ``EtcdUnavailable``."""
    call: float = DEFAULT_CALL_TIMEOUT
    """Seconds one RPC may take once connected before ``EtcdCallTimeout``."""

    def __post_init__(self) -> None:
        if self.dial <= 0 or self.call <= 0:
            raise ValueError(
                f"etcd timeouts must be positive, got dial={self.dial} call={self.call}"
            )
