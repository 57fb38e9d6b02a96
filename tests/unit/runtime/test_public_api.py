"""The public face of kcp.runtime: what other packages may import from it."""

from __future__ import annotations

import kcp.runtime

MACHINERY = {
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
}


def test_machinery_names_are_exported() -> None:
    assert set(kcp.runtime.__all__) >= MACHINERY
    for name in MACHINERY:
        assert getattr(kcp.runtime, name) is not None


def test_every_exported_name_exists() -> None:
    for name in kcp.runtime.__all__:
        assert hasattr(kcp.runtime, name), name
