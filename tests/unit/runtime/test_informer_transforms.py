"""Transforms trim objects before they are cached."""

from __future__ import annotations

import json
from typing import Any

from kcp.runtime.transforms import (
    LAST_APPLIED_ANNOTATION,
    chain,
    default_transform,
    identity,
    keep_paths,
)


def secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "namespace": "ns",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}],
            "annotations": {LAST_APPLIED_ANNOTATION: '{"big": "copy"}', "keep": "me"},
        },
        "data": {"tls.key": "c2VjcmV0"},
        "spec": {"replicas": 3, "template": {"huge": "x" * 100}},
    }


def test_default_transform_drops_managed_fields_and_last_applied_only() -> None:
    out = default_transform(secret())
    assert "managedFields" not in out["metadata"]
    assert out["metadata"]["annotations"] == {"keep": "me"}
    assert out["data"] == {"tls.key": "c2VjcmV0"}


def test_default_transform_removes_emptied_annotations() -> None:
    obj = secret()
    obj["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: "{}"}
    assert "annotations" not in default_transform(obj)["metadata"]


def test_transforms_tolerate_odd_objects() -> None:
    assert default_transform({}) == {}
    assert default_transform({"metadata": {"annotations": None}}) == {
        "metadata": {"annotations": None}
    }


def test_keep_paths_keeps_identity_and_named_fields() -> None:
    out = keep_paths("spec.replicas", "status.missing")(secret())
    assert out["spec"] == {"replicas": 3}
    assert "data" not in out and "status" not in out
    assert out["metadata"]["name"] == "s"
    assert "managedFields" not in out["metadata"]


def test_chain_applies_in_order() -> None:
    def tag(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("metadata", {}).setdefault("labels", {})["seen"] = "yes"
        return obj

    out = chain(identity, default_transform, tag)(secret())
    assert out["metadata"]["labels"] == {"seen": "yes"}
    assert "managedFields" not in out["metadata"]


def test_default_transform_shares_keys_and_short_values_between_objects() -> None:
    raw = json.dumps(
        {
            "metadata": {"name": "a", "annotations": {"note": "x" * 100}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "n": 1},
        }
    )
    first, second = default_transform(json.loads(raw)), default_transform(json.loads(raw))
    assert first == second == json.loads(raw)
    key_of = {id(k) for k in first["status"]}
    assert key_of == {id(k) for k in second["status"]}
    ready = (first["status"]["conditions"][0], second["status"]["conditions"][0])
    assert ready[0]["status"] is ready[1]["status"]
    assert first["metadata"]["name"] is second["metadata"]["name"]
    # Long strings are left alone: they are rarely shared.
    notes = (first["metadata"]["annotations"]["note"], second["metadata"]["annotations"]["note"])
    assert notes[0] == notes[1] and notes[0] is not notes[1]
