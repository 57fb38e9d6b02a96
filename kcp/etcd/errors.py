"""What can go wrong talking to a workload etcd, as small typed exceptions.

gRPC reports every failure as an ``RpcError`` whose text mixes transport detail
with the cause; ``translate`` turns it into one of these, with a message that
says what to check. Messages never contain key material (gRPC's details never
do, and nothing else goes in), so they are safe for conditions, Events and logs.
"""

from __future__ import annotations

import ssl

import grpc

__all__ = [
    "DEFAULT_CA_SOURCE",
    "EtcdCallTimeout",
    "EtcdError",
    "EtcdMemberNotFound",
    "EtcdNotLeader",
    "EtcdTLSError",
    "EtcdTunnelError",
    "EtcdUnavailable",
    "is_transport_failure",
    "server_error",
    "tls_error",
    "translate",
]


class EtcdError(Exception):
    """Any failure of an etcd call; ``endpoint`` is the ``host:port`` it was sent to."""

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint


class EtcdUnavailable(EtcdError):
    """The endpoint could not be reached: refused, silent past the dial timeout, or closed."""


class EtcdTLSError(EtcdUnavailable):
    """The TLS handshake failed: our client certificate was refused, or the server's not trusted.

    A subclass of ``EtcdUnavailable`` because the member is unreachable for us either
    way; catch it first to tell the user which certificate to fix.
    """


class EtcdTunnelError(EtcdUnavailable):
    """A port-forward through the workload API server could not be opened, or died in use.

    ``reason`` is one word for metrics (``not_found``, ``forbidden``, ``unauthorized``,
    ``rejected``, ``unreachable``, ``tls``, ``timeout``, ``port``, ``lost``, ``closed``,
    ``no_route``); the message names the Pod and what to check.
    """

    def __init__(self, message: str, *, reason: str, endpoint: str = "") -> None:
        super().__init__(message, endpoint=endpoint)
        self.reason = reason


class EtcdCallTimeout(EtcdError):
    """A call got no answer within the call timeout (the connection itself was up)."""


class EtcdNotLeader(EtcdError):
    """The request must be sent to the leader (e.g. move leader) and this member is not it."""


class EtcdMemberNotFound(EtcdError):
    """The member id is not (or no longer) in the cluster."""


DEFAULT_CA_SOURCE = "the etcd CA certificate we were given"
"""Where the trusted etcd CA came from, when the caller does not say (see ``EtcdTLS``)."""

_NAME_MISMATCH = (
    "the server's certificate does not name the address we dialled "
    "(its subject alternative names must include it, or pass the server name it carries)"
)

# Substrings of gRPC's details, most specific first, and what they mean for the user.
_TLS_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("CERTIFICATE_VERIFY_FAILED",),
        "the server's certificate is not signed by the etcd CA we trust "
        "(check {ca_source} against the certificate etcd serves)",
    ),
    (("Hostname Verification", "hostname mismatch"), _NAME_MISMATCH),
    (
        ("TSI_DATA_CORRUPTED", "Unwrap failed", "ALERT", "certificate required"),
        "the server refused our client certificate (it must be signed by the etcd CA the "
        "server trusts, be valid now and carry client-auth usage)",
    ),
    (
        ("handshake failed", "SSL_ERROR", "TSI_"),
        "the TLS handshake failed",
    ),
)


def _tls_cause(details: str, ca_source: str) -> str | None:
    folded = details.casefold()
    for markers, cause in _TLS_CAUSES:
        if any(marker.casefold() in folded for marker in markers):
            return cause.format(ca_source=ca_source)
    return None


_TRANSPORT_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)
_SERVER_PREFIX = "etcdserver:"


def _code_and_details(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    if isinstance(exc, grpc.Call):
        return exc.code(), exc.details() or ""
    return None, str(exc)


def is_transport_failure(exc: grpc.RpcError) -> bool:
    """Whether the connection itself failed (as opposed to etcd answering with an error)."""
    code, details = _code_and_details(exc)
    return code in _TRANSPORT_CODES and not details.startswith(_SERVER_PREFIX)


def translate(
    exc: grpc.RpcError,
    *,
    endpoint: str,
    action: str,
    call_timeout: float,
    ca_source: str = DEFAULT_CA_SOURCE,
) -> EtcdError:
    """The typed error for a failed gRPC call ``action`` (e.g. ``"status"``) to ``endpoint``.

    ``ca_source`` names where the trusted etcd CA came from, for the user to check."""
    code, details = _code_and_details(exc)
    where = f"etcd {action} at {endpoint}"
    if details.startswith(_SERVER_PREFIX):
        return server_error(where, code.name if code is not None else None, details, endpoint)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return EtcdCallTimeout(
            f"{where} got no answer within the call timeout of {call_timeout:g}s",
            endpoint=endpoint,
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN):
        cause = _tls_cause(details, ca_source)
        if cause is not None:
            return EtcdTLSError(f"{where} failed: {cause} [{details}]", endpoint=endpoint)
    if code == grpc.StatusCode.UNAVAILABLE:
        return EtcdUnavailable(f"{where} failed: unreachable [{details}]", endpoint=endpoint)
    if code == grpc.StatusCode.CANCELLED:
        return EtcdUnavailable(
            f"{where} was cancelled: the connection was closed [{details}]", endpoint=endpoint
        )
    name = code.name if code is not None else "error"
    return EtcdError(f"{where} failed ({name}): {details}", endpoint=endpoint)


def server_error(where: str, code_name: str | None, details: str, endpoint: str) -> EtcdError:
    """An error etcd itself answered with (``etcdserver: ...``): the connection is fine.

    ``code_name`` is the gRPC status code's name (``"UNAVAILABLE"``), whichever
    transport carried the answer.
    """
    if "not leader" in details:
        return EtcdNotLeader(
            f"{where} must be sent to the leader and this member is not it [{details}]",
            endpoint=endpoint,
        )
    if "member not found" in details:
        return EtcdMemberNotFound(f"{where}: member not found [{details}]", endpoint=endpoint)
    if "request timed out" in details:
        return EtcdCallTimeout(
            f"{where}: the member could not complete the request through raft in time "
            f"(no leader, or quorum lost?) [{details}]",
            endpoint=endpoint,
        )
    if "unhealthy cluster" in details:
        return EtcdUnavailable(
            f"{where} refused: etcd changes membership only while every remaining member has "
            f"been connected for a few seconds; retry later [{details}]",
            endpoint=endpoint,
        )
    if code_name == "UNAVAILABLE":
        return EtcdUnavailable(
            f"{where}: the member answered but cannot serve now [{details}]", endpoint=endpoint
        )
    return EtcdError(f"{where} failed ({code_name or 'error'}): {details}", endpoint=endpoint)


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH_CODES = (62, 64)


def tls_error(
    exc: ssl.SSLError, *, where: str, endpoint: str, ca_source: str = DEFAULT_CA_SOURCE
) -> EtcdTLSError:
    """The typed error for a TLS failure Python's ``ssl`` reported (handshake or alert)."""
    details = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code in _NAME_MISMATCH_CODES:
        cause = _NAME_MISMATCH
    else:
        cause = _tls_cause(details, ca_source) or "the TLS handshake failed"
    return EtcdTLSError(f"{where} failed: {cause} [{details}]", endpoint=endpoint)
