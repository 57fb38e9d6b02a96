"""Our own status writes come back as watch events; only those are told apart.

Against the real API server: the resource version a status patch returns is
the one its MODIFIED event carries, so the event can be dropped, while every
other writer's change (spec, labels, status) still enqueues a reconcile.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from kcp.api import groups
from kcp.controlplane.condition import Condition
from kcp.controlplane.echoes import OwnWrites
from kcp.controlplane.status import write_conditions
from kcp.rest import Kube
from kcp.runtime.informer import Informer
from tests.manifests import kubeadm_control_plane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_only_the_echo_of_our_own_status_write_is_dropped(api_client: Any, namespace: str) -> None:
    kube = Kube(api_client, field_manager="kcp-controller")
    other = Kube(api_client, field_manager="someone-else")
    own = OwnWrites()
    seen: list[bool] = []  # per MODIFIED event, in order: dropped as an echo?
    changed = threading.Condition()

    def handle(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if event_type != "MODIFIED":
            return
        with changed:
            seen.append(own.is_echo(event_type, obj))
            changed.notify_all()

    informer = Informer(api_client, groups.KUBEADM_CONTROL_PLANE, namespace=namespace, name="kcps")
    informer.add_handler(handle)
    informer.start()
    try:
        assert informer.wait_for_sync(30)
        created = kube.create(groups.KUBEADM_CONTROL_PLANE, namespace, kubeadm_control_plane("cp"))

        def wait_events(count: int) -> None:
            deadline = time.monotonic() + 20
            with changed:
                while len(seen) < count:
                    remaining = deadline - time.monotonic()
                    assert remaining > 0, f"only {seen} after 20s"
                    changed.wait(remaining)

        now = datetime.now(UTC)
        # Our status write: its event is the echo.
        with own.writing(created):
            write_conditions(
                kube,
                groups.KUBEADM_CONTROL_PLANE,
                created,
                [Condition.true("Available", "Available")],
                now=now,
                on_written=own.record,
            )
        wait_events(1)
        # Someone else labels it: a change of theirs, not an echo.
        other.merge_patch(
            groups.KUBEADM_CONTROL_PLANE, namespace, "cp", {"metadata": {"labels": {"a": "b"}}}
        )
        wait_events(2)
        # Someone else writes status.
        other.merge_patch(
            groups.KUBEADM_CONTROL_PLANE,
            namespace,
            "cp",
            {"status": {"version": "v1.34.4"}},
            subresource="status",
        )
        wait_events(3)
        # Ours again, after theirs: an echo again.
        latest = kube.get(groups.KUBEADM_CONTROL_PLANE, namespace, "cp")
        assert latest is not None
        with own.writing(latest):
            write_conditions(
                kube,
                groups.KUBEADM_CONTROL_PLANE,
                latest,
                [Condition.false("Available", "NotAvailable", "gone")],
                now=now,
                on_written=own.record,
            )
        wait_events(4)
    finally:
        informer.stop()
    assert seen == [True, False, False, True]
    assert own.echoes_dropped == 2
