"""Generic controller machinery: work queue, controllers, manager, leader election,
probes, metrics, profiling and logging. Knows nothing of control planes."""

from kcp.runtime.controller import Controller, ObjectKey, Reconciler, Result
from kcp.runtime.leaderelection import LeaderElector
from kcp.runtime.logging import (
    add_logging_arguments,
    configure_logging,
    configure_logging_from_args,
    get_logger,
    reconcile_context,
)
from kcp.runtime.manager import InformerLike, Manager
from kcp.runtime.metrics import REGISTRY, RuntimeMetrics, default_metrics, new_registry
from kcp.runtime.options import (
    WATCH_FILTER_LABEL,
    ManagerOptions,
    add_manager_arguments,
    options_from_args,
    parse_duration,
    watch_filter_selector,
)
from kcp.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from kcp.runtime.workqueue import WorkQueue

__all__ = [
    "REGISTRY",
    "WATCH_FILTER_LABEL",
    "BucketRateLimiter",
    "Controller",
    "InformerLike",
    "ItemExponentialRateLimiter",
    "LeaderElector",
    "Manager",
    "ManagerOptions",
    "MaxOfRateLimiter",
    "ObjectKey",
    "RateLimiter",
    "Reconciler",
    "Result",
    "RuntimeMetrics",
    "WorkQueue",
    "add_logging_arguments",
    "add_manager_arguments",
    "configure_logging",
    "configure_logging_from_args",
    "default_controller_rate_limiter",
    "default_metrics",
    "get_logger",
    "new_registry",
    "options_from_args",
    "parse_duration",
    "reconcile_context",
    "watch_filter_selector",
]
