"""Why the tracker cannot hand out access to a cluster right now.

Lookups never wait: they raise ``NotConnected`` at once, and the reconciler
requeues after ``retry_after``. ``ClusterSecretError`` is the kind of
``NotConnected`` a user must fix (a missing or malformed Secret); its message
names the Secret and says what to put there, fit for a condition.
"""

from __future__ import annotations

__all__ = ["ClusterSecretError", "NotConnected", "TrackerError"]


class TrackerError(Exception):
    """Anything the tracker reports about a cluster."""


class NotConnected(TrackerError):
    """No access now: the cluster is being connected, is down, or its Secrets are bad.

    ``reason`` is a short word for metrics and logs (``connecting``, ``down``,
    ``secret``, ``evicted``); the message says what is going on.
    """

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class ClusterSecretError(NotConnected):
    """The cluster's ``-etcd`` or ``-kubeconfig`` Secret is missing or unusable."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, reason="secret", retry_after=retry_after)
