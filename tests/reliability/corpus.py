"""The bad-input corpus: malformed Secrets, specs, templates and kubeconfigs, one cluster each.

Every `BadInput` becomes its own cluster in the namespace the simulator does
not watch. `where` is what the user must find in the condition and the Event
to know what to fix (a Secret and its data key, a spec field), `needle` names
the problem. Inputs the API server itself refuses are in `REJECTED`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kcp import certs
from kcp.api import conditions as c
from kcp.api import groups
from tests.reliability.fleet import secret_body

Secrets = Callable[[str, str], list[dict[str, Any]]]
SpecEdit = Callable[[dict[str, Any]], None]

CERTS = c.CERTIFICATES_AVAILABLE
SCALING = c.SCALING_UP
COMPONENTS = c.CONTROL_PLANE_COMPONENTS_HEALTHY
BLOCKED = (c.TRUE,)
"""Cluster API v1beta2 reports a blocked scale-up as ScalingUp=True "... is blocked because"."""
HUGE = 1000 * 1024
"""Bytes of a near-1-MiB Secret value (the API server allows 1 MiB of data per Secret)."""


def _ca(name: str = "kubernetes", **options: Any) -> certs.KeyPair:
    return certs.new_certificate_authority(name, algorithm="ecdsa-p256", **options)


def _expired() -> certs.KeyPair:
    return _ca(validity=timedelta(days=365), now=datetime.now(UTC) - timedelta(days=800))


def _not_yet_valid() -> certs.KeyPair:
    return _ca(now=datetime.now(UTC) + timedelta(days=3))


def _leaf() -> certs.KeyPair:
    return certs.issue_certificate(_ca(), common_name="not-a-ca", algorithm="ecdsa-p256")


def _pem(key: Any, encryption: Any = None) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption or serialization.NoEncryption(),
        )
    )


def secret(suffix: str, data: Callable[[], dict[str, bytes]], **kw: Any) -> Secrets:
    """A user-provided `<cluster>-<suffix>` Secret holding `data()`."""

    def build(namespace: str, cluster: str) -> list[dict[str, Any]]:
        return [secret_body(namespace, f"{cluster}-{suffix}", cluster, data(), **kw)]

    return build


def ca_data(cert: bytes | None, key: bytes | None) -> dict[str, bytes]:
    found = {}
    if cert is not None:
        found["tls.crt"] = cert
    if key is not None:
        found["tls.key"] = key
    return found


def _good() -> certs.KeyPair:
    return _ca()


def _mismatched() -> dict[str, bytes]:
    return ca_data(_ca().cert_pem, _ca("other").key_pem)


def _truncated() -> dict[str, bytes]:
    ca = _good()
    return ca_data(ca.cert_pem[: len(ca.cert_pem) // 2], ca.key_pem)


def _der() -> dict[str, bytes]:
    ca = _good()
    return ca_data(ca.certificate.public_bytes(serialization.Encoding.DER), ca.key_pem)


def _encrypted() -> dict[str, bytes]:
    ca = _good()
    return ca_data(
        ca.cert_pem, _pem(ca.private_key, serialization.BestAvailableEncryption(b"secret"))
    )


def _ed25519() -> dict[str, bytes]:
    return ca_data(_good().cert_pem, _pem(ed25519.Ed25519PrivateKey.generate()))


def _swapped() -> dict[str, bytes]:
    ca = _good()
    return ca_data(ca.key_pem, ca.cert_pem)


def _non_utf8() -> dict[str, bytes]:
    return ca_data(bytes(range(128, 256)) * 8, _good().key_pem)


def _huge() -> dict[str, bytes]:
    ca = _good()
    return ca_data(b"-----BEGIN CERTIFICATE-----\n" + b"A" * HUGE, ca.key_pem)


def _sa_mismatch() -> dict[str, bytes]:
    public, _ = certs.new_service_account_key("ecdsa-p256")
    _, private = certs.new_service_account_key("ecdsa-p256")
    return {"tls.crt": public, "tls.key": private}


def _kubeconfig(document: bytes | None) -> Callable[[], dict[str, bytes]]:
    def data() -> dict[str, bytes]:
        return {} if document is None else {"value": document}

    return data


def _kubeconfig_without_users() -> bytes:
    ca_data = base64.b64encode(_good().cert_pem).decode()
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "w",
                    "cluster": {
                        "server": "https://127.0.0.1:6443",
                        "certificate-authority-data": ca_data,
                    },
                }
            ],
            "contexts": [{"name": "w", "context": {"cluster": "w", "user": "admin"}}],
            "current-context": "w",
        }
    ).encode()


def _kubeconfig_nowhere() -> bytes:
    ca = _good()
    client = certs.issue_certificate(
        ca,
        common_name="kubernetes-admin",
        organizations=("system:masters",),
        algorithm="ecdsa-p256",
    )
    return certs.build_kubeconfig(
        cluster_name="w",
        server="https://nowhere.invalid:6443",
        ca_pem=ca.cert_pem,
        client_cert_pem=client.cert_pem,
        client_key_pem=client.key_pem,
    )


def spec_set(path: str, value: Any) -> SpecEdit:
    """Set `spec.<path>` (dotted) to `value`; None deletes it."""

    def edit(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value

    return edit


AfterMachine = Callable[[Any, str, str], None]


def corrupt_ca(kube: Any, namespace: str, cluster: str) -> None:
    """Once Machines exist: overwrite the cluster CA with garbage."""
    kube.merge_patch(
        groups.SECRET,
        namespace,
        f"{cluster}-ca",
        {"data": {"tls.crt": base64.b64encode(b"garbage, not a certificate").decode()}},
    )


def delete_ca(kube: Any, namespace: str, cluster: str) -> None:
    """Once Machines exist: delete the cluster CA Secret."""
    kube.delete(groups.SECRET, namespace, f"{cluster}-ca")


@dataclass(frozen=True)
class BadInput:
    name: str
    what: str
    where: str
    """Must appear in the condition and the Event: `{cluster}`/`{kcp}` are filled in."""
    condition: str
    needle: str
    """Names the problem (case-insensitive)."""
    secrets: Secrets | None = None
    spec: SpecEdit | None = None
    infrastructure: bool = False
    template: Callable[[str, str], dict[str, Any]] | None = None
    with_template: bool = True
    kcp: str | None = None
    after_machine: AfterMachine | None = None
    statuses: tuple[str, ...] = (c.FALSE, c.UNKNOWN)
    xfail: str = ""
    """A known product bug this input exposes (the test is a strict xfail naming it)."""
    notes: dict[str, Any] = field(default_factory=dict, compare=False)

    def where_text(self, cluster: str, kcp: str) -> str:
        return self.where.format(cluster=cluster, kcp=kcp)


CORPUS: list[BadInput] = [
    # -- the cluster CA and its siblings, provided by the user before the cluster exists ------
    BadInput(
        "ca-garbage-cert",
        "tls.crt is not PEM",
        "{cluster}-ca",
        CERTS,
        "not PEM",
        secret("ca", lambda: ca_data(b"hello, world", _good().key_pem)),
    ),
    BadInput(
        "ca-garbage-key",
        "tls.key is not PEM",
        "{cluster}-ca",
        CERTS,
        "tls.key",
        secret("ca", lambda: ca_data(_good().cert_pem, b"definitely not a key")),
    ),
    BadInput(
        "ca-pem-garbage-body",
        "a CERTIFICATE block with a garbage body",
        "{cluster}-ca",
        CERTS,
        "cannot be parsed",
        secret(
            "ca",
            lambda: ca_data(
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                _good().key_pem,
            ),
        ),
    ),
    BadInput(
        "ca-truncated",
        "a certificate cut in half",
        "{cluster}-ca",
        CERTS,
        "tls.crt",
        secret("ca", _truncated),
    ),
    BadInput(
        "ca-key-mismatch",
        "a key that does not belong to the certificate",
        "{cluster}-ca",
        CERTS,
        "does not belong",
        secret("ca", _mismatched),
    ),
    BadInput(
        "ca-expired",
        "an expired CA",
        "{cluster}-ca",
        CERTS,
        "expired",
        secret("ca", lambda: certs.key_pair_to_secret_data(_expired())),
    ),
    BadInput(
        "ca-not-yet-valid",
        "a CA valid only from three days from now",
        "{cluster}-ca",
        CERTS,
        "not valid before",
        secret("ca", lambda: certs.key_pair_to_secret_data(_not_yet_valid())),
    ),
    BadInput(
        "ca-not-a-ca",
        "a leaf certificate where the CA belongs",
        "{cluster}-ca",
        CERTS,
        "not a CA",
        secret("ca", lambda: certs.key_pair_to_secret_data(_leaf())),
    ),
    BadInput(
        "ca-missing-key",
        "no tls.key",
        "{cluster}-ca",
        CERTS,
        "tls.key is missing",
        secret("ca", lambda: ca_data(_good().cert_pem, None)),
    ),
    BadInput(
        "ca-empty-cert",
        "an empty tls.crt",
        "{cluster}-ca",
        CERTS,
        "tls.crt is empty",
        secret("ca", lambda: ca_data(b"", _good().key_pem)),
    ),
    BadInput(
        "ca-non-utf8",
        "binary, non-UTF-8 bytes in tls.crt",
        "{cluster}-ca",
        CERTS,
        "not PEM",
        secret("ca", _non_utf8),
    ),
    BadInput(
        "ca-huge",
        "a 1000 KiB tls.crt (near the 1 MiB Secret limit)",
        "{cluster}-ca",
        CERTS,
        "tls.crt",
        secret("ca", _huge),
    ),
    BadInput(
        "ca-der",
        "a DER certificate instead of PEM",
        "{cluster}-ca",
        CERTS,
        "not PEM",
        secret("ca", _der),
    ),
    BadInput(
        "ca-encrypted-key",
        "a passphrase-encrypted private key",
        "{cluster}-ca",
        CERTS,
        "encrypted",
        secret("ca", _encrypted),
    ),
    BadInput(
        "ca-ed25519-key",
        "an Ed25519 private key",
        "{cluster}-ca",
        CERTS,
        "Ed25519",
        secret("ca", _ed25519),
    ),
    BadInput(
        "ca-swapped",
        "certificate and key swapped",
        "{cluster}-ca",
        CERTS,
        "swapped",
        secret("ca", _swapped),
    ),
    BadInput(
        "ca-opaque-garbage",
        "a garbage CA in a Secret of type Opaque",
        "{cluster}-ca",
        CERTS,
        "not PEM",
        secret("ca", lambda: ca_data(b"xyz", b"xyz"), kind="Opaque"),
    ),
    BadInput(
        "etcd-key-mismatch",
        "etcd CA with a key that is not its own",
        "{cluster}-etcd",
        CERTS,
        "does not belong",
        secret("etcd", _mismatched),
    ),
    BadInput(
        "etcd-expired",
        "an expired etcd CA",
        "{cluster}-etcd",
        CERTS,
        "expired",
        secret("etcd", lambda: certs.key_pair_to_secret_data(_expired())),
    ),
    BadInput(
        "proxy-not-a-ca",
        "a leaf certificate as front-proxy CA",
        "{cluster}-proxy",
        CERTS,
        "not a CA",
        secret("proxy", lambda: certs.key_pair_to_secret_data(_leaf())),
    ),
    BadInput(
        "proxy-garbage",
        "garbage front-proxy CA",
        "{cluster}-proxy",
        CERTS,
        "not PEM",
        secret("proxy", lambda: ca_data(b"\x00\x01\x02", b"\x00")),
    ),
    BadInput(
        "sa-garbage-key",
        "a service-account key that is not PEM",
        "{cluster}-sa",
        CERTS,
        "not PEM",
        secret("sa", lambda: {"tls.key": b"zzz"}),
    ),
    BadInput(
        "sa-public-mismatch",
        "a service-account public key of another key",
        "{cluster}-sa",
        CERTS,
        "does not belong",
        secret("sa", _sa_mismatch),
    ),
    BadInput(
        "sa-missing-key",
        "a service-account Secret without tls.key",
        "{cluster}-sa",
        CERTS,
        "tls.key is missing",
        secret("sa", lambda: {"tls.crt": certs.new_service_account_key("ecdsa-p256")[0]}),
    ),
    # -- the spec ---------------------------------------------------------------------------
    BadInput(
        "replicas-100000",
        "replicas: 100000",
        "spec.replicas",
        SCALING,
        "at most 7",
        spec=spec_set("replicas", 100000),
    ),
    BadInput(
        "replicas-even",
        "replicas: 2 (even: refused by kcp's policy)",
        "spec.replicas",
        SCALING,
        "even",
        spec=spec_set("replicas", 2),
    ),
    BadInput(
        "replicas-zero",
        "replicas: 0",
        "spec.replicas",
        SCALING,
        "at least 1",
        spec=spec_set("replicas", 0),
    ),
    BadInput(
        "max-surge-2",
        "maxSurge: 2",
        "maxSurge",
        SCALING,
        "0 or 1",
        spec=spec_set(
            "rollout", {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}
        ),
    ),
    BadInput(
        "max-surge-0-single",
        "maxSurge: 0 with one replica",
        "maxSurge",
        SCALING,
        "at least 3",
        spec=spec_set(
            "rollout", {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}}
        ),
    ),
    BadInput(
        "max-surge-percent",
        "maxSurge: '150%'",
        "maxSurge",
        SCALING,
        "150%",
        spec=spec_set(
            "rollout",
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "150%"}}},
        ),
    ),
    BadInput(
        "version-not-semver",
        "version: latest (Cluster API's webhook refuses it; kcp has none)",
        "spec.version",
        SCALING,
        "not a Kubernetes version",
        spec=spec_set("version", "latest"),
    ),
    # -- the machine template (the infrastructure is provisioned: kcp tries to clone it) -----
    BadInput(
        "template-missing",
        "infrastructureRef names a template that does not exist",
        "spec.machineTemplate.spec.infrastructureRef",
        SCALING,
        "does not exist",
        infrastructure=True,
        statuses=BLOCKED,
        with_template=False,
    ),
    BadInput(
        "template-wrong-kind",
        "infrastructureRef names a LocalCluster, not a template",
        "spec.machineTemplate.spec.infrastructureRef",
        SCALING,
        "Template",
        spec=spec_set(
            "machineTemplate.spec.infrastructureRef",
            {
                "apiGroup": groups.INFRASTRUCTURE_GROUP,
                "kind": groups.LOCAL_CLUSTER.kind,
                "name": "template-wrong-kind",
            },
        ),
        infrastructure=True,
        statuses=BLOCKED,
    ),
    BadInput(
        "template-unknown-kind",
        "infrastructureRef names a kind nobody serves",
        "spec.machineTemplate.spec.infrastructureRef",
        SCALING,
        "NoSuchMachineTemplate",
        spec=spec_set(
            "machineTemplate.spec.infrastructureRef",
            {
                "apiGroup": groups.INFRASTRUCTURE_GROUP,
                "kind": "NoSuchMachineTemplate",
                "name": "x",
            },
        ),
        infrastructure=True,
        statuses=BLOCKED,
    ),
    BadInput(
        "template-wrong-group",
        "infrastructureRef names an API group that does not exist",
        "spec.machineTemplate.spec.infrastructureRef",
        SCALING,
        "example.invalid",
        spec=spec_set(
            "machineTemplate.spec.infrastructureRef",
            {
                "apiGroup": "example.invalid",
                "kind": groups.LOCAL_MACHINE_TEMPLATE.kind,
                "name": "template-wrong-group-control-plane",
            },
        ),
        infrastructure=True,
        statuses=BLOCKED,
    ),
    # -- kubeconfigs the user wrote (kcp never replaces those) --------------------------------
    BadInput(
        "kubeconfig-no-users",
        "a kubeconfig without users",
        "{cluster}-kubeconfig",
        COMPONENTS,
        "user",
        secret("kubeconfig", _kubeconfig(_kubeconfig_without_users())),
        infrastructure=True,
    ),
    BadInput(
        "kubeconfig-nowhere",
        "a kubeconfig pointing at a host that does not resolve",
        "nowhere.invalid",
        COMPONENTS,
        "nowhere.invalid",
        secret("kubeconfig", _kubeconfig(_kubeconfig_nowhere())),
        infrastructure=True,
    ),
    BadInput(
        "kubeconfig-not-yaml",
        "a kubeconfig that is not YAML",
        "{cluster}-kubeconfig",
        COMPONENTS,
        "kubeconfig",
        secret("kubeconfig", _kubeconfig(b"{{{ this: is [not yaml")),
        infrastructure=True,
    ),
    BadInput(
        "kubeconfig-non-utf8",
        "a kubeconfig of random bytes",
        "{cluster}-kubeconfig",
        COMPONENTS,
        "kubeconfig",
        secret("kubeconfig", _kubeconfig(os.urandom(64) + b"\xff\xfe")),
        infrastructure=True,
    ),
    BadInput(
        "kubeconfig-no-value",
        "a kubeconfig Secret without its value key",
        "{cluster}-kubeconfig",
        COMPONENTS,
        "value",
        secret("kubeconfig", _kubeconfig(None)),
        infrastructure=True,
    ),
    # -- the CA breaks after Machines exist: never regenerated ----------------------------------
    BadInput(
        "ca-corrupted-later",
        "the cluster CA overwritten with garbage once Machines exist",
        "{cluster}-ca",
        CERTS,
        "not PEM",
        infrastructure=True,
        after_machine=corrupt_ca,
    ),
    BadInput(
        "ca-deleted-later",
        "the cluster CA deleted once Machines exist",
        "{cluster}-ca",
        CERTS,
        "not found",
        infrastructure=True,
        after_machine=delete_ca,
    ),
    # -- names at the length limit -----------------------------------------------------------
    BadInput(
        "long-kcp-name",
        "a 253-character KubeadmControlPlane name with an even replica count",
        "spec.replicas",
        SCALING,
        "even",
        spec=spec_set("replicas", 4),
        kcp="k" * 239 + "-control-plane",
    ),
]


@dataclass(frozen=True)
class Rejected:
    """An input the API server refuses at admission; `needle` is in its message."""

    name: str
    what: str
    needle: str
    build: Callable[[str], tuple[Any, dict[str, Any]]]


def _kcp_with(name: str, edit: SpecEdit) -> Callable[[str], tuple[Any, dict[str, Any]]]:
    def build(namespace: str) -> tuple[Any, dict[str, Any]]:
        spec: dict[str, Any] = {
            "replicas": 1,
            "version": "v1.34.4",
            "machineTemplate": {
                "spec": {
                    "infrastructureRef": {
                        "apiGroup": groups.INFRASTRUCTURE_GROUP,
                        "kind": groups.LOCAL_MACHINE_TEMPLATE.kind,
                        "name": name,
                    }
                }
            },
        }
        edit(spec)
        return groups.KUBEADM_CONTROL_PLANE, {
            "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
            "kind": "KubeadmControlPlane",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }

    return build


def _secret_with(name: str, data: dict[str, str]) -> Callable[[str], tuple[Any, dict[str, Any]]]:
    def build(namespace: str) -> tuple[Any, dict[str, Any]]:
        return groups.SECRET, {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }

    return build


def _template_without_spec(name: str) -> Callable[[str], tuple[Any, dict[str, Any]]]:
    def build(namespace: str) -> tuple[Any, dict[str, Any]]:
        return groups.LOCAL_MACHINE_TEMPLATE, {
            "apiVersion": groups.LOCAL_MACHINE_TEMPLATE.api_version,
            "kind": "LocalMachineTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {}},
        }

    return build


REJECTED: list[Rejected] = [
    Rejected(
        "template-empty",
        "a machine template whose spec.template is empty",
        "spec.template.spec",
        _template_without_spec("empty-template"),
    ),
    Rejected(
        "replicas-negative", "replicas: -1", "replicas", _kcp_with("r1", spec_set("replicas", -1))
    ),
    Rejected("version-empty", "version: ''", "version", _kcp_with("r2", spec_set("version", ""))),
    Rejected(
        "infra-ref-no-name",
        "infrastructureRef without a name",
        "name",
        _kcp_with("r3", spec_set("machineTemplate.spec.infrastructureRef.name", None)),
    ),
    Rejected(
        "kubeadm-v1beta1-extra-args",
        "kubeletExtraArgs written as v1beta1's map instead of v1beta2's list of name/value",
        "spec.kubeadmConfigSpec.joinConfiguration.nodeRegistration.kubeletExtraArgs",
        _kcp_with(
            "r4",
            spec_set(
                "kubeadmConfigSpec.joinConfiguration.nodeRegistration.kubeletExtraArgs",
                {"eviction-hard": "nodefs.available<0%"},
            ),
        ),
    ),
    Rejected(
        "kubeadm-format-unknown",
        "kubeadmConfigSpec.format: cloudinit (not cloud-config or ignition)",
        "spec.kubeadmConfigSpec.format",
        _kcp_with("r5", spec_set("kubeadmConfigSpec.format", "cloudinit")),
    ),
    Rejected(
        "name-too-long",
        "a 254-character KubeadmControlPlane name",
        "name",
        _kcp_with("k" * 254, lambda spec: None),
    ),
    Rejected(
        "secret-over-1mib",
        "a Secret with 1.1 MiB of data",
        "1048576",
        _secret_with("too-big-ca", {"tls.crt": base64.b64encode(b"A" * (1100 * 1024)).decode()}),
    ),
    Rejected(
        "secret-bad-base64",
        "Secret data that is not base64",
        "base64",
        _secret_with("bad-b64-ca", {"tls.crt": "%%% not base64 %%%"}),
    ),
]
