"""The open-file limit a controller holding many connections needs.

A kept port-forward tunnel holds three descriptors, and the tracker keeps one per
etcd member in use: a thousand clusters outgrow the 1024 descriptors a soft limit
often allows. Go programs raise their soft limit to the hard one when they start
(since Go 1.19), so Cluster API's controllers run with it; this does the same for
``kcp run``. The tracker sizes its connections to fit what the limit is then.
"""

from __future__ import annotations

import resource

__all__ = ["raise_open_files_limit"]


def raise_open_files_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now
    (None when unlimited). A limit that cannot be raised is left as it is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # e.g. an unlimited hard limit the kernel caps lower: keep what we have
    return None if soft == resource.RLIM_INFINITY else soft
