"""Security: keys stay in memory, certificates are short-lived and verified, RBAC suffices.

Runs last: it inspects what the whole suite's controllers did. Every private
key a `kcp run` of this suite generated reached the test through a pipe
(`kcp_child.py`), never a file; here the suite looks for each of them on disk
(every file written since the session started under /tmp, /var/tmp, /dev/shm,
the working directories, $HOME/.cache; other tools' caches such as .mypy_cache,
.venv or a Go build's /tmp/go-build1234 are skipped) and in the controllers'
whole output, by windows of each key's private numbers (`tests/keyscan.py`:
nothing another key or the key's certificate also holds). Expected
copies, and only those, are allowed: a key kcp stores in a Secret (CAs,
service-account key, admin kubeconfig) is in the management cluster's etcd
data, and the CA and service-account keys are also on the simulated machines
(kubeadm puts them on every control-plane node). etcd client keys are allowed
nowhere.
"""

from __future__ import annotations

import base64
import calendar
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from kcp import certs
from kcp.api import groups, labels
from kcp.etcd import EtcdClient, EtcdError, EtcdTimeouts, EtcdTLS
from kcp.testing.etcd_cluster import EtcdCluster
from kcp.tracker import ClusterKey, InMemorySecrets, NotConnected, Tracker, TrackerOptions
from tests import keyscan
from tests.reliability import harness
from tests.reliability.conftest import SUMMARY, Summary
from tests.reliability.fleet import Fleet, kcp_name, wait_for
from tests.reliability.rbac import SERVICE_ACCOUNT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

STARTED = SUMMARY.started
SESSION_START_WALL = time.time() - (time.monotonic() - STARTED)
TRACKER_KEY = "kcp/tracker/"
NODE_SECRETS = ("ca", "etcd", "proxy", "sa")
"""The cluster Secrets whose keys kubeadm writes to every control-plane node (CABPK's
bootstrap data carries them): /etc/kubernetes/pki/{ca,etcd/ca,front-proxy-ca,sa}.key."""


def is_etcd_client_key(key: keyscan.KeyNeedles) -> bool:
    return key.by.startswith(TRACKER_KEY)


