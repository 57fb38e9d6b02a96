"""Generic controller machinery: informers, work queue, controllers, manager, leader election,
probes, metrics, profiling and logging. Knows nothing of control planes."""

from kcp.runtime.controller import Controller, ObjectKey, Reconciler, Result
from kcp.runtime.handlers import (
    EnqueueMapping,
    EventHandler,
    enqueue_by_label,
    enqueue_owner,
    enqueue_self,
    map_to,
)
from kcp.runtime.informer import Backoff, Informer
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
from kcp.runtime.store import (
    Store,
    label_index,
    label_index_value,
    owner_index,
    owner_index_value,
    owner_uid_index,
)
from kcp.runtime.transforms import Transform, default_transform, keep_paths
from kcp.runtime.workqueue import WorkQueue

__all__ = [
    "REGISTRY",
    "WATCH_FILTER_LABEL",
    "Backoff",
    "BucketRateLimiter",
    "Controller",
    "EnqueueMapping",
    "EventHandler",
    "Informer",
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
    "Store",
    "Transform",
    "WorkQueue",
    "add_logging_arguments",
    "add_manager_arguments",
    "configure_logging",
    "configure_logging_from_args",
    "default_controller_rate_limiter",
    "default_metrics",
    "default_transform",
    "enqueue_by_label",
    "enqueue_owner",
    "enqueue_self",
    "get_logger",
    "keep_paths",
    "label_index",
    "label_index_value",
    "map_to",
    "new_registry",
    "options_from_args",
    "owner_index",
    "owner_index_value",
    "owner_uid_index",
    "parse_duration",
    "reconcile_context",
    "watch_filter_selector",
]
