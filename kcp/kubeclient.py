"""``kubernetes`` ApiClients from a kubeconfig file or in-cluster, private keys in memory.

The client's own loaders (``load_kube_config``, ``new_client_from_config``) write an
embedded ``client-key-data``, and a client key an exec plugin returns, to a
temporary file, because urllib3 takes key material only as file paths. Here the
kubeconfig is still resolved by the client's loader, as kubectl resolves it
(``$KUBECONFIG``'s files merged, else ``~/.kube/config``; the current or the given
context; token, token file, exec plugin, auth provider, basic auth, proxy,
``tls-server-name``, ``insecure-skip-tls-verify``), but the chosen cluster's CA and
the user's client certificate and key, embedded or named by file, are taken out of
the document first. They go into an ``ssl.SSLContext`` built in memory by
``kcp.certs``, which the client's urllib3 pool uses for every connection.

In-cluster, the service account's token and CA are files the kubelet mounted; no
key is involved.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.config import incluster_config, kube_config
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.dateutil import parse_rfc3339
from kubernetes.config.exec_provider import ExecProvider

from kcp.certs import client_tls_context, load_cert_chain_from_memory
from kcp.runtime.logging import get_logger

__all__ = ["DEFAULT_KUBECONFIG", "in_cluster_api_client", "kubeconfig_api_client"]

_log = get_logger("kcp.kubeclient")

DEFAULT_KUBECONFIG = "~/.kube/config"
"""Where kubectl looks when neither a path nor ``$KUBECONFIG`` is given."""


@dataclass(frozen=True)
class _Tls:
    """The TLS material of one context, never written anywhere."""

    ca_pem: bytes | None
    cert_pem: bytes | None
    key_pem: bytes | None


def kubeconfig_api_client(
    path: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    connections: int | None = None,
) -> Any:
    """An ApiClient for ``context`` (default: the current one) of the kubeconfig at ``path``.

    ``path`` may list several files separated by ``:``, as ``$KUBECONFIG`` does
    (default: ``$KUBECONFIG``, else ``~/.kube/config``). ``connections`` sizes the
    connection pool (default: the client's, five per CPU). Raises the client's
    ``ConfigException`` for a kubeconfig it cannot use, ``OSError`` for a file it
    names that cannot be read, ``ssl.SSLError`` for unusable TLS material.
    """
    paths = os.fspath(path) if path else os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    merged = kube_config.KubeConfigMerger(paths).config  # type: ignore[no-untyped-call]
    if merged is None:
        raise ConfigException(f"Invalid kube-config file. No configuration found in {paths}")
    _name_entries_by_name(merged)
    tls = _take_tls(merged, context)
    # No config_persister: the loader must never write the (now key-less) document back.
    loader = _InMemoryExecLoader(  # type: ignore[no-untyped-call]
        config_dict=merged, active_context=context, config_base_path=None
    )
    configuration = client.Configuration()
    loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    if loader.exec_tls is not None:
        tls = _Tls(tls.ca_pem, *loader.exec_tls)
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    api_client = client.ApiClient(configuration)
    _use_ssl_context(api_client, _ssl_context(tls, verify=bool(configuration.verify_ssl)))
    return api_client


def in_cluster_api_client(*, connections: int | None = None) -> Any:
    """An ApiClient from the Pod's service account (token and CA files, no private key)."""
    configuration = client.Configuration()
    incluster_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def _name_entries_by_name(merged: Any) -> None:
    """Name each merged entry ``<file>/<section>[name=<name>]``: the merger names them by
    their whole content, which the client's error messages quote, key data included."""
    for section in ("clusters", "contexts", "users"):
        entries = merged.value.get(section)
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, kube_config.ConfigNode) and isinstance(entry.value, dict):
                entry.name = f"{entry.path}/{section}[name={entry.value.get('name')}]"


