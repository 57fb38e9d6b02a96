"""Kubeconfig documents with embedded credentials, as Cluster API writes them.

The builder produces one cluster, one user ``<cluster>-admin`` and one context
``<user>@<cluster>`` that is current, with certificate and key data embedded as
base64. The parser follows the current context and refuses anything a
controller cannot use without touching the filesystem (file references, exec
plugins). No message quotes the document, since it holds a private key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from kcp.certs.errors import KubeconfigError
from kcp.certs.pem import pem_labels

__all__ = ["Kubeconfig", "build_kubeconfig", "parse_kubeconfig"]

# libyaml's loader and dumper when PyYAML was built with it: several times faster.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_PRIVATE_KEY_LABELS = {"RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _require_pem(data: bytes, labels: set[str], what: str, fix: str) -> None:
    if not set(pem_labels(data)) & labels:
        raise KubeconfigError(f"{what} is not PEM {'/'.join(sorted(labels))}; {fix}")


def build_kubeconfig(
    *,
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    user_name: str | None = None,
) -> bytes:
    """A kubeconfig (YAML bytes) for ``server`` authenticating with a client certificate.

    ``user_name`` defaults to ``<cluster_name>-admin``; the context is ``<user>@<cluster>``.
    """
    if not cluster_name:
        raise KubeconfigError("kubeconfig needs a cluster name")
    if not server:
        raise KubeconfigError(f"kubeconfig for cluster {cluster_name} needs a server URL")
    _require_pem(ca_pem, {"CERTIFICATE"}, "kubeconfig CA data", "pass the CA certificate PEM")
    _require_pem(client_cert_pem, {"CERTIFICATE"}, "kubeconfig client certificate", "pass its PEM")
    _require_pem(
        client_key_pem, _PRIVATE_KEY_LABELS, "kubeconfig client key", "pass the PEM private key"
    )
    user = user_name or f"{cluster_name}-admin"
    context = f"{user}@{cluster_name}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
    }
    out: str = yaml.dump(document, Dumper=_Dumper, default_flow_style=False, sort_keys=True)
    return out.encode("utf-8")


@dataclass(frozen=True)
class Kubeconfig:
    """What a controller needs from a kubeconfig: where to connect and how to authenticate.

    Either ``client_cert_pem`` and ``client_key_pem`` are both set, or ``token`` is.
    The repr hides the key and token.
    """

    server: str
    ca_pem: bytes = field(repr=False)
    client_cert_pem: bytes | None = field(repr=False)
    client_key_pem: bytes | None = field(repr=False)
    token: str | None = field(repr=False)
    cluster_name: str
    user_name: str = ""
    context_name: str = ""

    @property
    def uses_client_certificate(self) -> bool:
        """Whether authentication is by client certificate (else by bearer token)."""
        return self.client_cert_pem is not None


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise KubeconfigError(f"kubeconfig {what} is not a mapping; fix the document's structure")
    return value


def _named(doc: Mapping[str, Any], section: str, inner: str, name: str) -> Mapping[str, Any]:
    """The ``inner`` mapping of the entry called ``name`` in list ``section``."""
    entries = doc.get(section)
    if not entries:
        raise KubeconfigError(
            f"kubeconfig has no {section}; add a {section[:-1]} entry named {name!r}"
        )
    if not isinstance(entries, list):
        raise KubeconfigError(f"kubeconfig {section} is not a list; fix the document's structure")
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return _mapping(entry.get(inner), f"{section[:-1]} {name!r}")
    raise KubeconfigError(
        f"kubeconfig has no {section[:-1]} named {name!r} (referenced by the current context); "
        f"add it or point the context at an existing {section[:-1]}"
    )


def _data(entry: Mapping[str, Any], key: str, what: str) -> bytes | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"kubeconfig {what} {key} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(
            f"kubeconfig {what} {key} is not valid base64; embed the base64 of the PEM data"
        ) from None


def _no_file(entry: Mapping[str, Any], key: str, what: str, data_key: str) -> None:
    if entry.get(key):
        raise KubeconfigError(
            f"kubeconfig {what} refers to a file ({key}); embed the content as {data_key} instead"
        )


def parse_kubeconfig(data: bytes) -> Kubeconfig:
    """Parse ``data`` and resolve its current context; ``KubeconfigError`` says what is missing."""
    if not data or not data.strip():
        raise KubeconfigError("kubeconfig is empty; provide a kubeconfig document")
    try:
        doc = yaml.load(data, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise KubeconfigError(
            f"kubeconfig is not valid YAML{where}; provide a kubeconfig document"
        ) from None
    if not isinstance(doc, Mapping):
        raise KubeconfigError("kubeconfig is not a YAML mapping; provide a kubeconfig document")

    context_name = doc.get("current-context")
    if not context_name or not isinstance(context_name, str):
        raise KubeconfigError("kubeconfig has no current-context; set it to the context to use")
    context = _named(doc, "contexts", "context", context_name)
    cluster_name = context.get("cluster")
    user_name = context.get("user")
    if not cluster_name or not isinstance(cluster_name, str):
        raise KubeconfigError(f"kubeconfig context {context_name!r} names no cluster; set it")
    if not user_name or not isinstance(user_name, str):
        raise KubeconfigError(f"kubeconfig context {context_name!r} names no user; set it")

    cluster = _named(doc, "clusters", "cluster", cluster_name)
    server = cluster.get("server")
    if not server or not isinstance(server, str):
        raise KubeconfigError(
            f"kubeconfig cluster {cluster_name!r} has no server; set it to the API server URL"
        )
    what = f"cluster {cluster_name!r}"
    _no_file(cluster, "certificate-authority", what, "certificate-authority-data")
    ca_pem = _data(cluster, "certificate-authority-data", what)
    if ca_pem is None:
        raise KubeconfigError(
            f"kubeconfig cluster {cluster_name!r} has no certificate-authority-data; "
            "embed the cluster CA certificate so the server can be verified"
        )
    _require_pem(
        ca_pem,
        {"CERTIFICATE"},
        f"kubeconfig {what} certificate-authority-data",
        "embed the base64 of the CA certificate PEM",
    )

    user = _named(doc, "users", "user", user_name)
    what = f"user {user_name!r}"
    for file_key, data_key in (
        ("client-certificate", "client-certificate-data"),
        ("client-key", "client-key-data"),
        ("tokenFile", "token"),
    ):
        _no_file(user, file_key, what, data_key)
    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            raise KubeconfigError(
                f"kubeconfig {what} authenticates with {plugin}, which kcp does not run; "
                "use a client certificate or a token"
            )
    cert_pem = _data(user, "client-certificate-data", what)
    key_pem = _data(user, "client-key-data", what)
    token = user.get("token") or None
    if token is not None and not isinstance(token, str):
        raise KubeconfigError(f"kubeconfig {what} token is not a string")
    if (cert_pem is None) != (key_pem is None):
        missing = "client-key-data" if key_pem is None else "client-certificate-data"
        raise KubeconfigError(
            f"kubeconfig {what} has a client certificate or key but no {missing}; embed both"
        )
    if cert_pem is None and token is None:
        raise KubeconfigError(
            f"kubeconfig {what} has no credentials; embed client-certificate-data and "
            "client-key-data, or a token"
        )
    if cert_pem is not None and key_pem is not None:
        _require_pem(
            cert_pem,
            {"CERTIFICATE"},
            f"kubeconfig {what} client-certificate-data",
            "embed the base64 of the client certificate PEM",
        )
        _require_pem(
            key_pem,
            _PRIVATE_KEY_LABELS,
            f"kubeconfig {what} client-key-data",
            "embed the base64 of the client private key PEM",
        )
    return Kubeconfig(
        server=server,
        ca_pem=ca_pem,
        client_cert_pem=cert_pem,
        client_key_pem=key_pem,
        token=token,
        cluster_name=cluster_name,
        user_name=user_name,
        context_name=context_name,
    )
