"""What remediations happened, and what that allows now: retries counted as Cluster API does.

A remediation is recorded as Cluster API's JSON (`machine`, `timestamp`,
`retryCount`): in the KubeadmControlPlane's `remediation-in-progress`
annotation until the replacement exists, then in the replacement's
`remediation-for` annotation. A replacement that fails within
`spec.remediation.minHealthyPeriodSeconds` is a retry of the same
remediation: its count carries over, it waits out `retryPeriodSeconds`, and
stops once the count reached `maxRetry`. `status.lastRemediation` is the one
in progress, else the newest a Machine records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.objects import MachineView, parse_time

__all__ = [
    "DEFAULT_MIN_HEALTHY_PERIOD",
    "RemediationData",
    "RemediationSettings",
    "RetryCheck",
    "check_retry_limits",
    "last_remediation",
    "stale_in_progress",
]

DEFAULT_MIN_HEALTHY_PERIOD = timedelta(hours=1)
"""Cluster API's default `spec.remediation.minHealthyPeriodSeconds`."""
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RemediationData:
    """One remediation: the Machine removed, when, and how many retries led to it.

    Kept in the KubeadmControlPlane's `remediation-in-progress` annotation until
    the replacement exists, then in the replacement's `remediation-for`
    annotation, both as Cluster API's JSON (`machine`, `timestamp`, `retryCount`).
    """

    machine: str
    timestamp: datetime | None
    retry_count: int = 0

    def to_annotation(self) -> str:
        stamp = c.rfc3339(self.timestamp) if self.timestamp is not None else None
        return json.dumps(
            {"machine": self.machine, "timestamp": stamp, "retryCount": self.retry_count},
            separators=(",", ":"),
        )

    @classmethod
    def from_annotation(cls, value: str) -> RemediationData:
        """Parse an annotation's value; ValueError names what is wrong with it."""
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"not JSON: {error}") from None
        if not isinstance(loaded, Mapping):
            raise ValueError("not a JSON object")
        retries = loaded.get("retryCount", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retryCount {retries!r} is not a whole number")
        return cls(str(loaded.get("machine") or ""), parse_time(loaded.get("timestamp")), retries)

    def to_status(self) -> dict[str, Any]:
        """`status.lastRemediation` as Cluster API writes it."""
        status: dict[str, Any] = {"machine": self.machine, "retryCount": self.retry_count}
        if self.timestamp is not None:
            status["time"] = c.rfc3339(self.timestamp)
        return status


def _annotation_data(annotations: Mapping[str, str], key: str) -> RemediationData | None:
    value = annotations.get(key)
    if value is None:
        return None
    try:
        return RemediationData.from_annotation(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class RemediationSettings:
    """`spec.remediation` with Cluster API's defaults."""

    max_retry: int | None = None
    """None: retry forever."""
    retry_period: timedelta = timedelta(0)
    min_healthy_period: timedelta = DEFAULT_MIN_HEALTHY_PERIOD

    @classmethod
    def from_spec(cls, kcp: Mapping[str, Any]) -> RemediationSettings:
        spec = (kcp.get("spec") or {}).get("remediation") or {}

        def seconds(key: str) -> int | None:
            value = spec.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        min_healthy = seconds("minHealthyPeriodSeconds")
        return cls(
            max_retry=seconds("maxRetry"),
            retry_period=timedelta(seconds=max(0, seconds("retryPeriodSeconds") or 0)),
            min_healthy_period=(
                DEFAULT_MIN_HEALTHY_PERIOD
                if min_healthy is None
                else timedelta(seconds=max(0, min_healthy))
            ),
        )


def stale_in_progress(annotations: Mapping[str, str], machines: Sequence[MachineView]) -> bool:
    """The KCP's `remediation-in-progress` outlived its replacement (a crash in between), or
    cannot be read (someone edited it): either way it should go, or it would block forever."""
    if labels.REMEDIATION_IN_PROGRESS_ANNOTATION not in annotations:
        return False
    data = _annotation_data(annotations, labels.REMEDIATION_IN_PROGRESS_ANNOTATION)
    if data is None or data.timestamp is None:
        return True  # unreadable, it cannot tell which replacement it waits for: drop it
    return any(
        m.creation_timestamp is not None and m.creation_timestamp > data.timestamp for m in machines
    )


@dataclass(frozen=True)
class RetryCheck:
    """Whether retry limits allow remediating now, and the data to record if so."""

    allowed: bool
    data: RemediationData
    reason: str = ""
    message: str = ""


def _duration(period: timedelta) -> str:
    """A period as Go prints a `time.Duration` (`1h0m0s`, `30s`), as Cluster API's messages do."""
    total = int(period.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def check_retry_limits(
    machine: MachineView, settings: RemediationSettings, now: datetime
) -> RetryCheck:
    """Cluster API's retry rules, read from the Machine's `remediation-for` annotation.

    A Machine that replaced another less than `min_healthy_period` ago is a
    retry of that remediation: its count carries over, it waits out
    `retry_period` since then, and stops once the count reached `max_retry`.
    """
    fresh = RemediationData(machine.name, now, 0)
    last = _annotation_data(machine.annotations, labels.REMEDIATION_FOR_ANNOTATION)
    if last is None:
        return RetryCheck(True, fresh)
    # Without a time, as if both periods had passed (Cluster API's choice too).
    when = last.timestamp or now - 2 * max(settings.min_healthy_period, settings.retry_period)
    if when + settings.min_healthy_period <= now:
        return RetryCheck(True, fresh)  # a new problem, not a retry
    data = RemediationData(machine.name, now, last.retry_count)
    if when + settings.retry_period > now:
        return RetryCheck(
            False,
            data,
            c.OWNER_REMEDIATED_DEFERRED_REASON,
            "KubeadmControlPlane can't remediate this Machine because the operation already "
            f"failed in the latest {_duration(settings.retry_period)} (RetryPeriodSeconds); "
            f"Machine {last.machine} was remediated at {c.rfc3339(when)}",
        )
    if settings.max_retry is not None and data.retry_count >= settings.max_retry:
        return RetryCheck(
            False,
            data,
            c.OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON,
            "KubeadmControlPlane can't remediate this Machine because the operation already "
            f"failed {data.retry_count} times (MaxRetry {settings.max_retry}); "
            "remediation stops here: fix the cause, then delete the Machine to retry",
        )
    return RetryCheck(True, RemediationData(machine.name, now, data.retry_count + 1))


def last_remediation(
    kcp_annotations: Mapping[str, str], machines: Sequence[MachineView]
) -> RemediationData | None:
    """The remediation in progress, else the newest one a Machine's annotation records."""
    current = _annotation_data(kcp_annotations, labels.REMEDIATION_IN_PROGRESS_ANNOTATION)
    if current is not None:
        return current
    found = [
        data
        for m in machines
        if (data := _annotation_data(m.annotations, labels.REMEDIATION_FOR_ANNOTATION))
    ]
    if not found:
        return None
    return max(found, key=lambda d: d.timestamp or _EPOCH)
