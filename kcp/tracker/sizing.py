"""How many etcd connections and port-forward tunnels the tracker keeps: what the fleet uses.

Both are LRU-bounded. A bound below the members in use churns: every reconcile or
probe of a cluster whose connection was dropped opens a new one, through a new
port-forward with two TLS handshakes (at 1000 clusters and a bound of 256, 9391
tunnels opened in one ``kcp bench scale`` run). So unless pinned, the bounds follow
the members of the clusters tracked now (a cluster whose endpoints are not known
yet counts one), with headroom for a member joining and for the previous
certificate's connections, which the LRU drops first. A ceiling
(``etcd_connections_max``, lowered to fit half the open-file limit) keeps an
unexpected fleet from exhausting memory or descriptors; past it connections
churn again, which costs CPU, not correctness.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from kcp.tracker.options import TrackerOptions

__all__ = ["ConnectionBounds", "connection_bounds", "open_files_limit"]

MIN_CONNECTIONS = 16
"""Connections kept however few clusters are tracked (and the least the ceiling allows)."""
HEADROOM_DIVISOR = 8
"""Headroom above the members in use: one eighth, plus ``MIN_CONNECTIONS``."""
SPARE_TUNNELS = 16
"""Tunnels beyond the connections' own: short-lived ones (a Machine's API server
certificate read) and those of a connection being replaced."""
FDS_PER_TUNNEL = 3
"""A tunnel holds both ends of its socket pair and its TCP connection to the API server."""
OPEN_FILES_SHARE = 2
"""Tunnels may take at most one ``OPEN_FILES_SHARE``-th of the open-file limit."""


@dataclass(frozen=True)
class ConnectionBounds:
    """How many etcd connections (``ChannelPool``) and tunnels (``TunnelLoop``) stay open."""

    channels: int
    tunnels: int


def connection_bounds(
    members: int, options: TrackerOptions, *, open_files: int | None = None
) -> ConnectionBounds:
    """The bounds for ``members`` etcd members in use, given the process's open-file limit.

    ``options.etcd_channels`` and ``options.tunnels_max`` pin them when set.
    """
    per_channel = 2 if options.etcd_transport == "grpc" else 1
    ceiling = options.etcd_connections_max
    if open_files is not None:
        fitting = open_files // OPEN_FILES_SHARE // (FDS_PER_TUNNEL * per_channel)
        ceiling = min(ceiling, max(fitting, MIN_CONNECTIONS))
    followed = max(members, 0) + max(members, 0) // HEADROOM_DIVISOR + MIN_CONNECTIONS
    channels = options.etcd_channels or min(followed, ceiling)
    tunnels = options.tunnels_max or channels * per_channel + SPARE_TUNNELS
    return ConnectionBounds(channels=channels, tunnels=tunnels)


def open_files_limit() -> int | None:
    """The process's soft limit of open files (``RLIMIT_NOFILE``); None when unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft
