"""How gRPC failures become typed errors with messages that say what to fix."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from kcp.etcd import (
    EtcdCallTimeout,
    EtcdError,
    EtcdMemberNotFound,
    EtcdNotLeader,
    EtcdTLSError,
    EtcdUnavailable,
)
from kcp.etcd.errors import is_transport_failure, translate


class _Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A finished call as gRPC reports it: a code and its details text."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


U = grpc.StatusCode.UNAVAILABLE
CASES = [
    (
        U,
        "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
        "Unwrap failed (TSI_DATA_CORRUPTED)",
        EtcdTLSError,
        "refused our client certificate",
    ),
    (
        U,
        "last error: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
        "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
        EtcdTLSError,
        "not signed by the etcd CA we trust",
    ),
    (
        U,
        "Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification "
        "Check failed.",
        EtcdTLSError,
        "does not name the address",
    ),
    (
        U,
        "last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host: "
        "Connection refused",
        EtcdUnavailable,
        "unreachable",
    ),
    (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "Deadline Exceeded",
        EtcdCallTimeout,
        "call timeout of 15s",
    ),
    (grpc.StatusCode.CANCELLED, "Channel closed!", EtcdUnavailable, "connection was closed"),
    (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: not leader", EtcdNotLeader, "leader"),
    (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found", EtcdMemberNotFound, "not found"),
    (U, "etcdserver: request timed out", EtcdCallTimeout, "through raft in time"),
    (U, "etcdserver: unhealthy cluster", EtcdUnavailable, "retry later"),
    (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: bad leader transferee",
        EtcdError,
        "transferee",
    ),
]


@pytest.mark.parametrize(("code", "details", "kind", "says"), CASES)
def test_grpc_failures_become_typed_errors(
    code: grpc.StatusCode, details: str, kind: type[EtcdError], says: str
) -> None:
    error = translate(
        _Failed(code, details), endpoint="127.0.0.1:1", action="status", call_timeout=15
    )
    assert type(error) is kind
    assert says in str(error)
    assert str(error).startswith("etcd status at 127.0.0.1:1")
    assert error.endpoint == "127.0.0.1:1"


def test_an_untrusted_server_names_where_the_trusted_ca_came_from() -> None:
    details = "Tls handshake failed: SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED"
    error = translate(
        _Failed(U, details),
        endpoint="127.0.0.1:1",
        action="status",
        call_timeout=15,
        ca_source="Secret ns/c1-etcd",
    )
    assert "check Secret ns/c1-etcd against the certificate etcd serves" in str(error)
    unnamed = translate(_Failed(U, details), endpoint="127.0.0.1:1", action="s", call_timeout=1)
    assert "<cluster>" not in str(unnamed) and "{" not in str(unnamed)


def test_only_connection_failures_count_as_transport_failures() -> None:
    assert is_transport_failure(_Failed(U, "Connection refused"))
    assert is_transport_failure(_Failed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert not is_transport_failure(_Failed(U, "etcdserver: request timed out"))
    assert not is_transport_failure(_Failed(grpc.StatusCode.NOT_FOUND, "etcdserver: x"))


def test_tls_errors_are_also_unavailable() -> None:
    assert issubclass(EtcdTLSError, EtcdUnavailable)
    assert issubclass(EtcdUnavailable, EtcdError)
