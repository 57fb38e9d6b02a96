"""The cluster certificate Secrets: `<cluster>-ca`, `-etcd`, `-proxy` and `-sa`.

Before the control plane exists, a missing one is generated once (a 10-year
CA, or the service-account key pair) and written with Cluster API's type,
label and controller owner reference. One that exists — written by the user or
by us earlier — is never replaced: a CA is never regenerated. Once Machines
exist, a missing or unreadable Secret sets `CertificatesAvailable=False` with a
message naming the Secret and what is wrong; new Machines are not joined until
it is fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.groups import SECRET
from kcp.certs import (
    CLUSTER_SECRET_TYPE,
    CertificateError,
    KeyPair,
    SecretPurpose,
    key_pair_from_secret_data,
    key_pair_to_secret_data,
    new_certificate_authority,
    new_service_account_key,
    secret_name,
    service_account_key_from_secret_data,
)
from kcp.controlplane.condition import Condition
from kcp.controlplane.secrets import (
    SecretStore,
    cluster_secret,
    controller_of,
    controller_reference,
)
from kcp.rest import ApiError, Kube

__all__ = [
    "CA_COMMON_NAMES",
    "CERTIFICATE_PURPOSES",
    "CertificatesOutcome",
    "load_cluster_ca",
    "reconcile_certificates",
]

CERTIFICATE_PURPOSES: tuple[SecretPurpose, ...] = (
    SecretPurpose.CLUSTER_CA,
    SecretPurpose.ETCD,
    SecretPurpose.FRONT_PROXY,
    SecretPurpose.SERVICE_ACCOUNT,
)

CA_COMMON_NAMES: Mapping[SecretPurpose, str] = {
    SecretPurpose.CLUSTER_CA: "kubernetes",
    SecretPurpose.ETCD: "etcd-ca",
    SecretPurpose.FRONT_PROXY: "front-proxy-ca",
}
"""The subjects kubeadm gives its CAs."""

_DESCRIPTIONS: Mapping[SecretPurpose, str] = {
    SecretPurpose.CLUSTER_CA: "cluster certificate authority",
    SecretPurpose.ETCD: "etcd certificate authority",
    SecretPurpose.FRONT_PROXY: "front-proxy certificate authority",
    SecretPurpose.SERVICE_ACCOUNT: "service-account signing key",
}


@dataclass
class CertificatesOutcome:
    """The `CertificatesAvailable` condition and what happened on the way."""

    condition: Condition
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """One sentence per unusable Secret, naming it and saying what to fix."""

    @property
    def available(self) -> bool:
        return self.condition.is_true


def _generate(purpose: SecretPurpose, now: datetime | None) -> dict[str, bytes]:
    if purpose is SecretPurpose.SERVICE_ACCOUNT:
        public_pem, private_pem = new_service_account_key()
        return {"tls.crt": public_pem, "tls.key": private_pem}
    return key_pair_to_secret_data(new_certificate_authority(CA_COMMON_NAMES[purpose], now=now))


VALID = "valid"
"""What is remembered of a Secret that only had to be checked (every one but the cluster CA):
a parsed key pair held for each of a thousand clusters' Secrets costs ~6 KiB apiece."""


def _validate(
    purpose: SecretPurpose, where: str, data: dict[str, bytes], *, own: bool = False
) -> object:
    """`own`: the Secret is the API server's answer to our create of a key generated here, so
    its RSA key's consistency check (as costly as generating it, a fifth of kcp's CPU while
    a fleet is created) is skipped; the certificate must still match it."""
    if purpose is SecretPurpose.SERVICE_ACCOUNT:
        service_account_key_from_secret_data(data, secret_name=where, skip_rsa_validation=own)
        return VALID
    pair = key_pair_from_secret_data(
        data, secret_name=where, require_ca=True, skip_rsa_validation=own
    )
    # Only the cluster CA is used afterwards (it signs kubeconfig certificates).
    return pair if purpose is SecretPurpose.CLUSTER_CA else VALID


def _validator(
    purpose: SecretPurpose, where: str, *, own: bool = False
) -> Callable[[dict[str, bytes]], object]:
    def validate(data: dict[str, bytes]) -> object:
        return _validate(purpose, where, data, own=own)

    return validate