def pkcs8(pem: bytes) -> bytes:
    private = serialization.load_pem_private_key(
        pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    return private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


_NEEDLES: dict[bytes, keyscan.KeyNeedles] = {}


def needles_for(key: harness.ReportedKey) -> keyscan.KeyNeedles:
    cached = _NEEDLES.get(key.pkcs8_der)
    if cached is None:
        cached = keyscan.key_needles(key.pkcs8_der, owner=key.process, by=key.by)
        _NEEDLES[key.pkcs8_der] = cached
    return cached


def all_needles() -> list[keyscan.KeyNeedles]:
    return [needles_for(key) for process in harness.ALL for key in process.keys]


@dataclass
class Hit:
    path: str
    needles: keyscan.KeyNeedles


def scan(
    roots: list[Path], needles: list[keyscan.KeyNeedles], management_etcd: Path
) -> tuple[int, list[Hit]]:
    """Files written since the session started under `roots`; the keys found in them.

    Other processes' etcd storage (`*/member/*`) is skipped, except the management
    cluster's, which is where kcp's Secrets are at rest. etcd client keys are also
    looked for as raw bytes (DER) outside it.
    """
    index = keyscan.KeyIndex(needles)
    etcd_client_keys = [n for n in needles if is_etcd_client_key(n)]
    scanned = 0
    hits: list[Hit] = []
    for path in keyscan.written_files(roots, since=SESSION_START_WALL - 5):
        directory = str(path.parent)
        in_management_etcd = directory.startswith(str(management_etcd))
        if "/member" in directory and not in_management_etcd:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        raw = () if in_management_etcd else etcd_client_keys
        hits.extend(Hit(str(path), found) for found in index.find(data, raw=raw))
    return scanned, hits


def all_keys() -> list[harness.ReportedKey]:
    return [key for process in harness.ALL for key in process.keys]


def test_private_keys_are_never_written_to_disk(
    fleet: Fleet, summary: Summary, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keys = all_keys()
    assert keys, "no controller reported a key"
    needles = all_needles()
    management_etcd = fleet.plane.work_dir / "etcd-data"
    roots = keyscan.scan_roots(
        tmp_path_factory.getbasetemp(), *(process.work_dir for process in harness.ALL)
    )
    started = time.monotonic()
    scanned, hits = scan(roots, needles, management_etcd)
    took = time.monotonic() - started
    sim_dir = str(fleet.sim.work_dir)
    node_keys = set()
    for cluster in ("victim", "bystander"):
        for suffix in NODE_SECRETS:
            secret = fleet.kube.get(groups.SECRET, fleet.namespace, f"{cluster}-{suffix}")
            assert secret is not None, f"{cluster}-{suffix}"
            node_keys.add(pkcs8(base64.b64decode(secret["data"]["tls.key"])))
    expected, leaked = [], []
    for hit in hits:
        at_rest = hit.path.startswith(str(management_etcd)) and not is_etcd_client_key(hit.needles)
        on_node = hit.path.startswith(sim_dir) and hit.needles.pkcs8 in node_keys
        (expected if at_rest or on_node else leaked).append(hit)
    by_kind: dict[str, int] = {}
    for key in keys:
        by_kind[key.by] = by_kind.get(key.by, 0) + 1
    print(
        f"{len(keys)} private keys ({by_kind}) looked for in {scanned} files written since "
        f"the session started under {[str(r) for r in roots]} in {took:.1f}s; "
        f"{len(expected)} expected copies (Secrets at rest, CA and service-account keys "
        "on control-plane nodes)"
    )
    summary.notes.append(
        f"private keys on disk: {len(leaked)} of {len(keys)} product keys outside expected "
        f"places ({scanned} files scanned)"
    )
    summary.leaks.extend(f"key of {h.needles.by} in {h.path}" for h in leaked)
    assert leaked == [], [(h.path, h.needles.by) for h in leaked]
    assert any(is_etcd_client_key(n) for n in needles), "no etcd client key was looked for"


PEM_KEY_BLOCK = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:\\n|\s)*[A-Za-z0-9+/]{16}")
"""A PEM private key block with its body (also with newlines escaped in a JSON log line).

The words `PRIVATE KEY` alone are not key material: kcp's messages name PEM block
types ("tls.crt holds PEM block(s) EC PRIVATE KEY but no CERTIFICATE")."""


def test_private_keys_are_never_logged(summary: Summary) -> None:
    needles = all_needles()
    index = keyscan.KeyIndex(needles)
    lines = mentions = 0
    found: list[str] = []
    for process in harness.ALL:
        text = process.log_path.read_bytes()
        lines += text.count(b"\n")
        mentions += text.count(b"PRIVATE KEY")
        for match in PEM_KEY_BLOCK.finditer(text):
            found.append(f"{process.name}: a PEM private key block: {match.group(0)[:40]!r}")
        for key in index.find(text):
            found.append(f"{process.name}: key material of a key {key.owner} generated ({key.by})")
    print(
        f"{lines} log lines of {len(harness.ALL)} controllers scanned for PEM key blocks and "
        f"{len(needles)} keys; the words 'PRIVATE KEY' appear {mentions} times, in messages "
        "that name a PEM block type"
    )
    summary.notes.append(f"log lines scanned:    {lines} (no key material)")
    summary.leaks.extend(found)
    assert lines > 0
    assert found == []


def test_etcd_client_certificates_are_short_lived(fleet: Fleet) -> None:
    issued = [
        x509.load_pem_x509_certificate(pem.encode())
        for process in harness.ALL
        for pem in process.etcd_client_certificates
    ]
    assert issued, "the controllers issued no etcd client certificate"
    default = TrackerOptions().certificate_validity
    assert default == timedelta(hours=24)
    for cert in issued:
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert default <= life <= default + 2 * certs.CLOCK_SKEW, life
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert not constraints.ca
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == "cluster-api.x-k8s.io"
    print(f"{len(issued)} etcd client certificates, each valid {default} (+ clock skew)")


class ForeignServerEtcd(EtcdCluster):
    """An etcd whose server certificate another CA signed, trusting clients of `client_ca`."""

    def __init__(self, server_ca: certs.KeyPair, client_ca: certs.KeyPair) -> None:
        super().__init__(server_ca, members=1, name="foreign")
        self.client_ca = client_ca

    @property
    def ca_pem(self) -> bytes:
        return certs.encode_certificate(self.ca.certificate) + self.client_ca.cert_pem


def test_an_etcd_server_certificate_from_another_ca_is_refused() -> None:
    cluster_ca = certs.new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")
    foreign_ca = certs.new_certificate_authority("foreign-etcd-ca", algorithm="ecdsa-p256")
    with ForeignServerEtcd(foreign_ca, cluster_ca) as etcd:
        client_cert = certs.issue_certificate(
            cluster_ca, common_name="cluster-api.x-k8s.io", algorithm="ecdsa-p256"
        )
        quick = EtcdTimeouts(dial=3.0, call=3.0)
        trusting_cluster = EtcdTLS(cluster_ca.cert_pem, client_cert.cert_pem, client_cert.key_pem)
        with pytest.raises(EtcdError) as refused:
            EtcdClient.open(
                etcd.endpoints[0], trusting_cluster, timeouts=quick, transport="grpc"
            ).status()
        print(f"refused: {str(refused.value)[:300]}")
        assert "certificate" in str(refused.value).lower()
        # The same client trusting the server's CA is served: the refusal was the server's
        # certificate, not ours.
        trusting_foreign = EtcdTLS(foreign_ca.cert_pem, client_cert.cert_pem, client_cert.key_pem)
        assert EtcdClient.open(
            etcd.endpoints[0], trusting_foreign, timeouts=quick, transport="grpc"
        ).status()
        # The tracker, given the cluster's etcd CA, never connects to that server.
        secrets = InMemorySecrets()
        secrets.put("ns", "c-etcd", certs.key_pair_to_secret_data(cluster_ca))
        key = ClusterKey("ns", "c", "uid-1")
        with Tracker(
            secrets,
            TrackerOptions(probe_interval=0.5, key_algorithm="ecdsa-p256"),
            registry=CollectorRegistry(),
        ) as tracker:
            tracker.track(key, etcd_endpoints=etcd.endpoints)
            health = wait_for(
                "the tracker to report the refused server",
                lambda: (h := tracker.health(key)) and "certificate" in h.last_error and h,
                20,
                interval=0.2,
            )
            assert health.state != "connected"
            with pytest.raises(NotConnected):
                tracker.etcd_access(key, etcd.endpoints)


def test_secrets_have_the_cluster_api_type_owner_and_label(fleet: Fleet) -> None:
    for cluster in ("victim", "bystander"):
        owner = fleet.kcp_object(cluster)
        assert owner is not None
        for suffix in ("ca", "etcd", "proxy", "sa", "kubeconfig"):
            secret = fleet.kube.get(groups.SECRET, fleet.namespace, f"{cluster}-{suffix}")
            assert secret is not None, suffix
            assert secret["type"] == certs.CLUSTER_SECRET_TYPE
            assert secret["metadata"]["labels"][labels.CLUSTER_NAME_LABEL] == cluster
            controllers = [
                ref for ref in secret["metadata"]["ownerReferences"] if ref.get("controller")
            ]
            assert controllers == [
                {
                    "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
                    "kind": groups.KUBEADM_CONTROL_PLANE.kind,
                    "name": kcp_name(cluster),
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ], secret["metadata"]["ownerReferences"]


FORBIDDEN = re.compile(
    r'"timestamp": "(?P<time>[^"]+)"|cannot (?P<verb>\w+) resource \\"(?P<resource>[^"\\]+)\\" '
    r'in API group \\"(?P<group>[^"\\]*)\\"(?: in the namespace \\"(?P<namespace>[^"\\]+)\\")?'
)
AUTHORIZER_SYNC = 20.0
"""Seconds after a management API server restart during which its RBAC authorizer may still
answer 403 to anyone while its caches fill (kube-apiserver behaviour, not kcp's roles)."""


def _allowed(fleet: Fleet, user: str, verb: str, resource: str, group: str, ns: str) -> bool:
    plural, _, subresource = resource.partition("/")
    review = k8s.AuthorizationV1Api(fleet.plane.api_client()).create_subject_access_review(
        {
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": {
                    "verb": verb,
                    "resource": plural,
                    "subresource": subresource,
                    "group": group,
                    "namespace": ns,
                },
            }
        }
    )
    return bool(review.status.allowed)


