"""etcd's JSON gateway over HTTP/1.1 and mutual TLS: the same calls without gRPC.

etcd serves every unary RPC of its v3 API also as ``POST /v3/...`` with a JSON
body on the client port (``--enable-grpc-gateway``, on by default since 3.4).
Over this transport a probe is one request on a kept-alive TLS connection, run
on the caller's thread: no gRPC channel, so none of gRPC core's event-engine
threads, whose pool grows with the dialling load it has seen and never shrinks
while work keeps arriving. The thread count then depends on kcp's own pools
only, never on the number of clusters.

The TLS context is built from bytes in memory (``kcp.certs.client_tls_context``);
the key never touches a disk. Connections with the same material (a cluster's
members, asked with one certificate) share one context: an OpenSSL 3 context
holding a CA and a client pair is about 24 KiB, as much as an idle connection.
The server's certificate is verified against the cluster's etcd CA and the name
dialled (or ``EtcdTLS.server_name``).

JSON follows etcd's gateway: proto field names, 64-bit integers as strings,
enums by name, fields at their zero value left out.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import threading
import time
import weakref
from typing import Any

import grpc

import kcp.certs
from kcp.etcd.dial import DIRECT, Dialed, Dialer
from kcp.etcd.errors import (
    DEFAULT_CA_SOURCE,
    EtcdCallTimeout,
    EtcdError,
    EtcdTLSError,
    EtcdTunnelError,
    EtcdUnavailable,
    server_error,
    tls_error,
)
from kcp.etcd.model import ALARM_NAMES, Alarm, Member, MemberStatus
from kcp.etcd.timeouts import EtcdTimeouts

__all__ = ["GatewayCalls", "GatewayConnection", "split_host_port"]

_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_SERVER_PREFIX = "etcdserver:"
_REFUSED = (
    "our client certificate must be signed by the etcd CA the server trusts, be valid now "
    "and carry client-auth usage"
)

# Failures of a kept-alive connection the server closed meanwhile (idle timeout,
# restart): the request never reached etcd, so it is sent again on a fresh one.
_DROPPED: tuple[type[BaseException], ...] = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class _Dropped(Exception):
    """The connection was closed under a request (carries the reason)."""


def split_host_port(endpoint: str) -> tuple[str, int]:
    """``("127.0.0.1", 2379)`` from ``127.0.0.1:2379``; ``[::1]:2379`` gives ``"::1"``."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


