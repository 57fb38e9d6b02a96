"""Operations endpoints: `/healthz` and `/readyz` on `--health-addr`, `/metrics` on
`--metrics-bind-addr`, plus the small HTTP server the profiler reuses.

Each server is a `ThreadingHTTPServer` on a daemon thread, bound where told
(`":9440"` means every interface, `"127.0.0.1:0"` a free loopback port, `"0"` or
`""` disabled). A probe check is a callable returning None when healthy or a
short reason; the response lists failing checks by name so `kubectl describe`
says what is wrong.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kcp.runtime.logging import get_logger

_log = get_logger("kcp.runtime.ops")

Check = Callable[[], str | None]
"""A health or readiness check: None when fine, else a short reason."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[dict[str, list[str]], Mapping[str, str]], Response]
"""A handler: (query parameters, request headers with lower-case names) -> Response."""


def parse_address(address: str) -> tuple[str, int] | None:
    """`":9440"` -> ("", 9440); `"127.0.0.1:0"`; `"[::1]:80"`; `"0"` or `""` -> None (disabled)."""
    if address in ("", "0"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad listen address {address!r}: expected [host]:port, or 0 to disable")
    return host.strip("[]"), int(port)


class OpsServer:
    """A tiny HTTP server serving fixed GET routes on a daemon thread."""

    def __init__(self, address: str, routes: Mapping[str, Route], *, name: str = "ops") -> None:
        bound = parse_address(address)
        if bound is None:
            raise ValueError(f"{name} server is disabled ({address!r})")
        self.name = name
        self._routes = dict(routes)
        handler = _make_handler(self._routes)
        host, port = bound
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"{name}-http",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound: read the port here after binding port 0."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    def start(self) -> OpsServer:
        self._thread.start()
        _log.info("Serving", server=self.name, address=self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _make_handler(routes: Mapping[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            route = routes.get(parts.path)
            if route is None:
                response = Response(HTTPStatus.NOT_FOUND, b"404 page not found\n")
            else:
                try:
                    headers = {key.lower(): value for key, value in self.headers.items()}
                    response = route(parse_qs(parts.query, keep_blank_values=True), headers)
                except Exception as exc:
                    _log.error("Endpoint failed", path=parts.path, error=repr(exc))
                    response = Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes hit these endpoints every few seconds: do not log each request."""

    return Handler


def probe_route(checks: Mapping[str, Check], kind: str) -> Route:
    """A `/healthz`-style route: 200 "ok" when every check passes, else 500 naming failures.

    `?verbose` lists every check, as the Kubernetes API server does.
    """

    def route(query: dict[str, list[str]], _headers: Mapping[str, str]) -> Response:
        lines: list[str] = []
        failed = False
        for name, check in checks.items():
            try:
                reason = check()
            except Exception as exc:
                reason = f"check raised {type(exc).__name__}: {exc}"
            if reason is None:
                lines.append(f"[+]{name} ok")
            else:
                failed = True
                lines.append(f"[-]{name} failed: {reason}")
        if failed:
            body = "\n".join([*lines, f"{kind} check failed"]) + "\n"
            return Response(HTTPStatus.INTERNAL_SERVER_ERROR, body.encode())
        if "verbose" in query:
            return Response(
                HTTPStatus.OK, ("\n".join([*lines, f"{kind} check passed"]) + "\n").encode()
            )
        return Response(HTTPStatus.OK, b"ok")

    return route


def health_server(
    address: str, *, healthz: Mapping[str, Check], readyz: Mapping[str, Check]
) -> OpsServer | None:
    """The `--health-addr` server (not started), or None when disabled."""
    if parse_address(address) is None:
        return None
    routes: dict[str, Route] = {
        "/healthz": probe_route(healthz, "healthz"),
        "/readyz": probe_route(readyz, "readyz"),
    }
    # Sub-paths name one check, as in controller-runtime (/readyz/informers).
    for prefix, checks in (("/healthz", healthz), ("/readyz", readyz)):
        for check_name, check in checks.items():
            routes[f"{prefix}/{check_name}"] = probe_route({check_name: check}, prefix[1:])
    return OpsServer(address, routes, name="health")


def metrics_route(registry: CollectorRegistry) -> Route:
    """Serve `registry` in the text (or OpenMetrics, if asked) exposition format."""

    def route(_query: dict[str, list[str]], headers: Mapping[str, str]) -> Response:
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return Response(HTTPStatus.OK, encoder(registry), content_type)

    return route


def metrics_server(address: str, registry: CollectorRegistry) -> OpsServer | None:
    """The `--metrics-bind-addr` server (not started), or None when disabled ("0")."""
    if parse_address(address) is None:
        return None
    return OpsServer(address, {"/metrics": metrics_route(registry)}, name="metrics")
