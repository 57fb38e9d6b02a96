"""The admin kubeconfig: created once, rotated past half its life, never when the user owns it."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from kcp.api.groups import SECRET
from kcp.certs import (
    KeyPair,
    decode_certificate,
    kubeconfig_from_secret_data,
    new_certificate_authority,
)
from kcp.controlplane.kubeconfig import needs_rotation, reconcile_kubeconfig
from kcp.controlplane.secrets import SecretStore
from tests.unit.controlplane.builders import NOW, kcp
from tests.unit.controlplane.fakes import FakeCache, FakeKube

ENDPOINT = ("127.0.0.9", 6443)


def _setup() -> tuple[FakeKube, SecretStore, dict[str, Any], KeyPair]:
    kube = FakeKube()
    owner = kube.put(kcp())
    store = SecretStore(kube, FakeCache(kube).secret)  # type: ignore[arg-type]
    return (
        kube,
        store,
        owner,
        new_certificate_authority("kubernetes", algorithm="ecdsa-p256", now=NOW),
    )


def _client_cert(kube: FakeKube) -> Any:
    secret = kube.get(SECRET, "ns", "c1-kubeconfig")
    assert secret is not None
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    config = kubeconfig_from_secret_data(data, secret_name="ns/c1-kubeconfig")
    return config, decode_certificate(config.client_cert_pem or b"")


def test_half_life_rule() -> None:
    start = NOW
    end = NOW + timedelta(days=365)
    assert not needs_rotation(start, end, NOW + timedelta(days=182))
    assert needs_rotation(start, end, NOW + timedelta(days=183))


def test_created_then_left_alone_then_rotated() -> None:
    kube, store, owner, ca = _setup()
    assert reconcile_kubeconfig(store, owner, "c1", ENDPOINT, ca, now=NOW).action == "created"
    config, first = _client_cert(kube)
    assert config.server == "https://127.0.0.9:6443"
    assert reconcile_kubeconfig(store, owner, "c1", ENDPOINT, ca, now=NOW).action == "unchanged"
    later = NOW + timedelta(days=200)
    assert reconcile_kubeconfig(store, owner, "c1", ENDPOINT, ca, now=later).action == "rotated"
    _, second = _client_cert(kube)
    assert second.serial_number != first.serial_number
    assert second.not_valid_after_utc > first.not_valid_after_utc


def test_a_users_kubeconfig_is_never_rotated() -> None:
    kube, store, owner, ca = _setup()
    reconcile_kubeconfig(store, owner, "c1", ENDPOINT, ca, now=NOW)
    secret = kube.objects[("Secret", "ns", "c1-kubeconfig")]
    secret["metadata"]["ownerReferences"] = []
    kube.put(secret)
    later = NOW + timedelta(days=300)
    assert reconcile_kubeconfig(store, owner, "c1", ENDPOINT, ca, now=later).action == "user-owned"


def test_no_ca_no_kubeconfig() -> None:
    _, store, owner, _ = _setup()
    outcome = reconcile_kubeconfig(store, owner, "c1", ENDPOINT, None, now=NOW)
    assert (outcome.action, outcome.problem) == ("waiting", "the cluster CA is not available")
