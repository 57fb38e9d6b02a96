"""The manager: runs informers, controllers, leader election and the ops servers as one.

Order of things, as in controller-runtime: ops servers and informers start at
once (a standby replica keeps warm caches and answers probes); controllers
start when the informers have synced and, with leader election, only after the
Lease is acquired. Losing the Lease ends the run with exit code 1 so the pod
restarts as a follower. On SIGTERM/SIGINT controllers get
`graceful_shutdown_timeout` to finish in-flight reconciles, then the Lease is
released so a successor takes over at once.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Protocol

from kubernetes import client as k8s
from prometheus_client import CollectorRegistry, Gauge

from kcp.rest import throttle_api_client
from kcp.runtime.controller import Controller, KeyLister, ObjectKey, Result
from kcp.runtime.leaderelection import LeaderElector
from kcp.runtime.logging import get_logger
from kcp.runtime.metrics import REGISTRY, RuntimeMetrics, default_metrics
from kcp.runtime.ops import OpsServer, health_server, metrics_server
from kcp.runtime.options import ManagerOptions, watch_filter_selector
from kcp.runtime.profiler import profiler_server
from kcp.runtime.ratelimit import RateLimiter

__all__ = ["InformerLike", "Manager", "ManagerOptions", "watch_filter_selector"]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

EXIT_LEADERSHIP_LOST = 1
EXIT_FAILED = 1

_log = get_logger("kcp.runtime.manager")


class InformerLike(Protocol):
    """What the manager needs of an informer (or any cache that syncs)."""

    def start(self) -> object: ...

    def stop(self) -> object: ...

    def has_synced(self) -> bool: ...


def default_identity() -> str:
    """`<hostname>_<uuid>`: unique per process, readable in the Lease (as controller-runtime)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def default_lease_namespace() -> str:
    """The pod's namespace from its service account mount, else "default"."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class Manager:
    """Owns the pieces of one controller process and their start/stop order."""

    def __init__(
        self,
        options: ManagerOptions | None = None,
        *,
        api_client: k8s.ApiClient | None = None,
        registry: CollectorRegistry | None = None,
        metrics: RuntimeMetrics | None = None,
        identity: str | None = None,
    ) -> None:
        self.options = options if options is not None else ManagerOptions()
        if api_client is not None:
            throttle_api_client(api_client, self.options.kube_api_qps, self.options.kube_api_burst)
        self.api_client = api_client
        if metrics is not None:
            self.metrics, self.registry = metrics, metrics.registry
        elif registry is not None and registry is not REGISTRY:
            self.metrics, self.registry = RuntimeMetrics(registry), registry
        else:
            self.metrics, self.registry = default_metrics(), REGISTRY
        self.identity = identity or default_identity()
        self.informers: list[InformerLike] = []
        self.controllers: list[Controller] = []
        self.servers: list[OpsServer] = []
        self.elector: LeaderElector | None = None
        self._done = threading.Event()
        self._exit_code = 0
        self._started = False
        self._controllers_started = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._leader_gauge: Gauge | None = None

    # -- assembling ---------------------------------------------------------------

    @property
    def lease_name(self) -> str:
        return self.options.lease_name

    @property
    def label_selector(self) -> str | None:
        """The selector informers should apply for this shard (None when not sharding)."""
        return watch_filter_selector(self.options.watch_filter)

    def add_informer(self, informer: InformerLike) -> None:
        self.informers.append(informer)

    def add_controller(self, controller: Controller) -> Controller:
        self.controllers.append(controller)
        return controller

    def new_controller(
        self,
        name: str,
        reconciler: Callable[[ObjectKey], Result],
        *,
        keys: KeyLister | None = None,
        concurrency: int | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> Controller:
        """A controller using the manager's concurrency, sync period and metrics, added."""
        return self.add_controller(
            Controller(
                name,
                reconciler,
                concurrency=concurrency if concurrency is not None else self.options.concurrency,
                rate_limiter=rate_limiter,
                keys=keys,
                sync_period=self.options.sync_period,
                metrics=self.metrics,
            )
        )

    # -- probes ---------------------------------------------------------------------

    def check_informers_synced(self) -> str | None:
        pending = [type(i).__name__ for i in self.informers if not i.has_synced()]
        return f"informers not synced: {', '.join(pending)}" if pending else None

    def check_running(self) -> str | None:
        if not self._started or self._done.is_set():
            return "manager not running"
        if self.elector is not None and not self.elector.running:
            return "leader election not running"
        return None

    def ready(self) -> str | None:
        """None when ready to serve, else why not (what `/readyz` reports)."""
        return self.check_informers_synced() or self.check_running()

    # -- running --------------------------------------------------------------------

    def start(self) -> None:
        """Start everything and return; see `wait()` and `stop()`."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._start_servers()
        for informer in self.informers:
            informer.start()
        if self.options.leader_elect:
            self._start_leader_election()
        else:
            self._start_controllers_when_synced()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (stop requested, Lease lost, or a failure)."""
        return self._done.wait(timeout)

    @property
    def exit_code(self) -> int:
        """0 after a requested stop, 1 after losing the Lease or failing to sync."""
        return self._exit_code

    @property
    def controllers_running(self) -> bool:
        return self._controllers_started.is_set() and not self._stopping

    def request_stop(self, exit_code: int = 0) -> None:
        """Ask `run_until_signal` (or whoever `wait()`s) to shut down."""
        if not self._done.is_set():
            self._exit_code = exit_code
            self._done.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop controllers (finishing in-flight reconciles within `timeout`), then release
        the Lease, stop informers and servers. Returns False if reconciles were cut off."""
        budget = self.options.graceful_shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        with self._lock:
            if self._stopping:
                return True
            self._stopping = True
        self._done.set()
        for controller in self.controllers:
            controller.queue.shut_down()
        clean = all([c.stop(max(0.0, deadline - time.monotonic())) for c in self.controllers])
        if self.elector is not None:
            # Released only now: the successor must not overlap our last reconciles.
            self.elector.stop(timeout=max(1.0, deadline - time.monotonic()))
        for informer in self.informers:
            try:
                informer.stop()
            except Exception as exc:
                _log.warning("Informer stop failed", error=repr(exc))
        for server in self.servers:
            server.stop()
        _log.info("Manager stopped", clean=clean)
        return clean

    def run_until_signal(self) -> int:
        """Run until SIGTERM/SIGINT or the Lease is lost; returns the process exit code.

        A second signal during shutdown exits at once with code 1.
        """
        previous = self._install_signal_handlers()
        try:
            self.start()
            while not self._done.wait(1.0):
                pass
            self.stop()
            return self._exit_code
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # -- internals ----------------------------------------------------------------------

    def _install_signal_handlers(
        self,
    ) -> dict[int, Callable[[int, FrameType | None], object] | int | None]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handle(signum: int, _frame: FrameType | None) -> None:
            if self._done.is_set():
                _log.warning("Second signal: exiting now", signal=signal.Signals(signum).name)
                os._exit(1)
            _log.info("Shutting down", signal=signal.Signals(signum).name)
            self.request_stop(0)

        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[int(signum)] = signal.getsignal(signum)
            signal.signal(signum, handle)
        return previous

    def _start_servers(self) -> None:
        options = self.options
        health = health_server(
            options.health_addr,
            healthz={"ping": lambda: None},
            readyz={"informers": self.check_informers_synced, "manager": self.check_running},
        )
        candidates = [
            health,
            metrics_server(options.metrics_bind_addr, self.registry),
            profiler_server(options.profiler_address),
        ]
        self.servers = [server.start() for server in candidates if server is not None]

    def server(self, name: str) -> OpsServer | None:
        """The running ops server called `name` ("health", "metrics", "profiler")."""
        return next((s for s in self.servers if s.name == name), None)

    def _start_leader_election(self) -> None:
        if self.api_client is None:
            raise ValueError("leader election needs an api_client")
        options = self.options
        self._leader_gauge = self._leader_status_gauge()
        self.elector = LeaderElector(
            self.api_client,
            lease_name=options.lease_name,
            namespace=options.leader_election_namespace or default_lease_namespace(),
            identity=self.identity,
            lease_duration=options.leader_elect_lease_duration,
            renew_deadline=options.leader_elect_renew_deadline,
            retry_period=options.leader_elect_retry_period,
            on_started_leading=self._on_started_leading,
            on_stopped_leading=self._on_stopped_leading,
        )
        self.elector.start()

    def _leader_status_gauge(self) -> Gauge:
        gauge = self.metrics.leader_election_status.labels(self.options.lease_name)
        gauge.set(0)
        return gauge

    def _on_started_leading(self) -> None:
        if self._leader_gauge is not None:
            self._leader_gauge.set(1)
        self._start_controllers_when_synced()

    def _on_stopped_leading(self) -> None:
        if self._leader_gauge is not None:
            self._leader_gauge.set(0)
        if self._stopping:
            return
        _log.error("Leader election lost", lease=self.options.lease_name)
        for controller in self.controllers:
            controller.queue.shut_down()  # start nothing more as a non-leader
        self.request_stop(EXIT_LEADERSHIP_LOST)

    def _start_controllers_when_synced(self) -> None:
        thread = threading.Thread(
            target=self._start_controllers, name="manager-start-controllers", daemon=True
        )
        thread.start()

    def _start_controllers(self) -> None:
        if not self.wait_for_cache_sync(self.options.cache_sync_timeout):
            if not self._done.is_set():
                _log.error(
                    "Timed out waiting for informers to sync",
                    reason=self.check_informers_synced(),
                    timeout=self.options.cache_sync_timeout,
                )
                self.request_stop(EXIT_FAILED)
            return
        with self._lock:
            if self._stopping:
                return
            for controller in self.controllers:
                controller.start()
            self._controllers_started.set()

    def wait_for_cache_sync(self, timeout: float) -> bool:
        """Poll every informer's `has_synced()` until all are, the run ends, or `timeout`."""
        deadline = time.monotonic() + timeout
        while not self._done.is_set():
            if all(informer.has_synced() for informer in self.informers):
                return True
            if time.monotonic() >= deadline:
                return False
            self._done.wait(0.05)
        return False
