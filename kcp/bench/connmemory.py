"""What one kept etcd connection costs in memory, directly or with its port-forward tunnel.

The tracker keeps one connection per member in use (``kcp.tracker.sizing``), so
this is what a kept member adds to the controller's RSS. Measured in the
benchmark's own process after its warm-up: one more connection per cluster,
opened as the tracker opens its own (the cluster's certificate, the same route
and transport) into a pool of its own, each answering one status call; the RSS
growth over them (after a garbage collection, before and after) divided by
their number. The key and certificate are the tracker's, so they are not
counted: only the connection, its TLS state and, through a port-forward, the
tunnel (its socket pair, its TLS connection to the API server, its buffers).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["kept_connection_kib", "tunnel_dialer"]


def kept_connection_kib(tls: Sequence[Any], endpoint: str, *, dialer: Any, transport: Any) -> float:
    """KiB of RSS per connection kept open to ``endpoint``, one per ``EtcdTLS`` in ``tls``."""
    from kcp.bench.procstat import sample
    from kcp.etcd import ChannelPool, EtcdClient

    if not tls:
        raise ValueError("at least one certificate is needed")
    pool = ChannelPool(len(tls) + 1, transport=transport)
    try:
        gc.collect()
        before = sample().rss
        for material in tls:
            EtcdClient.open(endpoint, material, pool=pool, dialer=dialer).status()
        gc.collect()
        grown = sample().rss - before
        if len(pool) != len(tls):
            raise RuntimeError(f"{len(tls)} connections were opened, {len(pool)} kept")
    finally:
        pool.close_all()
    return grown / len(tls) / 1024


@contextlib.contextmanager
def tunnel_dialer(kubeconfig: bytes, tunnels: int) -> Iterator[Any]:
    """A port-forward ``Dialer`` through the API server of ``kubeconfig``, on a tunnel loop
    of its own that keeps ``tunnels`` open (the tracker's own tunnels are left alone)."""
    from kcp.certs import parse_kubeconfig
    from kcp.etcd import TunnelLoop
    from kcp.tracker.workload import WorkloadClient

    loop = TunnelLoop(max_tunnels=tunnels)
    client = WorkloadClient(
        parse_kubeconfig(kubeconfig), digest="bench-memory", timeout=10.0, tunnels=loop
    )
    try:
        yield client.dialer
    finally:
        client.close()
        loop.close()
