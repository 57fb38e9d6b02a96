"""A stand-in for the workload API server's port-forward, built on the `websockets` library.

It answers `GET /api/v1/namespaces/{ns}/pods/{pod}/portforward?ports=N` as the API
server and the kubelet do together for `v4.channel.k8s.io`: 404 for an unknown
Pod, 403 for a Pod it is told to refuse, 401 for a wrong bearer token; after the
upgrade it writes the port (little-endian) first on the data and the error
channel, then bridges the data channel to the Pod port's target (a TCP address,
or "echo"), and reports a target that refuses on the error channel, as the
kubelet does. Run as a script it serves echo Pods in a process of its own (for
counting the client's threads alone): `python -m tests.unit.etcd.portforward_servers`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from kcp import certs
from kcp.certs import KeyPair, load_cert_chain_from_memory

SUBPROTOCOL = "v4.channel.k8s.io"
ECHO = "echo"


@dataclass
class ForwardingServer:
    """The fake API server + kubelet; `forwards` maps (namespace, pod, port) to
    "host:port" or "echo"; pods in `refused` get a 403; `token` (if set) is required;
    a pod in `prefixes_held` gets its port prefixes only once that event is set."""

    ca: KeyPair
    forwards: dict[tuple[str, str, int], str] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    token: str | None = None
    prefixes_held: dict[str, threading.Event] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    connections: list[ServerConnection] = field(default_factory=list)
    _server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def start(self) -> ForwardingServer:
        pair = certs.issue_certificate(
            self.ca,
            common_name="fake-apiserver",
            usages=("server",),
            ip_addresses=("127.0.0.1",),
            algorithm="ecdsa-p256",
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        load_cert_chain_from_memory(context, pair.cert_pem, pair.key_pem)
        self._server = serve(
            self._handle,
            "127.0.0.1",
            0,
            ssl=context,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        for connection in list(self.connections):
            connection.close_socket()

    def __enter__(self) -> ForwardingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_all(self) -> None:
        """Cut every open forward's TCP connection without a websocket close."""
        for connection in list(self.connections):
            connection.close_socket()

    # -- the API server's part --------------------------------------------------------

    def _parse(self, path: str) -> tuple[str, str, int] | None:
        parsed = urllib.parse.urlsplit(path)
        parts = parsed.path.strip("/").split("/")
        if len(parts) != 7 or parts[:3] != ["api", "v1", "namespaces"] or parts[6] != "portforward":
            return None
        ports = urllib.parse.parse_qs(parsed.query).get("ports", ["0"])
        return parts[3], parts[5], int(ports[0])

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request.path)
        if request.path == "/readyz":  # the tracker's health probe of the API server
            return connection.respond(200, "ok")
        found = self._parse(request.path)
        if (
            self.token is not None
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return _status(401, "Unauthorized", "Unauthorized")
        if found is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        namespace, pod, _ = found
        if pod in self.refused:
            return _status(
                403,
                "Forbidden",
                f'pods "{pod}" is forbidden: User "kcp" cannot create resource '
                f'"pods/portforward" in API group "" in the namespace "{namespace}"',
            )
        if not any(key[:2] == (namespace, pod) for key in self.forwards):
            return _status(404, "NotFound", f'pods "{pod}" not found')
        return None

    # -- the kubelet's part -----------------------------------------------------------

    def _handle(self, websocket: ServerConnection) -> None:
        self.connections.append(websocket)
        try:
            self._forward(websocket)
        finally:
            self.connections.remove(websocket)

    def _forward(self, websocket: ServerConnection) -> None:
        found = self._parse(websocket.request.path if websocket.request else "")
        assert found is not None
        namespace, pod, port = found
        prefix = struct.pack("<H", port)
        held = self.prefixes_held.get(pod)
        if held is not None:
            held.wait(10)
        websocket.send(b"\x00" + prefix)
        websocket.send(b"\x01" + prefix)
        target = self.forwards.get((namespace, pod, port))
        if target is None:
            websocket.send(
                b"\x01" + f"error forwarding port {port} to pod {pod}: no such port".encode()
            )
            websocket.close()
            return
        if target == ECHO:
            for message in websocket:
                assert isinstance(message, bytes) and message[0] == 0
                websocket.send(message)
            return
        host, _, target_port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(target_port)), timeout=5)
        except OSError as exc:
            websocket.send(
                b"\x01"
                + f"error forwarding port {port} to pod {pod}, uid : failed to connect to "
                f"{target}: {exc}".encode()
            )
            websocket.close()
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def pump() -> None:
            try:
                while data := upstream.recv(65536):
                    websocket.send(b"\x00" + data)
            except (OSError, ConnectionClosed):
                pass
            websocket.close()

        threading.Thread(target=pump, daemon=True).start()
        try:
            for message in websocket:
                assert isinstance(message, bytes)
                if message[0] == 0:
                    upstream.sendall(message[1:])
        except (OSError, ConnectionClosed):
            pass
        finally:
            upstream.close()


def _status(code: int, reason: str, message: str) -> Response:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    ).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(code, reason, headers, body)


@contextlib.contextmanager
def forwarding_server(ca: KeyPair, **kwargs: Any) -> Iterator[ForwardingServer]:
    with ForwardingServer(ca, **kwargs) as server:
        yield server


def main() -> None:
    """Serve `pods` echo Pods (kube-system/echo-N:7) until stdin closes; print the URL and
    the CA (PEM) on the first two lines of stdout."""
    pods = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    ca = certs.new_certificate_authority("fake-apiserver-ca", algorithm="ecdsa-p256")
    forwards = {("kube-system", f"echo-{i}", 7): ECHO for i in range(pods)}
    with forwarding_server(ca, forwards=forwards) as server:
        print(server.url, flush=True)
        print(json.dumps(ca.cert_pem.decode()), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
