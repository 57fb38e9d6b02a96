"""Kubernetes versions and the version changes kcp refuses."""

from __future__ import annotations

import pytest

from kcp.controlplane.versions import canonical_version, parse_version, version_change_problem


def test_versions_are_read_as_cluster_api_reads_them() -> None:
    assert parse_version("v1.34.4") is not None
    assert str(parse_version("1.34")) == "v1.34.0"
    assert str(parse_version("v1.35.0-alpha.1+abc")) == "v1.35.0-alpha.1+abc"
    assert parse_version("v1.35.0-alpha.1") == parse_version("v1.35.0-alpha.1")
    assert canonical_version("v1.34") == "v1.34.0"
    for bad in ("", "latest", "v1", "1.x.0", None):
        assert parse_version(bad) is None, bad


@pytest.mark.parametrize(
    ("desired", "running"),
    [
        ("v1.34.5", ["v1.34.4"]),  # a patch release
        ("v1.35.0", ["v1.34.4"]),  # the next minor
        ("v1.35.9", ["v1.34.4"]),  # any patch of the next minor
        ("v1.35.0-rc.1", ["v1.34.4"]),  # pre-releases compare as their release
        ("v1.34.4", ["v1.34.4"]),
        ("v1.35.0", ["v1.34.4", "v1.35.0"]),  # a rollout in progress
        ("v1.34.4", ["v1.34.4", "v1.35.0"]),  # a version some Machine runs is never refused
        ("v1.36.0", []),  # nothing runs yet
    ],
)
def test_allowed(desired: str, running: list[str]) -> None:
    assert version_change_problem(desired, running) is None


def test_skipping_a_minor_is_refused_naming_the_allowed_versions() -> None:
    problem = version_change_problem("v1.35.0", ["v1.33.7", "v1.33.7", None])
    assert problem == (
        "spec.version v1.35.0 skips a minor version: the Machines run v1.33.7 and Kubernetes "
        "is upgraded one minor version at a time; allowed versions: v1.33.7 or a later v1.33 "
        "patch release, or any v1.34 release (e.g. v1.34.0); upgrade to v1.35.0 in steps of "
        "one minor version"
    )


def test_a_second_upgrade_waits_for_the_first() -> None:
    problem = version_change_problem("v1.36.0", ["v1.34.4", "v1.35.1"])
    assert problem is not None
    assert "the Machines run v1.34.4 to v1.35.1" in problem
    assert "allowed versions: v1.35.1 or a later v1.35 patch release" in problem


def test_a_downgrade_is_refused() -> None:
    problem = version_change_problem("v1.34.3", ["v1.34.5"])
    assert problem is not None
    assert problem.startswith("spec.version v1.34.3 is a downgrade: the Machines run v1.34.5")
    assert "allowed versions: v1.34.5 or a later v1.34 patch release, or any v1.35" in problem
    assert version_change_problem("v1.33.9", ["v1.34.0"]) is not None


def test_machines_already_too_far_apart_may_only_keep_their_versions() -> None:
    problem = version_change_problem("v1.33.0", ["v1.32.0", "v1.34.0"])
    assert problem is not None and "one of the versions the Machines run" in problem


def test_a_version_that_is_not_one_says_what_to_set() -> None:
    assert version_change_problem("latest", ["v1.34.4"]) == (
        "spec.version 'latest' is not a Kubernetes version; set one such as v1.34.4"
    )