def test_kcp_needs_no_permission_beyond_config_rbac(fleet: Fleet, summary: Summary) -> None:
    """Every controller of the suite ran as the ServiceAccount bound to `config/rbac/`.

    A 403 in a controller's log fails this test unless it came while the management API
    server was restarting and the role grants exactly that request (checked with a
    SubjectAccessReview): then it was the API server's authorizer warming up.
    """
    fleet.wait_available("bystander", 1, timeout=120)
    user = f"system:serviceaccount:{fleet.system_namespace}:{SERVICE_ACCOUNT}"
    assert not _allowed(fleet, user, "delete", "secrets", "", fleet.namespace), (
        "the suite's kubeconfig may do more than the role"
    )
    transient = 0
    refused: list[str] = []
    for process in harness.ALL:
        assert process.kubeconfig == fleet.kcp.kubeconfig, process.name
        for line in process.log_path.read_text(errors="replace").splitlines():
            if "403 Forbidden" not in line and "forbidden" not in line.lower():
                continue
            when = verb = None
            details: dict[str, str] = {}
            for match in FORBIDDEN.finditer(line):
                if match.group("time"):
                    when = match.group("time")
                elif match.group("verb"):
                    verb = match.group("verb")
                    details = {k: v or "" for k, v in match.groupdict().items()}
            moment = (
                calendar.timegm(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S")) if when else None
            )
            restarting = moment is not None and any(
                start - 1 <= moment <= end + AUTHORIZER_SYNC for start, end in fleet.restarts
            )
            granted = verb is not None and _allowed(
                fleet,
                user,
                verb,
                details["resource"],
                details["group"],
                details["namespace"] or fleet.namespace,
            )
            if restarting and granted:
                transient += 1
            else:
                refused.append(f"{process.name}: {line[:400]}")
    print(f"403s while the management API server restarted (role grants them): {transient}")
    summary.notes.append(
        f"RBAC:                 {len(harness.ALL)} controller(s) ran as {SERVICE_ACCOUNT} "
        f"bound to config/rbac/role.yaml; {len(refused)} refusals "
        f"({transient} 403s only while the API server restarted)"
    )
    assert refused == []


def _direct_routes() -> dict[str, str]:
    """`process#incarnation` -> what it reached etcd with, of every port-forward incarnation
    that connected to an etcd client port or held a connection to one."""
    return {
        f"{process.name}#{routes.incarnation}": (
            f"connected to {routes.etcd_connects}, held {routes.etcd_sockets}"
        )
        for process in harness.ALL
        for routes in process.routes
        if routes.etcd_access == "port-forward" and routes.reached_etcd_directly
    }


def test_kcp_reaches_etcd_only_through_port_forwards(fleet: Fleet, summary: Summary) -> None:
    """In `port-forward` mode (the default) no `kcp run` of the suite connected to an etcd
    client port, nor held a connection to one, over its whole run — while the fleet's
    clusters reached Available, scaled, rolled out and had members killed: etcd was
    reached only through tunnels via the workload API servers. An incarnation started
    with `--etcd-access=direct` is then seen connected to the members (the check can fail).

    Every connect of the processes' Python sockets is reported by `kcp_child.py`; their
    open sockets are sampled every two seconds from /proc (gRPC's own, if any, too).
    """
    fleet.wait_available("bystander", 1, timeout=120)
    kcp = fleet.kcp
    tunnelled = [
        routes
        for process in harness.ALL
        for routes in process.routes
        if routes.etcd_access == "port-forward"
    ]
    samples = sum(routes.samples for routes in tunnelled)
    connects = set().union(*(routes.connects for routes in tunnelled))
    opened = sum(kcp.metric_samples("kcp_tracker_tunnels_opened_total").values())
    span = max(r.sampled_to for r in tunnelled) - min(r.sampled_from for r in tunnelled)
    print(
        f"port-forward: {len(tunnelled)} incarnations, {samples} socket samples over "
        f"{span:.0f}s, {len(connects)} distinct peers connected to; the fleet's kcp opened "
        f"{opened:.0f} tunnels in its current incarnation"
    )
    direct_in_port_forward = _direct_routes()
    assert opened > 0, "the fleet's kcp reached its clusters without a tunnel"
    assert samples >= span / harness.ROUTE_SAMPLE_INTERVAL / 2, "too few socket samples"
    assert connects, "kcp_child.py reported no connection at all: is the hook in place?"

    kcp.stop()
    kcp.etcd_access = "direct"
    try:
        kcp.start()
        generation = fleet.touch("bystander")
        fleet.observed("bystander", generation, timeout=60)
        direct = kcp.routes[-1]
        wait_for(
            "the direct incarnation's connections to etcd to be seen",
            lambda: direct.etcd_connects and direct.etcd_sockets,
            timeout=30,
        )
    finally:
        kcp.stop()
        kcp.etcd_access = "port-forward"
        kcp.start()
    print(
        f"direct: connected to {direct.etcd_connects}, held {direct.etcd_sockets} "
        f"in {direct.samples} samples"
    )
    summary.notes.append(
        f"etcd route:           {len(tunnelled)} port-forward incarnation(s), {samples} socket "
        f"samples over {span:.0f}s, {len(direct_in_port_forward)} reached etcd directly; "
        f"a direct incarnation did ({len(direct.etcd_connects)} member(s))"
    )
    assert direct_in_port_forward == {}