def _take_tls(merged: Any, context: str | None) -> _Tls:
    """Remove the CA, client certificate and key from the context's cluster and user entries
    (so the client's loader finds none to write to a file) and return them."""
    name = context or merged["current-context"]
    chosen = merged["contexts"].get_with_name(name)["context"]
    cluster = merged["clusters"].get_with_name(chosen["cluster"])["cluster"]
    user = None
    if chosen.safe_get("user") and merged.safe_get("users"):
        entry = merged["users"].get_with_name(chosen["user"], safe=True)
        user = entry["user"] if entry is not None else None
    ca_pem = _take(cluster, "certificate-authority", f"cluster {chosen['cluster']!r}")
    what = f"user {chosen.safe_get('user')!r}"
    cert_pem = _take(user, "client-certificate", what) if user is not None else None
    key_pem = _take(user, "client-key", what) if user is not None else None
    if (cert_pem is None) != (key_pem is None):
        missing = "client-key" if key_pem is None else "client-certificate"
        raise ConfigException(
            f"Invalid kube-config file. {what} has a client certificate or key but no "
            f"{missing}(-data); give both"
        )
    return _Tls(ca_pem, cert_pem, key_pem)


def _take(entry: Any, key: str, what: str) -> bytes | None:
    """Pop ``<key>-data`` (base64) and ``<key>`` (a path, relative to its kubeconfig file)
    from ``entry``; the content, data first, as client-go prefers it."""
    data = entry.value.pop(f"{key}-data", None)
    path = entry.value.pop(key, None)
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ConfigException(
                f"Invalid kube-config file. {what} {key}-data is not valid base64"
            ) from None
    if path:
        base = os.path.dirname(os.path.abspath(entry.path)) if entry.path else ""
        return Path(base, os.path.expanduser(path)).read_bytes()
    return None


def _ssl_context(tls: _Tls, *, verify: bool) -> ssl.SSLContext:
    context = client_tls_context(tls.ca_pem if verify else None)
    if not verify:  # insecure-skip-tls-verify: true
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_pem is not None and tls.key_pem is not None:
        load_cert_chain_from_memory(context, tls.cert_pem, tls.key_pem)
    return context


def _use_ssl_context(api_client: Any, context: ssl.SSLContext) -> None:
    """Make every HTTPS connection of ``api_client`` use ``context``.

    The pool manager has opened no pool yet, so its keyword arguments still apply to all.
    """
    pool_kw = api_client.rest_client.pool_manager.connection_pool_kw
    for name in ("ca_certs", "ca_cert_data", "cert_file", "key_file"):
        pool_kw[name] = None
    pool_kw["ssl_context"] = context


class _InMemoryExecLoader(kube_config.KubeConfigLoader):
    """The client's loader, but an exec plugin's client certificate and key stay in memory.

    The client's own ``_load_from_exec_plugin`` writes them to temporary files; this one
    does what it does otherwise (token, expiry, a failing plugin leaves the next
    authentication method to try).
    """

    exec_tls: tuple[bytes, bytes] | None = None

    def _load_from_exec_plugin(self) -> bool | None:
        user: Any = self._user
        cluster: Any = self._cluster
        if "exec" not in user:
            return None
        try:
            base = self._get_base_path(cluster.path)  # type: ignore[no-untyped-call]
            provider = ExecProvider(user["exec"], base, cluster)  # type: ignore[no-untyped-call]
            status = provider.run()  # type: ignore[no-untyped-call]
        except Exception as error:  # as the client's loader does: try the next method
            _log.error("kubeconfig exec plugin failed", error=str(error))
            return None
        if "token" in status:
            self.token = f"Bearer {status['token']}"
        elif "clientCertificateData" in status and "clientKeyData" in status:
            self.exec_tls = (
                str(status["clientCertificateData"]).encode(),
                str(status["clientKeyData"]).encode(),
            )
        else:
            raise ConfigException(
                "kubeconfig exec plugin returned neither a token nor clientCertificateData "
                "and clientKeyData"
            )
        if "expirationTimestamp" in status:
            self.expiry = parse_rfc3339(status["expirationTimestamp"])  # type: ignore[no-untyped-call]
        return True