def load_cluster_ca(store: SecretStore, namespace: str, cluster_name: str) -> KeyPair | None:
    """The cluster CA key pair from `<cluster>-ca` (None when missing); raises CertificateError."""
    name = secret_name(cluster_name, SecretPurpose.CLUSTER_CA)
    where = f"{namespace}/{name}"
    found = store.parsed_secret(
        namespace,
        name,
        SecretPurpose.CLUSTER_CA.value,
        lambda data: _validate(SecretPurpose.CLUSTER_CA, where, data),
    )
    if found is None:
        return None
    value = found[1]
    assert isinstance(value, KeyPair)
    return value


def reconcile_certificates(
    store: SecretStore,
    kcp: Mapping[str, Any],
    cluster_name: str,
    *,
    may_generate: bool,
    now: datetime | None = None,
) -> CertificatesOutcome:
    """Make sure the four Secrets exist and are usable; never overwrite one.

    `may_generate` is True only before the control plane has Machines: then a
    missing Secret is created. API failures raise (the reconcile is retried);
    a user's mistake ends in the returned condition.
    """
    metadata = kcp.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    kcp_uid = str(metadata.get("uid") or "")
    outcome = CertificatesOutcome(Condition.true(c.CERTIFICATES_AVAILABLE, c.AVAILABLE_REASON))
    watch_value = (metadata.get("labels") or {}).get(labels.WATCH_LABEL)
    extra = {labels.WATCH_LABEL: watch_value} if watch_value else None
    for purpose in CERTIFICATE_PURPOSES:
        name = secret_name(cluster_name, purpose)
        where = f"{namespace}/{name}"
        try:
            found = store.parsed_secret(namespace, name, purpose.value, _validator(purpose, where))
        except CertificateError as error:
            outcome.problems.append(str(error))
            continue
        if found is None:
            if not may_generate:
                outcome.problems.append(
                    f"Secret {where} not found; the control plane already exists, so kcp will "
                    f"not generate a new {_DESCRIPTIONS[purpose]}: restore the Secret (tls.crt "
                    "and tls.key) from a backup"
                )
                continue
            body = cluster_secret(
                namespace=namespace,
                name=name,
                cluster_name=cluster_name,
                data=_generate(purpose, now),
                owner=kcp,
                extra_labels=extra,
            )
            try:
                created = store.kube.create(SECRET, namespace, body)
            except ApiError as error:
                if error.status != 409:  # created meanwhile (by us or the user): keep theirs
                    raise
            else:
                outcome.created.append(name)
                store.remember_written(purpose.value, created, _validator(purpose, where, own=True))
            continue
        meta = found[0]
        if _adopt(store.kube, meta, kcp, kcp_uid):
            outcome.adopted.append(name)
    if outcome.problems:
        outcome.condition = Condition.false(
            c.CERTIFICATES_AVAILABLE,
            c.NOT_AVAILABLE_REASON,
            "\n".join(f"* {problem}" for problem in outcome.problems),
        )
    return outcome


def _adopt(kube: Kube, secret: Mapping[str, Any], kcp: Mapping[str, Any], kcp_uid: str) -> bool:
    """Make KCP the controller of a Cluster API-typed Secret, as Cluster API does: one that has
    no controller, or another one (the KubeadmConfig of a Machine that ran `kubeadm init` on
    its own generated it, say).

    Secrets of another type (a user's own) are left exactly as they are.
    """
    # A metadata-only copy has no type: adoption waits for a live read.
    controller = controller_of(secret)
    if secret.get("type") != CLUSTER_SECRET_TYPE or (
        controller is not None and controller.get("uid") == kcp_uid
    ):
        return False
    metadata = secret.get("metadata") or {}
    refs = [
        dict(r)
        for r in metadata.get("ownerReferences") or []
        if r.get("uid") != kcp_uid and not r.get("controller")
    ]
    refs.append(controller_reference(kcp))
    kube.merge_patch(
        SECRET,
        str(metadata.get("namespace")),
        str(metadata.get("name")),
        {
            "metadata": {
                "ownerReferences": refs,
                "resourceVersion": metadata.get("resourceVersion"),
            }
        },
    )
    return True
