"""Manager settings: every default written down once, with the flag that sets it.

Flag names and defaults are Cluster API's (`--leader-elect`, `--sync-period`,
`--health-addr` ...). Durations accept Go's spelling (`15s`, `10m`, `1m30s`) as
well as plain seconds, so existing manifests keep working.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from kcp.runtime.controller import DEFAULT_STOP_TIMEOUT, DEFAULT_SYNC_PERIOD
from kcp.runtime.leaderelection import (
    DEFAULT_LEASE_DURATION,
    DEFAULT_RENEW_DEADLINE,
    DEFAULT_RETRY_PERIOD,
)

T = TypeVar("T")

WATCH_FILTER_LABEL = "cluster.x-k8s.io/watch-filter"
"""Label whose value selects which objects a shard (`--watch-filter`) reconciles."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from a Go duration (`"1m30s"`, `"500ms"`) or a plain number of seconds."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    if not value or _DURATION_PART.sub("", value) != "":
        raise ValueError(f"bad duration {text!r}: use e.g. 15s, 10m, 1m30s or seconds")
    return sum(
        float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value)
    )


def _option(default: T, help: str) -> T:
    """A field whose default and help text (shown by `--help`) live only here."""
    result: T = field(default=default, metadata={"help": help})
    return result


@dataclass
class ManagerOptions:
    """How the manager runs; one field per command-line flag (`flag_name` gives it)."""

    leader_elect: bool = _option(
        False,
        "run controllers only while holding a coordination.k8s.io Lease.",
    )

    leader_elect_lease_duration: float = _option(
        DEFAULT_LEASE_DURATION,
        "seconds a non-leader waits before taking an unrenewed Lease.",
    )

    leader_elect_renew_deadline: float = _option(
        DEFAULT_RENEW_DEADLINE,
        "seconds the leader retries renewing before giving up.",
    )

    leader_elect_retry_period: float = _option(
        DEFAULT_RETRY_PERIOD,
        "seconds between acquire/renew attempts.",
    )

    leader_election_id: str = _option(
        "kcp-controller-manager",
        "Lease name (suffixed with the watch filter when sharding).",
    )

    leader_election_namespace: str | None = _option(
        None,
        "Lease namespace; None = the pod's own namespace (service account mount), else 'default'.",
    )

    namespace: str | None = _option(
        None,
        "watch only this namespace; None = all namespaces.",
    )

    watch_filter: str | None = _option(
        None,
        "reconcile only objects labelled cluster.x-k8s.io/watch-filter=<value>; "
        "each value is a shard with its own Lease.",
    )

    concurrency: int = _option(
        100,
        "reconciles in flight at once per controller (Cluster API's KCP default); "
        "worker threads start as keys wait and stop when idle.",
    )

    sync_period: float = _option(
        DEFAULT_SYNC_PERIOD,
        "seconds between resyncs that re-enqueue every known object.",
    )

    kube_api_qps: float = _option(
        100.0,
        "sustained requests per second to the API server for each resource (0 = "
        "unlimited): controller-runtime's client limits each kind on its own; Cluster "
        "API's KCP manager's default.",
    )

    kube_api_burst: int = _option(
        200,
        "requests allowed at once above the sustained rate.",
    )

    health_addr: str = _option(
        ":9440",
        "where `/healthz` and `/readyz` are served ('0' disables).",
    )

    metrics_bind_addr: str = _option(
        ":8080",
        "where Prometheus `/metrics` is served ('0' disables).",
    )

    profiler_address: str = _option(
        "",
        "where `/debug/pprof/...` is served ( disables), e.g. localhost:6060.",
    )

    graceful_shutdown_timeout: float = _option(
        DEFAULT_STOP_TIMEOUT,
        "seconds in-flight reconciles get to finish on SIGTERM.",
    )

    cache_sync_timeout: float = _option(
        120.0,
        "seconds informers get to sync before the manager gives up.",
    )

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.leader_elect and not (
            self.leader_elect_lease_duration
            > self.leader_elect_renew_deadline
            > 1.2 * self.leader_elect_retry_period
        ):
            raise ValueError(
                "need lease duration > renew deadline > 1.2 x retry period for leader election"
            )

    @property
    def lease_name(self) -> str:
        """The Lease this instance campaigns for: one per `--watch-filter` shard."""
        if not self.watch_filter:
            return self.leader_election_id
        suffix = re.sub(r"[^a-z0-9.-]+", "-", self.watch_filter.lower()).strip("-.")
        return f"{self.leader_election_id}-{suffix}"[:253].rstrip("-.")


def watch_filter_selector(value: str | None) -> str | None:
    """The label selector informers use for shard `value` (None when not sharding)."""
    return f"{WATCH_FILTER_LABEL}={value}" if value else None


_FLAG_NAMES = {"concurrency": "--kubeadmcontrolplane-concurrency"}
_DURATIONS = {
    "leader_elect_lease_duration",
    "leader_elect_renew_deadline",
    "leader_elect_retry_period",
    "sync_period",
    "graceful_shutdown_timeout",
    "cache_sync_timeout",
}


def flag_name(field_name: str) -> str:
    return _FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def add_manager_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per `ManagerOptions` field, with its default and help."""
    group = parser.add_argument_group("manager")
    for spec in fields(ManagerOptions):
        kwargs: dict[str, Any] = {
            "dest": spec.name,
            "default": spec.default,
            "help": f"{spec.metadata['help']} (default: {spec.default!r})",
        }
        if spec.name == "leader_elect":
            kwargs["action"] = "store_true"
        elif spec.name in _DURATIONS:
            kwargs.update(type=parse_duration, metavar="DURATION")
        elif isinstance(spec.default, bool | int | float):
            kwargs["type"] = type(spec.default)
        group.add_argument(flag_name(spec.name), **kwargs)


def options_from_args(args: argparse.Namespace) -> ManagerOptions:
    """The `ManagerOptions` that `add_manager_arguments` flags describe."""
    values = {spec.name: getattr(args, spec.name) for spec in fields(ManagerOptions)}
    return ManagerOptions(**values)
