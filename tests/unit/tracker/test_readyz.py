"""The health probe's kept connection: reused while the server keeps it, replaced when not."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from kcp import certs
from kcp.certs import KeyPair, client_tls_context
from kcp.tracker.readyz import ProbeConnection
from tests.unit.tracker.servers import mutual_tls_server, silent_server


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256")


@dataclass
class Behaviour:
    status: int = 200
    body: bytes = b"ok"
    chunked: bool = False
    close: bool = False
    """Close the connection after each answer (it still says where the body ends)."""
    connections: int = 0
    paths: list[str] = field(default_factory=list)


@contextlib.contextmanager
def server(ca: KeyPair, behaviour: Behaviour) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def setup(self) -> None:
            behaviour.connections += 1
            super().setup()

        def do_GET(self) -> None:
            behaviour.paths.append(self.path)
            self.send_response(behaviour.status)
            if behaviour.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                body = behaviour.body
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            else:
                self.send_header("Content-Length", str(len(behaviour.body)))
                self.end_headers()
                self.wfile.write(behaviour.body)
            self.close_connection = behaviour.close or behaviour.chunked

        def log_message(self, format: str, *args: object) -> None:
            pass

    with mutual_tls_server(ca, Handler) as url:
        yield url


def connection(ca: KeyPair, url: str) -> ProbeConnection:
    admin = certs.issue_certificate(ca, common_name="admin", algorithm="ecdsa-p256")
    context = client_tls_context(ca.cert_pem, admin.cert_pem, admin.key_pem)
    return ProbeConnection(url, context, {"Authorization": "Bearer t"})


def test_probes_reuse_one_connection_while_the_server_keeps_it(ca: KeyPair) -> None:
    behaviour = Behaviour()
    with server(ca, behaviour) as url:
        probe = connection(ca, url + "/prefix/")
        answers = [probe.get("/readyz", 5.0) for _ in range(5)]
        probe.close()
    assert answers == [(200, b"ok")] * 5
    assert behaviour.connections == 1
    assert behaviour.paths == ["/prefix/readyz"] * 5


@pytest.mark.parametrize("kind", ["close", "chunked"])
def test_a_connection_the_server_ends_or_does_not_delimit_is_replaced(
    ca: KeyPair, kind: str
) -> None:
    behaviour = Behaviour(status=500, body=b"x" * 300, **{kind: True})  # type: ignore[arg-type]
    with server(ca, behaviour) as url:
        probe = connection(ca, url)
        answers = [probe.get("/readyz", 5.0) for _ in range(3)]
        probe.close()
    assert [status for status, _ in answers] == [500] * 3
    assert all(len(body) <= 200 for _, body in answers)
    assert behaviour.connections == 3


def test_a_kept_connection_closed_while_idle_is_retried_on_a_fresh_one(ca: KeyPair) -> None:
    behaviour = Behaviour()
    answers, kept = [], []
    with server(ca, behaviour) as url:
        probe = connection(ca, url)
        # The second answer still says where it ends, then the server closes the
        # connection (as an idle timeout does): the third probe finds it stale.
        for close in (False, True, False, False):
            behaviour.close = close
            answers.append(probe.get("/readyz", 5.0))
            kept.append(behaviour.connections)
            time.sleep(0.1)
        probe.close()
    assert answers == [(200, b"ok")] * 4
    assert kept == [1, 1, 2, 2]


def test_a_silent_server_times_out_within_the_deadline(ca: KeyPair) -> None:
    with silent_server() as (host, port):
        probe = connection(ca, f"https://{host}:{port}")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            probe.get("/readyz", 0.3)
        assert time.monotonic() - started < 2.0


def test_a_closed_probe_connection_refuses_to_send(ca: KeyPair) -> None:
    probe = connection(ca, "https://127.0.0.1:1")
    probe.close()
    with pytest.raises(ConnectionError):
        probe.get("/readyz", 1.0)
