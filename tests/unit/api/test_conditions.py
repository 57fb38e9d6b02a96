from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kcp.api import conditions as c

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_set_adds_a_condition_with_transition_time() -> None:
    conds: list[dict[str, Any]] = []
    assert c.set_condition(conds, c.AVAILABLE, False, c.NOT_AVAILABLE_REASON, "no etcd", 3, T0)
    assert conds == [
        {
            "type": "Available",
            "status": "False",
            "reason": "NotAvailable",
            "message": "no etcd",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-01-02T03:04:05Z",
        }
    ]


def test_transition_time_moves_only_when_status_changes() -> None:
    conds: list[dict[str, Any]] = []
    c.set_condition(conds, c.AVAILABLE, "False", c.NOT_AVAILABLE_REASON, "a", 1, T0)
    changed = c.set_condition(conds, c.AVAILABLE, "False", "Other", "b", 2, T1)
    assert changed
    assert conds[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert (conds[0]["reason"], conds[0]["message"], conds[0]["observedGeneration"]) == (
        "Other",
        "b",
        2,
    )
    assert c.set_condition(conds, c.AVAILABLE, True, c.AVAILABLE_REASON, "", 2, T1)
    assert conds[0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"
    assert len(conds) == 1


def test_setting_the_same_condition_reports_no_change() -> None:
    conds: list[dict[str, Any]] = []
    c.set_condition(conds, c.PAUSED, False, c.NOT_PAUSED_REASON, "", 1, T0)
    before = [dict(x) for x in conds]
    assert not c.set_condition(conds, c.PAUSED, False, c.NOT_PAUSED_REASON, "", 1, T1)
    assert conds == before


def test_other_conditions_are_left_alone() -> None:
    foreign = {
        "type": "Foo",
        "status": "True",
        "reason": "X",
        "message": "",
        "lastTransitionTime": "x",
    }
    conds = [dict(foreign)]
    c.set_condition(conds, c.PAUSED, False, c.NOT_PAUSED_REASON, "", None, T0)
    assert conds[0] == foreign
    assert "observedGeneration" not in conds[1]


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        c.set_condition([], c.PAUSED, "yes", "R", "", 1, T0)
    with pytest.raises(ValueError, match="reason"):
        c.set_condition([], c.PAUSED, True, "", "", 1, T0)
    with pytest.raises(ValueError, match="timezone"):
        c.set_condition([], c.PAUSED, True, "R", "", 1, datetime(2026, 1, 1))


def test_timestamps_are_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert c.rfc3339(datetime(2026, 1, 1, 2, 0, tzinfo=plus2)) == "2026-01-01T00:00:00Z"


def test_get_and_predicates_read_status_conditions() -> None:
    obj = {
        "status": {
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Paused", "status": "False"},
                {"type": "RollingOut", "status": "Unknown"},
            ]
        }
    }
    assert c.get_condition(obj, c.AVAILABLE) == {"type": "Available", "status": "True"}
    assert c.is_true(obj, c.AVAILABLE)
    assert not c.is_true(obj, c.PAUSED)
    assert c.is_false(obj, c.PAUSED)
    assert not c.is_true(obj, c.ROLLING_OUT) and not c.is_false(obj, c.ROLLING_OUT)
    assert c.get_condition(obj, c.DELETING) is None
    assert not c.is_false(obj, c.DELETING)
    assert c.get_condition({}, c.AVAILABLE) is None
    assert c.get_condition({"status": None}, c.AVAILABLE) is None


def test_remove_condition() -> None:
    conds: list[dict[str, Any]] = [{"type": "A"}, {"type": "B"}]
    assert c.remove_condition(conds, "A")
    assert not c.remove_condition(conds, "A")
    assert conds == [{"type": "B"}]


def test_kcp_condition_types_are_cluster_apis() -> None:
    assert c.KCP_CONDITION_TYPES == (
        "Available",
        "Initialized",
        "CertificatesAvailable",
        "EtcdClusterHealthy",
        "ControlPlaneComponentsHealthy",
        "MachinesReady",
        "MachinesUpToDate",
        "RollingOut",
        "ScalingUp",
        "ScalingDown",
        "Remediating",
        "Deleting",
        "Paused",
    )
    assert c.MACHINE_CONDITION_TYPES == (
        "APIServerPodHealthy",
        "ControllerManagerPodHealthy",
        "SchedulerPodHealthy",
        "EtcdPodHealthy",
        "EtcdMemberHealthy",
    )
