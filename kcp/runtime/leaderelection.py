"""Leader election on a `coordination.k8s.io/v1` Lease, with client-go's rules.

A candidate takes the Lease when it does not exist, when its holder is empty
(released) or when its record has not changed for `leaseDurationSeconds` as
timed by this process's own clock (so clock skew between hosts does not matter).
Every write carries the `resourceVersion` read just before, so two candidates
never both win. The leader renews every `retry_period`; if it cannot renew
within `renew_deadline` it stops leading. On `stop()` a leader releases the
Lease (empty holder, `leaseDurationSeconds=1`) so a successor takes over at once.

Lease objects are read and written as plain JSON through the official client's
`CoordinationV1Api`, so the MicroTime fields are formatted exactly as the API
server expects.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kcp.runtime.logging import get_logger

DEFAULT_LEASE_DURATION = 15.0
"""Seconds a non-leader waits after the Lease last changed before taking it."""

DEFAULT_RENEW_DEADLINE = 10.0
"""Seconds the leader keeps retrying a renewal before it gives leadership up."""

DEFAULT_RETRY_PERIOD = 2.0
"""Seconds between attempts to acquire or renew."""

JITTER_FACTOR = 1.2
"""Acquire attempts wait `retry_period * (1 + random() * JITTER_FACTOR)` (client-go)."""

_log = get_logger("kcp.runtime.leaderelection")

Callback = Callable[[], None]


def _micro_time(moment: datetime) -> str:
    """RFC 3339 with microseconds, the wire form of a MicroTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for one Lease; `start()` runs it on a daemon thread.

    `on_started_leading` and `on_stopped_leading` run on the elector's thread and
    must return promptly. `on_stopped_leading` runs once after leading ends,
    whether the Lease was lost or `stop()` was called (see `stopping`).
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        lease_name: str,
        namespace: str,
        identity: str,
        lease_duration: float = DEFAULT_LEASE_DURATION,
        renew_deadline: float = DEFAULT_RENEW_DEADLINE,
        retry_period: float = DEFAULT_RETRY_PERIOD,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        on_new_leader: Callable[[str], None] | None = None,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if lease_duration <= renew_deadline:
            raise ValueError("lease duration must be greater than the renew deadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError(
                f"renew deadline must be greater than {JITTER_FACTOR} x the retry period"
            )
        self._api = k8s.CoordinationV1Api(api_client)
        self.lease_name = lease_name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._stop = threading.Event()
        self._leading = threading.Event()
        self._thread: threading.Thread | None = None
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._leader: str | None = None
        self._log = _log.bind(lease=f"{namespace}/{lease_name}", identity=identity)

    # -- public face ----------------------------------------------------------

    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def leader(self) -> str | None:
        """The holder last seen on the Lease (None before the first read or when empty)."""
        return self._leader

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called: leading ended on purpose, not by losing the Lease."""
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        """True while the election thread campaigns or leads."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Run the election on a daemon thread until `stop()` or the Lease is lost."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.run, name=f"leader-election-{self.lease_name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop campaigning; a leader releases the Lease before this returns."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout if timeout is not None else self.renew_deadline + 5)

    def run(self) -> None:
        """Acquire, lead until the Lease is lost or `stop()`, then release if asked to."""
        if not self._acquire():
            return
        self._leading.set()
        self._log.info("Became leader")
        try:
            if self._on_started is not None:
                self._on_started()
            self._renew()
        except Exception as exc:
            self._log.error("Leading failed", error=repr(exc))
        finally:
            self._leading.clear()
            if self._stop.is_set():
                self.release()
            else:
                self._log.error("Lost leadership: could not renew the Lease in time")
            if self._on_stopped is not None:
                self._on_stopped()

    def release(self) -> bool:
        """Give the Lease up if this candidate holds it: empty holder, 1 s duration."""
        try:
            lease = self._read()
        except Exception as exc:
            self._log.warning("Could not read the Lease to release it", error=repr(exc))
            return False
        if lease is None:
            return False
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        now = _micro_time(datetime.now(UTC))
        released = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": spec.get("leaseTransitions", 0),
        }
        try:
            self._replace(lease, released, timeout=self.renew_deadline)
        except Exception as exc:
            self._log.warning("Could not release the Lease", error=repr(exc))
            return False
        self._log.info("Released the Lease")
        return True

    # -- the loops -------------------------------------------------------------

    def _acquire(self) -> bool:
        self._log.info("Attempting to acquire the Lease")
        while not self._stop.is_set():
            if self._try_acquire_or_renew(self.renew_deadline):
                return True
            jitter = 1.0 + random.random() * JITTER_FACTOR
            self._stop.wait(self.retry_period * jitter)
        return False

    def _renew(self) -> None:
        while not self._stop.is_set():
            deadline = time.monotonic() + self.renew_deadline
            renewed = False
            while not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._try_acquire_or_renew(remaining):
                    renewed = True
                    break
                self._stop.wait(min(self.retry_period, max(0.0, deadline - time.monotonic())))
            if not renewed:
                return
            self._stop.wait(self.retry_period)

    def _try_acquire_or_renew(self, timeout: float) -> bool:
        """One attempt; True if this candidate holds the Lease afterwards."""
        now = datetime.now(UTC)
        wanted: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.lease_duration),
            "acquireTime": _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": 0,
        }
        try:
            lease = self._read(timeout)
            if lease is None:
                created = self._create(wanted, timeout)
                self._observe(created)
                return True
            self._observe(lease)
            spec = self._observed or {}
            holder = spec.get("holderIdentity") or ""
            if holder and holder != self.identity and self._held_by_other():
                return False
            if holder == self.identity:
                wanted["acquireTime"] = spec.get("acquireTime", wanted["acquireTime"])
                wanted["leaseTransitions"] = spec.get("leaseTransitions", 0)
            else:
                wanted["leaseTransitions"] = spec.get("leaseTransitions", 0) + 1
            replaced = self._replace(lease, wanted, timeout)
            self._observe(replaced)
            return True
        except ApiException as exc:
            # 409: someone else wrote first; they win this round.
            self._log.debug("Lease attempt failed", status=exc.status, reason=exc.reason)
        except Exception as exc:
            self._log.warning("Lease attempt failed", error=repr(exc))
        return False

    def _held_by_other(self) -> bool:
        duration = (self._observed or {}).get("leaseDurationSeconds") or self.lease_duration
        return self._observed_at + float(duration) > time.monotonic()

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = dict(lease.get("spec") or {})
        if spec != self._observed:
            self._observed = spec
            self._observed_at = time.monotonic()
        holder = spec.get("holderIdentity") or None
        if holder != self._leader:
            self._leader = holder
            if holder is not None:
                self._log.info("New leader observed", leader=holder)
                if self._on_new_leader is not None:
                    self._on_new_leader(holder)

    # -- API calls (plain JSON) --------------------------------------------------

    def _read(self, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            response = self._api.read_namespaced_lease(
                self.lease_name,
                self.namespace,
                _preload_content=False,
                _request_timeout=timeout or self.renew_deadline,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(response)

    def _create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.lease_name, "namespace": self.namespace},
            "spec": spec,
        }
        response = self._api.create_namespaced_lease(
            self.namespace, cast(Any, body), _preload_content=False, _request_timeout=timeout
        )
        return _json(response)

    def _replace(
        self, lease: dict[str, Any], spec: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": lease["metadata"],
            "spec": {**(lease.get("spec") or {}), **spec},
        }
        response = self._api.replace_namespaced_lease(
            self.lease_name,
            self.namespace,
            cast(Any, body),
            _preload_content=False,
            _request_timeout=max(timeout, 0.1),
        )
        return _json(response)


def _json(response: Any) -> dict[str, Any]:
    document = json.loads(response.data)
    if not isinstance(document, dict):
        raise ValueError("the API server answered with something other than an object")
    return document
