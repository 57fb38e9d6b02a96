"""`kcp run` as the reliability suite starts it: the real command, with two test hooks.

    python tests/reliability/kcp_child.py run --kubeconfig=... [kcp run flags]

1. Every private key the process generates (``rsa``/``ec.generate_private_key``
   of ``cryptography``, which all of kcp's key generation goes through) and
   every etcd client certificate the tracker issues is reported, as one JSON
   line, on the pipe whose descriptor is in ``KCP_RELIABILITY_REPORT_FD``. The
   key travels through the pipe, never through a file, so the suite can look
   for it on disk and in the logs afterwards.
2. ``KCP_RELIABILITY_CRASH_AFTER_CREATE=<Kind>`` is a failpoint: the process
   SIGKILLs itself right after it created its first object of that kind, as a
   crash at exactly that point would.
3. Every TCP peer the process connects a Python socket to (``socket.connect`` and
   ``connect_ex``: the etcd gateway transport, the port-forward tunnels, the API
   clients) is reported once, as ``{"type": "connect", "peer": "host:port"}``: the
   suite shows from these that in port-forward mode kcp never dials an etcd member.
4. ``KCP_RELIABILITY_TUNING`` (JSON ``{"reconciler": {...}, "tracker": {...}}``)
   shortens requeue delays and probe intervals so that a 4-minute suite sees
   many reconciles; what is tuned is printed once at start-up. Everything else
   (the flags, the manager, the informers, the tracker) is `kcp run` unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import signal
import sys
import threading
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

REPORT_FD_ENV = "KCP_RELIABILITY_REPORT_FD"
TUNING_ENV = "KCP_RELIABILITY_TUNING"
CRASH_ENV = "KCP_RELIABILITY_CRASH_AFTER_CREATE"
PARENT_ENV = "KCP_RELIABILITY_PARENT"

_lock = threading.Lock()
_report: Any = None


def _send(record: dict[str, Any]) -> None:
    if _report is None:
        return
    line = json.dumps(record) + "\n"
    with _lock:
        try:
            _report.write(line)
            _report.flush()
        except (OSError, ValueError):
            pass  # the suite stopped listening; never fail the controller for it


def _caller() -> str:
    """Who in kcp asked for a key, e.g. ``kcp/tracker/keys.py:generate``.

    The innermost kcp frame outside ``kcp/certs`` (which only does the generating).
    """
    for frame in inspect.stack()[2:16]:
        path = frame.filename.replace(os.sep, "/")
        if "/kcp/" in path and "/tests/" not in path and "/kcp/certs/" not in path:
            return f"kcp/{path.rsplit('/kcp/', 1)[1]}:{frame.function}"
    return "?"


def _report_key(key: Any) -> Any:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _send({"type": "key", "pkcs8_der_hex": der.hex(), "by": _caller()})
    return key


def _install_key_hooks() -> None:
    rsa_generate = rsa.generate_private_key
    ec_generate = ec.generate_private_key

    def generate_rsa(*args: Any, **kwargs: Any) -> Any:
        return _report_key(rsa_generate(*args, **kwargs))

    def generate_ec(*args: Any, **kwargs: Any) -> Any:
        return _report_key(ec_generate(*args, **kwargs))

    rsa.generate_private_key = generate_rsa  # type: ignore[assignment]
    ec.generate_private_key = generate_ec  # type: ignore[assignment]

    from kcp.tracker.certificates import CertificateCache

    issue = CertificateCache.issue

    def report_issue(self: Any, cluster: Any, ca: Any, key: Any) -> Any:
        issued = issue(self, cluster, ca, key)
        _send(
            {
                "type": "etcd-client-certificate",
                "cluster": str(cluster),
                "cert_pem": issued.pair.cert_pem.decode("ascii"),
            }
        )
        return issued

    CertificateCache.issue = report_issue  # type: ignore[method-assign]


def _install_connect_hook() -> None:
    import socket

    seen: set[str] = set()
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def report(sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return
        peer = f"{address[0]}:{address[1]}"
        if peer not in seen:
            seen.add(peer)
            _send({"type": "connect", "peer": peer})

    def reporting_connect(self: socket.socket, address: Any) -> None:
        report(self, address)
        connect(self, address)

    def reporting_connect_ex(self: socket.socket, address: Any) -> int:
        report(self, address)
        return connect_ex(self, address)

    socket.socket.connect = reporting_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = reporting_connect_ex  # type: ignore[method-assign,assignment]


def _install_failpoint(kind: str) -> None:
    from kcp.rest import Kube

    create = Kube.create

    def create_then_crash(self: Any, resource: Any, namespace: Any, obj: Any) -> Any:
        created = create(self, resource, namespace, obj)
        if resource.kind == kind:
            print(f"reliability failpoint: crashing after creating {kind}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return created

    Kube.create = create_then_crash  # type: ignore[method-assign]


def _install_tuning(tuning: dict[str, Any]) -> None:
    from kcp.controlplane import controller
    from kcp.tracker.tracker import Tracker

    reconciler = dict(tuning.get("reconciler") or {})
    tracker = dict(tuning.get("tracker") or {})
    if reconciler:
        setup = controller.setup

        # The options class wherever the reconciler package keeps it: the annotation says.
        options_type = inspect.signature(setup, eval_str=True).parameters["options"].annotation
        options_class = next(
            t for t in getattr(options_type, "__args__", ()) if t is not type(None)
        )

        def tuned_setup(*args: Any, **kwargs: Any) -> Any:
            kwargs["options"] = dataclasses.replace(
                kwargs.get("options") or options_class(), **reconciler
            )
            return setup(*args, **kwargs)

        controller.setup = tuned_setup  # type: ignore[assignment]
    if tracker:
        for_api_client = Tracker.for_api_client.__func__  # type: ignore[attr-defined]

        def tuned_for_api_client(cls: Any, api_client: Any, options: Any = None, **kw: Any) -> Any:
            from kcp.tracker.options import TrackerOptions

            options = dataclasses.replace(options or TrackerOptions(), **tracker)
            return for_api_client(cls, api_client, options, **kw)

        Tracker.for_api_client = classmethod(tuned_for_api_client)  # type: ignore[assignment]
    print(f"reliability tuning: {json.dumps(tuning, sort_keys=True)}", flush=True)


def _die_with_parent() -> None:
    """SIGKILL this process when the suite's process dies, however it dies.

    Set here, after exec, rather than in a `preexec_fn`: running Python between
    fork and exec in a process with many threads can deadlock or crash the child.
    """
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        os._exit(1)  # the suite died before the line above took effect


def main() -> int:
    global _report
    _die_with_parent()
    fd = os.environ.get(REPORT_FD_ENV)
    if fd:
        _report = os.fdopen(int(fd), "w", encoding="ascii")
    _install_key_hooks()
    _install_connect_hook()
    crash = os.environ.get(CRASH_ENV)
    if crash:
        _install_failpoint(crash)
    tuning = os.environ.get(TUNING_ENV)
    if tuning:
        _install_tuning(json.loads(tuning))
    from kcp.cli import main as kcp_main

    return kcp_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
