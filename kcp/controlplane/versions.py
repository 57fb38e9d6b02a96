"""Kubernetes versions as Cluster API compares them, and which version changes kcp refuses.

Versions are read as Cluster API's `semver.ParseTolerant` reads them (a leading
`v`, a missing patch taken as 0) and compared without their pre-release part.

Cluster API's admission webhook refuses a `spec.version` more than one minor
version above the previous one; kcp has no webhook and compares with what the
Machines run instead, which also catches a second upgrade started before the
first finished. It refuses a downgrade too — kubeadm does not downgrade a
control plane, and Cluster API refuses one for a Cluster's topology version
(its KubeadmControlPlane webhook itself lets one through). A version some
Machine already runs is always accepted, so that no state kcp finds becomes a
dead end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Version", "canonical_version", "parse_version", "version_change_problem"]

_VERSION = re.compile(
    r"^v?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?$"
)


@dataclass(frozen=True)
class Version:
    """A Kubernetes version; ordering and equality ignore the pre-release and build parts."""

    major: int
    minor: int
    patch: int
    pre: str = ""
    build: str = ""

    @property
    def core(self) -> tuple[int, int, int]:
        return self.major, self.minor, self.patch

    def __str__(self) -> str:
        text = f"v{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += f"-{self.pre}"
        if self.build:
            text += f"+{self.build}"
        return text


def parse_version(text: str | None) -> Version | None:
    """`v1.34.4`, `1.34.4`, `v1.34`, `v1.35.0-alpha.1+abc` — or None for anything else."""
    match = _VERSION.match((text or "").strip())
    if match is None:
        return None
    return Version(
        int(match["major"]),
        int(match["minor"]),
        int(match["patch"] or 0),
        match["pre"] or "",
        match["build"] or "",
    )


def canonical_version(text: str) -> str:
    """The version as Cluster API writes it into kubeadm's configuration (`v1.34` → `v1.34.0`)."""
    parsed = parse_version(text)
    return str(parsed) if parsed is not None else text


def _minor(major: int, minor: int) -> str:
    return f"v{major}.{minor}"


def version_change_problem(desired: str, running: Iterable[str | None]) -> str | None:
    """Why `desired` must not be rolled out onto Machines running `running`, naming what may be.

    None when it may (or when no Machine reports a version yet).
    """
    target = parse_version(desired)
    if target is None:
        return f"spec.version {desired!r} is not a Kubernetes version; set one such as v1.34.4"
    versions = [v for v in (parse_version(r) for r in running) if v is not None]
    if not versions or any(v.core == target.core for v in versions):
        return None
    lowest = min(versions, key=lambda v: v.core)
    highest = max(versions, key=lambda v: v.core)
    ceiling = (lowest.major, lowest.minor + 2, 0)
    if highest.core <= target.core < ceiling:
        return None
    runs = (
        f"the Machines run {lowest}"
        if lowest.core == highest.core
        else f"the Machines run {lowest} to {highest}"
    )
    if target.core < highest.core:
        why = (
            f"spec.version {desired} is a downgrade: {runs} and kubeadm does not downgrade a "
            "control plane"
        )
    else:
        why = (
            f"spec.version {desired} skips a minor version: {runs} and Kubernetes is upgraded "
            "one minor version at a time"
        )
    next_minor = _minor(lowest.major, lowest.minor + 1)
    if highest.core >= (lowest.major, lowest.minor + 1, 0):
        if highest.minor > lowest.minor + 1 or highest.major != lowest.major:
            allowed = f"one of the versions the Machines run ({lowest}, {highest})"
        else:
            allowed = f"{highest} or a later {next_minor} patch release"
    else:
        allowed = (
            f"{highest} or a later {_minor(highest.major, highest.minor)} patch release, or "
            f"any {next_minor} release (e.g. {next_minor}.0)"
        )
    advice = f"allowed versions: {allowed}"
    if target.core >= ceiling:
        advice += f"; upgrade to {target} in steps of one minor version"
    return f"{why}; {advice}"
