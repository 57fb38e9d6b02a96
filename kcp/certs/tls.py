"""``ssl`` contexts whose private key comes from memory, never from a file on disk.

``ssl.SSLContext.load_cert_chain`` only reads paths. The certificate and key are
written to an anonymous memory file (``os.memfd_create``: RAM only, no name in
any filesystem), read through ``/proc/self/fd/<n>`` and closed as soon as OpenSSL
has loaded them; afterwards the key lives only inside the context.
"""

from __future__ import annotations

import os
import ssl

__all__ = ["client_tls_context", "load_cert_chain_from_memory"]


def load_cert_chain_from_memory(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``context.load_cert_chain`` from PEM bytes via an anonymous memory file."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:  # pragma: no cover - Linux has it
        raise RuntimeError(
            "os.memfd_create is not available on this platform; kcp loads client keys into "
            "TLS contexts only through anonymous memory files and never writes them to disk"
        )
    fd = memfd_create("kcp-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(cert_pem + b"\n" + key_pem)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def client_tls_context(
    ca_pem: bytes | None, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca_pem`` (the system's trusted
    CAs when None; hostname included), speaks TLS 1.2 or later and presents the client
    pair when one is given."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cadata=None if ca_pem is None else ca_pem.decode("ascii", "replace"),
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_pem is not None and key_pem is not None:
        load_cert_chain_from_memory(context, cert_pem, key_pem)
    return context