class GatewayConnection:
    """One kept-alive HTTPS connection to one endpoint's gateway; requests take turns.

    Creating it does no network I/O. ``post`` dials when there is no connection
    (bounded by the dial timeout) through ``dialer`` (a port-forward for a Pod
    endpoint), sends, and waits at most the call timeout. A connection that fails
    is dropped, so the next request dials afresh and a member that came back is
    seen at once.
    """

    def __init__(
        self,
        endpoint: str,
        context: ssl.SSLContext,
        *,
        server_name: str | None,
        ca_source: str = DEFAULT_CA_SOURCE,
        dialer: Dialer = DIRECT,
    ) -> None:
        self.endpoint = endpoint
        self.ca_source = ca_source
        self._dialer = dialer
        host, self._port = split_host_port(endpoint)
        self.member_name = dialer.server_name(endpoint)
        """The member a Pod endpoint reaches (its node's name), else None."""
        self._server_hostname = server_name or self.member_name or host
        self._context = context
        self._lock = threading.Lock()
        self._http: http.client.HTTPConnection | None = None
        self._dialed: Dialed | None = None
        self._closed = False
        self.dials = 0
        """TLS connections opened so far (for tests and metrics)."""

    def __repr__(self) -> str:
        return f"GatewayConnection({self.endpoint!r}, closed={self._closed})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        """Whether a TLS connection is open now (kept alive from the last request)."""
        return self._http is not None

    def socket_option(self, level: int, option: int) -> int:
        """An option of the open socket (0 when none is open); for tests and diagnosis."""
        sock = self._http.sock if self._http is not None else None
        try:
            return int(sock.getsockopt(level, option)) if sock is not None else 0
        except OSError:  # not a TCP socket: the local end of a tunnel
            return 0

    def close(self) -> None:
        """Close now, or (a request in flight) as soon as that request is done."""
        self._closed = True
        self.reset()

    def reset(self) -> None:
        """Drop the kept-alive connection, if any, unless a request is using it."""
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()

    def post(
        self, path: str, body: dict[str, Any], *, action: str, timeouts: EtcdTimeouts
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` and return the decoded answer, or raise a typed error.

        While another thread's request holds the kept-alive connection this one goes
        out on a connection of its own, closed afterwards: no caller waits for another
        (a silent member would otherwise hold each in turn for a whole timeout).
        """
        where = f"etcd {action} at {self.endpoint}"
        payload = json.dumps(body, separators=(",", ":")).encode()
        if self._closed:
            raise EtcdUnavailable(
                f"etcd connection to {self.endpoint} was closed (evicted from the channel "
                "pool or closed by its owner); get a new client",
                endpoint=self.endpoint,
            )
        if not self._lock.acquire(blocking=False):
            return self._post_alone(path, payload, timeouts, where)
        try:
            if self._http is not None:
                try:
                    return self._use(self._http, path, payload, timeouts.call, where)
                except _Dropped:
                    self._drop()
            self._http, self._dialed = self._dial(timeouts.dial, where)
            try:
                return self._use(self._http, path, payload, timeouts.call, where)
            except _Dropped as exc:
                dialed = self._dialed
                self._drop()
                raise self._dropped_when_fresh(where, exc, dialed) from None
        finally:
            if self._closed:  # closed while this request ran
                self._drop()
            self._lock.release()

    # -- internals -----------------------------------------------------------------------

    def _post_alone(
        self, path: str, payload: bytes, timeouts: EtcdTimeouts, where: str
    ) -> dict[str, Any]:
        connection, dialed = self._dial(timeouts.dial, where)
        try:
            status, body, _ = self._exchange(
                connection, path, payload, timeouts.call, where, dialed
            )
        except _Dropped as exc:
            raise self._dropped_when_fresh(where, exc, dialed) from None
        finally:
            connection.close()
        return _decode(status, body, path=path, where=where, endpoint=self.endpoint)

    def _use(
        self,
        connection: http.client.HTTPConnection,
        path: str,
        payload: bytes,
        call_timeout: float,
        where: str,
    ) -> dict[str, Any]:
        """A request on the kept-alive connection (lock held); dropped when it failed."""
        try:
            status, body, keep = self._exchange(
                connection, path, payload, call_timeout, where, self._dialed
            )
        except EtcdError:
            self._drop()
            raise
        if not keep:
            self._drop()
        return _decode(status, body, path=path, where=where, endpoint=self.endpoint)

    def _dropped_when_fresh(
        self, where: str, exc: _Dropped, dialed: Dialed | None
    ) -> EtcdUnavailable:
        tunnel = self._tunnel_error(where, dialed)
        if tunnel is not None:
            return tunnel
        # Under TLS 1.3 the server judges our certificate after the handshake has
        # completed for us; its alert is lost with the connection it closes.
        return EtcdTLSError(
            f"{where} failed: the server refused our client certificate (the member closed a "
            "fresh connection before answering, which is how etcd refuses one under TLS 1.3; "
            f"{_REFUSED}) [{exc}]",
            endpoint=self.endpoint,
        )

    def _tunnel_error(self, where: str, dialed: Dialed | None) -> EtcdTunnelError | None:
        """Why the tunnel under ``dialed`` failed, as the error to raise (None: it did not)."""
        why = dialed.why_closed() if dialed is not None else None
        if why is None:
            return None
        return EtcdTunnelError(f"{where} failed: {why}", reason="lost", endpoint=self.endpoint)

    def _drop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._dialed = None

    def _dial(self, timeout: float, where: str) -> tuple[http.client.HTTPConnection, Dialed]:
        deadline = time.monotonic() + timeout
        too_slow = EtcdUnavailable(
            f"etcd at {self.endpoint} did not complete a connection within the dial timeout "
            f"of {timeout:g}s (is the address right and the member answering?)",
            endpoint=self.endpoint,
        )
        try:
            dialed = self._dialer.connect(self.endpoint, timeout)
        except TimeoutError:
            raise too_slow from None
        except EtcdTunnelError as exc:
            raise EtcdTunnelError(
                f"{where} failed: {exc}", reason=exc.reason, endpoint=self.endpoint
            ) from None
        except OSError as exc:
            raise EtcdUnavailable(
                f"{where} failed: unreachable [{exc.strerror or exc}]", endpoint=self.endpoint
            ) from None
        raw = dialed.sock
        try:
            raw.settimeout(max(deadline - time.monotonic(), 0.001))
            secure = self._context.wrap_socket(raw, server_hostname=self._server_hostname)
        except TimeoutError:
            raw.close()
            raise self._tunnel_error(where, dialed) or too_slow from None
        except ssl.SSLError as exc:
            raw.close()
            raise self._tunnel_error(where, dialed) or tls_error(
                exc, where=where, endpoint=self.endpoint, ca_source=self.ca_source
            ) from None
        except OSError as exc:
            raw.close()
            raise self._tunnel_error(where, dialed) or EtcdUnavailable(
                f"{where} failed: the TLS handshake was cut off [{exc.strerror or exc}]",
                endpoint=self.endpoint,
            ) from None
        # The Host header names the server as its certificate does: a Pod endpoint's
        # "namespace/pod" is no host name. The connection itself is ``secure``.
        connection = http.client.HTTPConnection(self._server_hostname, self._port)
        connection.sock = secure
        self.dials += 1
        return connection, dialed

    def _exchange(  # noqa: PLR0917 - private; the tunnel under it is optional
        self,
        connection: http.client.HTTPConnection,
        path: str,
        payload: bytes,
        call_timeout: float,
        where: str,
        dialed: Dialed | None = None,
    ) -> tuple[int, bytes, bool]:
        """Send and read the answer: its status, body and whether the connection stays open.

        Raises ``_Dropped`` when the connection turns out closed, else a typed error (a
        tunnel under it that failed is that error, whatever the socket reported).
        """
        try:
            if connection.sock is not None:
                connection.sock.settimeout(call_timeout)
            connection.request("POST", path, body=payload, headers=_HEADERS)
            response = connection.getresponse()
            body = response.read()
        except _DROPPED as exc:
            raise _Dropped(str(exc) or type(exc).__name__) from None
        except ssl.SSLError as exc:
            # Under TLS 1.3 a refused client certificate arrives as an alert on first read.
            raise self._tunnel_error(where, dialed) or tls_error(
                exc, where=where, endpoint=self.endpoint, ca_source=self.ca_source
            ) from None
        except TimeoutError:
            raise self._tunnel_error(where, dialed) or EtcdCallTimeout(
                f"{where} got no answer within the call timeout of {call_timeout:g}s",
                endpoint=self.endpoint,
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._tunnel_error(where, dialed) or EtcdUnavailable(
                f"{where} failed: [{exc}]", endpoint=self.endpoint
            ) from None
        return response.status, body, not response.will_close


def _decode(status: int, body: bytes, *, path: str, where: str, endpoint: str) -> dict[str, Any]:
    """The answer as a dict, or the typed error the gateway's error document describes."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        if status == http.HTTPStatus.NOT_FOUND:
            raise EtcdError(
                f"{where}: etcd serves no JSON gateway at {path} (HTTP 404); start etcd with "
                "--enable-grpc-gateway=true (its default) or run kcp with --etcd-transport=grpc",
                endpoint=endpoint,
            )
        raise EtcdError(
            f"{where}: the gateway answered HTTP {status} with a body that is not a JSON object",
            endpoint=endpoint,
        )
    if status == http.HTTPStatus.OK:
        return document
    code_name = _CODE_NAMES.get(document.get("code"))
    details = str(document.get("message") or document.get("error") or f"HTTP {status}")
    if details.startswith(_SERVER_PREFIX):
        raise server_error(where, code_name, details, endpoint)
    if code_name == "DEADLINE_EXCEEDED":
        raise EtcdCallTimeout(f"{where}: the member timed out [{details}]", endpoint=endpoint)
    if code_name == "UNAVAILABLE":
        raise EtcdUnavailable(
            f"{where}: the member answered but cannot serve now [{details}]", endpoint=endpoint
        )
    raise EtcdError(
        f"{where} failed ({code_name or f'HTTP {status}'}): {details}", endpoint=endpoint
    )


def _int(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    return int(value) if value not in (None, "") else 0


def _strings(document: dict[str, Any], name: str) -> tuple[str, ...]:
    return tuple(str(item) for item in document.get(name) or ())


def status_from_json(endpoint: str, document: dict[str, Any]) -> MemberStatus:
    header = document.get("header") or {}
    return MemberStatus(
        endpoint=endpoint,
        member_id=_int(header, "member_id"),
        leader_id=_int(document, "leader"),
        raft_term=_int(document, "raftTerm"),
        raft_index=_int(document, "raftIndex"),
        raft_applied_index=_int(document, "raftAppliedIndex"),
        db_size=_int(document, "dbSize"),
        db_size_in_use=_int(document, "dbSizeInUse"),
        db_size_quota=_int(document, "dbSizeQuota"),
        is_learner=bool(document.get("isLearner")),
        version=str(document.get("version") or ""),
        errors=_strings(document, "errors"),
    )


def member_from_json(document: dict[str, Any]) -> Member:
    return Member(
        id=_int(document, "ID"),
        name=str(document.get("name") or ""),
        peer_urls=_strings(document, "peerURLs"),
        client_urls=_strings(document, "clientURLs"),
        is_learner=bool(document.get("isLearner")),
    )


def alarm_from_json(document: dict[str, Any]) -> Alarm:
    kind = document.get("alarm", "NONE")
    name = ALARM_NAMES.get(kind, str(kind)) if isinstance(kind, int) else str(kind)
    return Alarm(member_id=_int(document, "memberID"), alarm=name)


_SHAPE_ERRORS = (TypeError, ValueError, AttributeError)


class GatewayCalls:
    """The calls ``EtcdClient`` offers, over one ``GatewayConnection``."""

    def __init__(self, connection: GatewayConnection) -> None:
        self._connection = connection

    def _post(
        self, action: str, path: str, body: dict[str, Any], timeouts: EtcdTimeouts
    ) -> dict[str, Any]:
        return self._connection.post(path, body, action=action, timeouts=timeouts)

    def _unreadable(self, action: str, exc: Exception) -> EtcdError:
        endpoint = self._connection.endpoint
        return EtcdError(
            f"etcd {action} at {endpoint}: the gateway's answer has an unexpected shape ({exc})",
            endpoint=endpoint,
        )

    def status(self, timeouts: EtcdTimeouts) -> MemberStatus:
        document = self._post("status", "/v3/maintenance/status", {}, timeouts)
        try:
            return status_from_json(self._connection.endpoint, document)
        except _SHAPE_ERRORS as exc:
            raise self._unreadable("status", exc) from None

    def members(self, timeouts: EtcdTimeouts) -> list[Member]:
        document = self._post("member list", "/v3/cluster/member/list", {}, timeouts)
        try:
            return [member_from_json(m) for m in document.get("members") or ()]
        except _SHAPE_ERRORS as exc:
            raise self._unreadable("member list", exc) from None

    def alarms(self, timeouts: EtcdTimeouts) -> list[Alarm]:
        document = self._post("alarm list", "/v3/maintenance/alarm", {"action": "GET"}, timeouts)
        try:
            return [alarm_from_json(a) for a in document.get("alarms") or ()]
        except _SHAPE_ERRORS as exc:
            raise self._unreadable("alarm list", exc) from None

    def move_leader(self, target_member_id: int, timeouts: EtcdTimeouts) -> None:
        self._post(
            f"move leader to {target_member_id:x}",
            "/v3/maintenance/transfer-leadership",
            {"targetID": str(target_member_id)},
            timeouts,
        )

    def remove_member(self, member_id: int, timeouts: EtcdTimeouts) -> None:
        action = f"remove member {member_id:x}"
        self._post(action, "/v3/cluster/member/remove", {"ID": str(member_id)}, timeouts)


def open_gateway_connection(
    endpoint: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    server_name: str | None,
    ca_source: str = DEFAULT_CA_SOURCE,
    dialer: Dialer = DIRECT,
) -> GatewayConnection:
    """A connection (not dialled yet) whose TLS context holds the client pair in memory."""
    context = _shared_context(ca_pem, cert_pem, key_pem)
    return GatewayConnection(
        endpoint, context, server_name=server_name, ca_source=ca_source, dialer=dialer
    )


_contexts: weakref.WeakValueDictionary[tuple[bytes, ...], ssl.SSLContext] = (
    weakref.WeakValueDictionary()
)
"""Client contexts by digest of their material, while a connection holds them."""
_contexts_lock = threading.Lock()


def _shared_context(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """The client context for this material: the one a live connection uses, or a new one
    (``open_connection`` has checked the material before)."""
    key = tuple(hashlib.sha256(pem).digest() for pem in (ca_pem, cert_pem, key_pem))
    with _contexts_lock:
        found = _contexts.get(key)
    if found is not None:
        return found
    context = kcp.certs.client_tls_context(ca_pem, cert_pem, key_pem)
    context.set_alpn_protocols(["http/1.1"])
    with _contexts_lock:
        return _contexts.setdefault(key, context)
