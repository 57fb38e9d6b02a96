"""A machine's bootstrap data, read as cloud-init and kubeadm would read it.

The kubeadm bootstrap provider (CABPK) writes, per Machine, a Secret whose
`value` is a cloud-config document: `write_files` with the cluster's CA
certificates and keys under the certificates directory (`/etc/kubernetes/pki`)
and the kubeadm configuration (`/run/kubeadm/kubeadm.yaml` for init,
`/run/kubeadm/kubeadm-join-config.yaml` for join), and a `runcmd` that runs
`kubeadm init` or `kubeadm join` with it. `parse_bootstrap_secret` turns that
into a `BootstrapData` the node agent boots from. Anything a node could not
boot from raises `BootstrapDataError`, whose message says where the problem
is and what to fix; messages never carry key material or the bootstrap token.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kcp import certs
from kcp.api.objects import dig
from kcp.certs import KeyPair
from kcp.sim.pki import SKIP_RSA_VALIDATION, ClusterPKI

__all__ = [
    "DEFAULT_CERTIFICATES_DIR",
    "KUBEADM_API_VERSIONS",
    "BootFile",
    "BootstrapData",
    "BootstrapDataError",
    "KubeadmCommand",
    "TokenDiscovery",
    "ca_cert_hash",
    "parse_bootstrap_secret",
    "parse_user_data",
]

DEFAULT_CERTIFICATES_DIR = "/etc/kubernetes/pki"
KUBEADM_API_VERSIONS = ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4")
"""The kubeadm configuration APIs CABPK writes (v1beta3 before Kubernetes 1.31, v1beta4 after)."""

_JINJA_HEADER = "## template: jinja"
_CLOUD_CONFIG = "#cloud-config"
_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_PIN = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
_KUBEADM = re.compile(r"\bkubeadm\s+(init|join)\b")
_SHELL_END = re.compile(r"&&|\|\||[;|]")
_JINJA_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_HOSTNAME_VARIABLES = (
    "ds.meta_data.local_hostname",
    "ds.meta_data.hostname",
    "v1.local_hostname",
    "local_hostname",
)
_INSTANCE_VARIABLES = ("ds.meta_data.instance_id", "v1.instance_id", "instance_id")


class BootstrapDataError(ValueError):
    """The bootstrap data is missing or a node could not boot from it.

    `reason` is the LocalMachine condition reason: `BootstrapDataMissing` when
    there is nothing to read yet, `BootstrapDataInvalid` when what is there is
    wrong.
    """

    def __init__(self, message: str, *, reason: str = "BootstrapDataInvalid") -> None:
        super().__init__(message)
        self.reason = reason


class KubeadmCommand(StrEnum):
    """What kubeadm does on the node."""

    INIT = "kubeadm init"
    """Start a new cluster: a new etcd cluster, and upload the cluster's configuration."""
    JOIN = "kubeadm join --control-plane"
    """Join the running control plane: add an etcd member through the existing ones."""


@dataclass(frozen=True)
class BootFile:
    """One `write_files` entry after decoding."""

    path: str
    content: bytes = field(repr=False)
    permissions: str = "0644"
    owner: str = "root:root"

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class TokenDiscovery:
    """`JoinConfiguration.discovery.bootstrapToken`: how a joining node finds and trusts it."""

    api_server_endpoint: str
    token: str = field(repr=False)
    ca_cert_hashes: tuple[str, ...] = ()
    unsafe_skip_ca_verification: bool = False

    @property
    def token_id(self) -> str:
        """The public half of the token (`<id>.<secret>`): safe to name in messages."""
        return self.token.partition(".")[0]


