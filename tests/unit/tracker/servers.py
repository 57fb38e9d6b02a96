"""Tiny loopback servers for tracker tests: an HTTPS server answering fixed statuses
(its key loaded from memory, like the product does) and a silent one that accepts
TCP connections and never answers."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kcp import certs
from kcp.certs import KeyPair, load_cert_chain_from_memory


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, int]]:
    """Accepts connections and never sends a byte; yields (host, port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


@contextlib.contextmanager
def mutual_tls_server(
    ca: KeyPair,
    handler: type[BaseHTTPRequestHandler],
    *,
    port: int = 0,
    common_name: str = "test-apiserver",
    dns_names: tuple[str, ...] = (),
) -> Iterator[str]:
    """Serve ``handler`` over HTTPS (certificate for 127.0.0.1 and ``dns_names`` signed by
    ``ca``), requiring a client certificate signed by ``ca``; yields its URL. ``port`` 0
    picks a free one."""
    server_pair = certs.issue_certificate(
        ca,
        common_name=common_name,
        usages=("server",),
        dns_names=dns_names,
        ip_addresses=("127.0.0.1",),
        algorithm="ecdsa-p256",
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_cert_chain_from_memory(context, server_pair.cert_pem, server_pair.key_pem)
    context.load_verify_locations(cadata=ca.cert_pem.decode())
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def https_server(ca: KeyPair, status: int = 200, *, port: int = 0) -> Iterator[str]:
    """A ``mutual_tls_server`` that answers every GET with ``status``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok" if status == 200 else b"nope"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with mutual_tls_server(ca, Handler, port=port) as url:
        yield url


@contextlib.contextmanager
def etcd_gateway_server(ca: KeyPair, member_name: str, member_id: int = 1) -> Iterator[str]:
    """A stand-in for one etcd member's JSON gateway: mutual TLS (server certificate naming
    `member_name`, client certificates from `ca` required), answering status, member list
    and alarms as the only member, its leader. Yields its address `127.0.0.1:port`."""
    header = {"member_id": str(member_id)}
    answers = {
        "/v3/maintenance/status": {"header": header, "leader": str(member_id), "version": "3.6.4"},
        "/v3/cluster/member/list": {
            "header": header,
            "members": [
                {
                    "ID": str(member_id),
                    "name": member_name,
                    "peerURLs": [f"https://{member_name}:2380"],
                    "clientURLs": [f"https://{member_name}:2379"],
                }
            ],
        },
        "/v3/maintenance/alarm": {"header": header},
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = json.dumps(answers.get(self.path, {})).encode()
            self.send_response(200 if self.path in answers else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(status)))
            self.end_headers()
            self.wfile.write(status)

        def log_message(self, format: str, *args: object) -> None:
            pass

    names = (member_name, "localhost")
    with mutual_tls_server(ca, Handler, common_name=member_name, dns_names=names) as url:
        yield url.removeprefix("https://")