@dataclass(frozen=True)
class BootstrapData:
    """What the node boots from: its files, the kubeadm command and configuration, the CAs."""

    where: str
    """Names the source in messages (the Secret, and the Machine that named it)."""
    command: KubeadmCommand
    config_path: str
    """The file the kubeadm command reads its configuration from."""
    files: Mapping[str, BootFile] = field(repr=False)
    cluster_configuration: Mapping[str, Any] | None
    """The ClusterConfiguration document (init only: a joining node reads the cluster's)."""
    init_configuration: Mapping[str, Any] | None
    join_configuration: Mapping[str, Any] | None
    kubelet_configuration: Mapping[str, Any] | None
    """A KubeletConfiguration document beside the kubeadm ones, if any."""
    certificates_dir: str
    authorities: ClusterPKI
    """The cluster CA, etcd CA, front-proxy CA and service-account key from the files."""
    discovery: TokenDiscovery | None
    """How to find the cluster (join only)."""
    node_name: str | None
    """`nodeRegistration.name`, rendered; None means the machine's hostname."""

    @property
    def is_init(self) -> bool:
        return self.command is KubeadmCommand.INIT


def ca_cert_hash(certificate: x509.Certificate) -> str:
    """kubeadm's CA pin: `sha256:` and the hex SHA-256 of the DER SubjectPublicKeyInfo."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def parse_bootstrap_secret(
    secret: Mapping[str, Any] | None, *, where: str, hostname: str, instance_id: str = ""
) -> BootstrapData:
    """Read a bootstrap data Secret as the API returns it (base64 `data`).

    `hostname` (and `instance_id`) are what cloud-init's jinja variables such
    as `{{ ds.meta_data.local_hostname }}` render to on this machine.
    """
    if secret is None:
        raise BootstrapDataError(
            f"{where} does not exist; the bootstrap provider writes it once the Machine's "
            "KubeadmConfig is ready",
            reason="BootstrapDataMissing",
        )
    data = secret.get("data")
    data = data if isinstance(data, Mapping) else {}
    raw_value = data.get("value")
    if not raw_value:
        raise BootstrapDataError(
            f"{where} has no data key `value`; the bootstrap provider puts the cloud-config there",
            reason="BootstrapDataMissing",
        )
    value = _b64(raw_value, f"{where}: data key `value`")
    fmt = "cloud-config"
    if data.get("format"):
        fmt = _b64(data["format"], f"{where}: data key `format`").decode(errors="replace").strip()
    return parse_user_data(value, where=where, hostname=hostname, instance_id=instance_id, fmt=fmt)


def parse_user_data(
    value: bytes | str,
    *,
    where: str,
    hostname: str,
    instance_id: str = "",
    fmt: str = "cloud-config",
) -> BootstrapData:
    """Parse the cloud-config document itself (the Secret's decoded `value`)."""
    if fmt != "cloud-config":
        raise BootstrapDataError(
            f"{where}: format {fmt!r} is not supported by the simulator, which boots machines "
            "from cloud-config only; set the KubeadmConfig's spec.format to cloud-config "
            "(or leave it empty)"
        )
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    document = _cloud_config(text, where, hostname=hostname, instance_id=instance_id)
    files = _write_files(document.get("write_files"), where)
    command, config_path, control_plane_flag = _kubeadm_command(document.get("runcmd"), where)
    config_file = files.get(config_path)
    if config_file is None:
        raise BootstrapDataError(
            f"{where}: runcmd runs `{command.value.split()[1]}` with --config {config_path}, "
            "but write_files has no such file"
        )
    documents = _kubeadm_documents(config_file.text, f"{where}: {config_path}")
    cluster = documents.get("ClusterConfiguration")
    init = documents.get("InitConfiguration")
    join = documents.get("JoinConfiguration")
    if command is KubeadmCommand.INIT:
        if cluster is None and init is None:
            raise BootstrapDataError(
                f"{where}: {config_path} holds no InitConfiguration or ClusterConfiguration "
                "for `kubeadm init`"
            )
        discovery = None
        node_name = _node_name(init)
        certificates_dir = str(dig(cluster, "certificatesDir") or DEFAULT_CERTIFICATES_DIR)
        if dig(cluster, "etcd", "external"):
            raise BootstrapDataError(
                f"{where}: ClusterConfiguration uses external etcd; the simulator runs stacked "
                "etcd only (one member per machine): remove clusterConfiguration.etcd.external"
            )
    else:
        if join is None:
            raise BootstrapDataError(
                f"{where}: {config_path} holds no JoinConfiguration for `kubeadm join`"
            )
        if join.get("controlPlane") is None and not control_plane_flag:
            raise BootstrapDataError(
                f"{where}: the JoinConfiguration has no controlPlane section, so this machine "
                "would join as a worker node; the simulator runs control-plane machines only "
                "(use LocalMachines for KubeadmControlPlane machines)"
            )
        discovery = _token_discovery(join, f"{where}: JoinConfiguration.discovery")
        node_name = _node_name(join)
        ca_path = str(dig(join, "caCertPath") or "")
        certificates_dir = posixpath.dirname(ca_path) if ca_path else DEFAULT_CERTIFICATES_DIR
    authorities = _authorities(
        files, certificates_dir, where, need_front_proxy=command is KubeadmCommand.JOIN
    )
    if discovery is not None and discovery.ca_cert_hashes:
        pin = ca_cert_hash(authorities.ca.certificate)
        if pin not in {h.lower() for h in discovery.ca_cert_hashes}:
            raise BootstrapDataError(
                f"{where}: the cluster CA in {certificates_dir}/ca.crt matches none of "
                "JoinConfiguration.discovery.bootstrapToken.caCertHashes; the CA and the pins "
                "must come from the same <cluster>-ca Secret (remove caCertHashes from the "
                "KubeadmConfig to let the bootstrap provider compute them)"
            )
    return BootstrapData(
        where=where,
        command=command,
        config_path=config_path,
        files=files,
        cluster_configuration=cluster,
        init_configuration=init,
        join_configuration=join,
        kubelet_configuration=documents.get("KubeletConfiguration"),
        certificates_dir=certificates_dir,
        authorities=authorities,
        discovery=discovery,
        node_name=node_name,
    )


# -- cloud-config -----------------------------------------------------------------------


def _cloud_config(text: str, where: str, *, hostname: str, instance_id: str) -> dict[str, Any]:
    lines = text.lstrip("\ufeff").splitlines()
    first = 0
    jinja = bool(lines) and lines[0].strip() == _JINJA_HEADER
    if jinja:
        first = 1
    if len(lines) <= first or lines[first].strip() != _CLOUD_CONFIG:
        raise BootstrapDataError(
            f"{where}: not a cloud-config document (its first line, after an optional "
            f"`{_JINJA_HEADER}`, must be `{_CLOUD_CONFIG}`)"
        )
    body = "\n".join(lines[first + 1 :])
    if jinja:
        body = _render_jinja(body, hostname=hostname, instance_id=instance_id or hostname)
    try:
        document = yaml.safe_load(body)
    except yaml.YAMLError as error:
        raise BootstrapDataError(f"{where}: the cloud-config is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise BootstrapDataError(
            f"{where}: the cloud-config must be a YAML mapping (write_files, runcmd, ...), "
            f"not {type(document).__name__}"
        )
    return document


def _render_jinja(body: str, *, hostname: str, instance_id: str) -> str:
    """Render cloud-init's instance-data variables; unknown ones render as its marker."""
    values = dict.fromkeys(_HOSTNAME_VARIABLES, hostname)
    values.update(dict.fromkeys(_INSTANCE_VARIABLES, instance_id))

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return values.get(name, f"CI_MISSING_JINJA_VAR/{name}")

    return _JINJA_VARIABLE.sub(substitute, body)


def _write_files(entries: object, where: str) -> dict[str, BootFile]:
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise BootstrapDataError(f"{where}: write_files must be a list of files")
    files: dict[str, BootFile] = {}
    for index, entry in enumerate(entries):
        at = f"{where}: write_files[{index}]"
        if not isinstance(entry, dict):
            raise BootstrapDataError(f"{at} must be a mapping with path and content")
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            raise BootstrapDataError(f"{at} has no path")
        path = _node_path(path, at)
        at = f"{where}: write_files {path}"
        content = _decode(entry.get("content"), str(entry.get("encoding") or ""), at)
        if entry.get("append") is True and path in files:
            content = files[path].content + content
        files[path] = BootFile(
            path=path,
            content=content,
            permissions=str(entry.get("permissions") or "0644"),
            owner=str(entry.get("owner") or "root:root"),
        )
    return files


def _node_path(path: str, at: str) -> str:
    """`path` normalised; refuses relative paths and `..` (the node's disk is a directory here)."""
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise BootstrapDataError(f"{at}: path {path!r} must be absolute and must not contain `..`")
    return posixpath.normpath(path)


def _decode(content: object, encoding: str, at: str) -> bytes:
    if content is None:
        return b""
    raw = content if isinstance(content, bytes) else str(content).encode()
    kind = encoding.strip().lower()
    try:
        if kind in ("", "text/plain"):
            return raw
        if kind in ("b64", "base64"):
            return _b64_lines(raw)
        if kind in ("gz", "gzip"):
            return gzip.decompress(raw)
        if kind in ("gz+b64", "gz+base64", "gzip+b64", "gzip+base64"):
            return gzip.decompress(_b64_lines(raw))
    except (binascii.Error, ValueError, OSError, EOFError):
        raise BootstrapDataError(f"{at}: content is not valid {kind} data") from None
    raise BootstrapDataError(
        f"{at}: unknown encoding {encoding!r}; use b64, gzip or gzip+b64 (or none for text)"
    )


def _kubeadm_command(runcmd: object, where: str) -> tuple[KubeadmCommand, str, bool]:
    """The kubeadm command in `runcmd`, its `--config` file, and whether it has --control-plane."""
    if not isinstance(runcmd, list) or not runcmd:
        raise BootstrapDataError(
            f"{where}: the cloud-config has no runcmd, so no `kubeadm init` or `kubeadm join` "
            "would run"
        )
    found: list[tuple[str, list[str]]] = []
    for entry in runcmd:
        if isinstance(entry, list):
            line = " ".join(shlex.quote(str(part)) for part in entry)
        elif isinstance(entry, str):
            line = entry
        else:
            continue
        match = _KUBEADM.search(line)
        if match is None:
            continue
        segment = _SHELL_END.split(line[match.start() :], maxsplit=1)[0]
        try:
            words = shlex.split(segment)
        except ValueError:
            raise BootstrapDataError(
                f"{where}: runcmd entry running kubeadm {match.group(1)} has unbalanced quotes"
            ) from None
        found.append((match.group(1), words))
    verbs = {verb for verb, _ in found}
    if not verbs:
        raise BootstrapDataError(
            f"{where}: runcmd runs neither `kubeadm init` nor `kubeadm join`; the bootstrap "
            "provider's data always runs one of them"
        )
    if len(verbs) > 1:
        raise BootstrapDataError(
            f"{where}: runcmd runs both `kubeadm init` and `kubeadm join`; a node does one"
        )
    verb, words = found[0]
    config_path = _flag(words, "--config")
    if not config_path:
        raise BootstrapDataError(
            f"{where}: `kubeadm {verb}` in runcmd has no --config; the simulator reads the "
            "node's kubeadm configuration from the file --config names"
        )
    command = KubeadmCommand.INIT if verb == "init" else KubeadmCommand.JOIN
    return (
        command,
        _node_path(config_path, f"{where}: kubeadm --config"),
        "--control-plane" in words,
    )


def _flag(words: Sequence[str], name: str) -> str | None:
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    return None


# -- kubeadm configuration ----------------------------------------------------------------


def _kubeadm_documents(text: str, at: str) -> dict[str, dict[str, Any]]:
    """The kubeadm (and kubelet) documents of a multi-document YAML file, by kind."""
    try:
        loaded = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise BootstrapDataError(f"{at} is not valid YAML: {error}") from None
    documents: dict[str, dict[str, Any]] = {}
    for document in loaded:
        if not isinstance(document, dict):
            raise BootstrapDataError(f"{at}: every YAML document must be a mapping")
        kind = str(document.get("kind") or "")
        api_version = str(document.get("apiVersion") or "")
        if kind in ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration"):
            if api_version not in KUBEADM_API_VERSIONS:
                raise BootstrapDataError(
                    f"{at}: {kind} has apiVersion {api_version or '(none)'}; kubeadm reads "
                    f"{' or '.join(KUBEADM_API_VERSIONS)}"
                )
        elif kind != "KubeletConfiguration":
            continue  # kubeadm ignores what it does not know (KubeProxyConfiguration, ...)
        if kind in documents:
            raise BootstrapDataError(f"{at} holds two {kind} documents")
        documents[kind] = document
    if not documents:
        raise BootstrapDataError(f"{at} holds no kubeadm configuration document")
    return documents


def _node_name(config: Mapping[str, Any] | None) -> str | None:
    name = dig(config, "nodeRegistration", "name")
    return str(name) if name else None


def _token_discovery(join: Mapping[str, Any], at: str) -> TokenDiscovery:
    discovery = join.get("discovery")
    discovery = discovery if isinstance(discovery, Mapping) else {}
    if discovery.get("file"):
        raise BootstrapDataError(
            f"{at}.file: file discovery is not supported by the simulator; use bootstrap-token "
            "discovery (leave joinConfiguration.discovery empty and the bootstrap provider "
            "fills it in)"
        )
    token_discovery = discovery.get("bootstrapToken")
    if not isinstance(token_discovery, Mapping):
        raise BootstrapDataError(
            f"{at} has no bootstrapToken; the bootstrap provider fills it in (token, "
            "apiServerEndpoint, caCertHashes) for a joining machine"
        )
    token = str(token_discovery.get("token") or "")
    if not _TOKEN.match(token):
        raise BootstrapDataError(
            f"{at}.bootstrapToken.token is not a bootstrap token of the form "
            "[a-z0-9]{6}.[a-z0-9]{16}"
        )
    endpoint = str(token_discovery.get("apiServerEndpoint") or "")
    if not endpoint:
        raise BootstrapDataError(
            f"{at}.bootstrapToken.apiServerEndpoint is empty; it must be the cluster's "
            "control-plane endpoint (host:port)"
        )
    raw_hashes = token_discovery.get("caCertHashes") or []
    hashes = tuple(str(h) for h in raw_hashes) if isinstance(raw_hashes, list) else ()
    bad = [h for h in hashes if not _PIN.match(h)]
    if bad or not isinstance(raw_hashes, list):
        raise BootstrapDataError(
            f"{at}.bootstrapToken.caCertHashes must be a list of sha256:<64 hex digits> pins"
        )
    skip = token_discovery.get("unsafeSkipCAVerification") is True
    if not hashes and not skip:
        raise BootstrapDataError(
            f"{at}.bootstrapToken has neither caCertHashes nor unsafeSkipCAVerification; "
            "kubeadm refuses to trust an unpinned cluster CA"
        )
    return TokenDiscovery(endpoint, token, hashes, skip)


# -- certificate authorities ---------------------------------------------------------------


@dataclass(frozen=True)
class _Authority:
    stem: str
    """The files' path under the certificates directory, without `.crt`/`.key`."""
    what: str
    secret: str
    """The Secret CABPK copies it from."""


_CLUSTER_CA = _Authority("ca", "cluster CA", "<cluster>-ca")
_ETCD_CA = _Authority("etcd/ca", "etcd CA", "<cluster>-etcd")
_FRONT_PROXY_CA = _Authority("front-proxy-ca", "front-proxy CA", "<cluster>-proxy")


def _authorities(
    files: Mapping[str, BootFile], directory: str, where: str, *, need_front_proxy: bool
) -> ClusterPKI:
    """The CAs kubeadm would use: all of them on join; on init the front-proxy CA may be
    missing (kubeadm would make one), the others may not (kcp could not reach the cluster)."""
    ca = _ca_pair(files, directory, _CLUSTER_CA, where)
    etcd_ca = _ca_pair(files, directory, _ETCD_CA, where)
    front_proxy = _ca_pair(files, directory, _FRONT_PROXY_CA, where, required=need_front_proxy)
    assert ca is not None and etcd_ca is not None
    public_pem, private_pem = _service_account(files, directory, where)
    return ClusterPKI(
        ca=ca,
        etcd_ca=etcd_ca,
        sa_public_pem=public_pem,
        sa_private_pem=private_pem,
        front_proxy_ca=front_proxy,
    )


def _missing(path: str, what: str, secret: str, where: str) -> BootstrapDataError:
    return BootstrapDataError(
        f"{where}: write_files has no {path} ({what}); the bootstrap provider copies it from "
        f"the {secret} Secret, which must exist and hold tls.crt and tls.key before the "
        "Machine's KubeadmConfig is reconciled"
    )


def _ca_pair(
    files: Mapping[str, BootFile],
    directory: str,
    authority: _Authority,
    where: str,
    *,
    required: bool = True,
) -> KeyPair | None:
    cert_path = posixpath.join(directory, f"{authority.stem}.crt")
    key_path = posixpath.join(directory, f"{authority.stem}.key")
    cert_file, key_file = files.get(cert_path), files.get(key_path)
    if cert_file is None and key_file is None and not required:
        return None
    for path, present in ((cert_path, cert_file), (key_path, key_file)):
        if present is None or not present.content.strip():
            raise _missing(path, authority.what, authority.secret, where)
    assert cert_file is not None and key_file is not None
    try:
        return certs.load_key_pair(
            cert_file.content,
            key_file.content,
            require_ca=True,
            what=f"{authority.what} ({cert_path} and {key_path})",
            skip_rsa_validation=SKIP_RSA_VALIDATION,
        )
    except certs.CertificateError as error:
        raise BootstrapDataError(f"{where}: {error}") from None


def _service_account(
    files: Mapping[str, BootFile], directory: str, where: str
) -> tuple[bytes, bytes]:
    public_path = posixpath.join(directory, "sa.pub")
    private_path = posixpath.join(directory, "sa.key")
    what = "service-account signing key"
    public_file, private_file = files.get(public_path), files.get(private_path)
    for path, present in ((public_path, public_file), (private_path, private_file)):
        if present is None or not present.content.strip():
            raise _missing(path, what, "<cluster>-sa", where)
    assert public_file is not None and private_file is not None
    try:
        key = certs.decode_private_key(
            private_file.content,
            what=f"{what} {private_path}",
            skip_rsa_validation=SKIP_RSA_VALIDATION,
        )
        public = certs.decode_public_key(public_file.content, what=f"{what} {public_path}")
    except certs.CertificateError as error:
        raise BootstrapDataError(f"{where}: {error}") from None
    if not certs.public_keys_equal(public, key.public_key()):
        raise BootstrapDataError(
            f"{where}: {public_path} is not the public half of {private_path}; both must come "
            "from the same <cluster>-sa Secret"
        )
    return certs.encode_public_key(key), certs.encode_private_key(key)


def _b64_lines(raw: bytes) -> bytes:
    """Base64 that may be wrapped over lines (a YAML block); anything else is refused."""
    return base64.b64decode(b"".join(raw.split()), validate=True)


def _b64(value: object, at: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise BootstrapDataError(f"{at} is not valid base64") from None
