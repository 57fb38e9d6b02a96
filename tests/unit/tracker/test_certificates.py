from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from kcp import certs
from kcp.tracker import ClusterSecretError
from kcp.tracker.certificates import CertificateCache, IssuedCertificate
from kcp.tracker.identity import ClusterKey
from kcp.tracker.keys import ClusterPrivateKey, KeyCache
from kcp.tracker.metrics import TrackerMetrics
from kcp.tracker.secrets import EtcdCA, SecretData, load_etcd_ca

CLUSTER = ClusterKey("ns", "c1", "uid-1")
START = datetime.now(UTC).replace(microsecond=0)


class Clock:
    """Wall clock and monotonic timer moving together (or not, when a test says so)."""

    def __init__(self) -> None:
        self.wall = START
        self.mono = 5000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def etcd_ca(pair: certs.KeyPair, version: str = "1") -> EtcdCA:
    return load_etcd_ca(
        CLUSTER, SecretData(version, certs.key_pair_to_secret_data(pair)), retry_after=1.0
    )


@pytest.fixture(scope="module")
def ca_pair() -> certs.KeyPair:
    return certs.new_certificate_authority("etcd-ca", algorithm="ecdsa-p256", now=START)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> CertificateCache:
    return CertificateCache(
        maxsize=100,
        validity=timedelta(hours=24),
        renew_fraction=2 / 3,
        common_name="cluster-api.x-k8s.io",
        organizations=(),
        metrics=TrackerMetrics(CollectorRegistry()),
        timer=lambda: clock.mono,
        clock=lambda: clock.wall,
    )


@pytest.fixture
def cluster_key() -> ClusterPrivateKey:
    keys = KeyCache(
        maxsize=1, ttl=None, algorithm="ecdsa-p256", metrics=TrackerMetrics(CollectorRegistry())
    )
    return keys.generate()


def test_issued_certificate_is_for_the_cached_key_and_signed_by_the_cluster_ca(
    cache: CertificateCache, ca_pair: certs.KeyPair, cluster_key: ClusterPrivateKey
) -> None:
    issued = cache.issue(CLUSTER, etcd_ca(ca_pair), cluster_key)
    cert = issued.pair.certificate
    assert certs.public_keys_equal(cert.public_key(), cluster_key.private_key.public_key())
    assert certs.verify_signed_by(cert, ca_pair.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "cluster-api.x-k8s.io"
    )
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert issued.not_after == START + timedelta(hours=24)
    assert issued.renew_at == START + timedelta(hours=16)
    assert issued.tls.key_pem == issued.pair.key_pem
    assert issued.tls.ca_pem == ca_pair.cert_pem
    assert "PRIVATE KEY" not in repr(issued)


def _get_or_issue(
    cache: CertificateCache, cluster: ClusterKey, ca: EtcdCA, key: ClusterPrivateKey
) -> IssuedCertificate:
    """What the tracker does: the cached certificate, else a new one."""
    found = cache.get(cluster, ca, key)
    return found if found is not None else cache.issue(cluster, ca, key)


def test_the_cached_certificate_is_returned_until_two_thirds_of_its_life(
    cache: CertificateCache, clock: Clock, ca_pair: certs.KeyPair, cluster_key: ClusterPrivateKey
) -> None:
    ca = etcd_ca(ca_pair)
    first = _get_or_issue(cache, CLUSTER, ca, cluster_key)
    clock.advance(16 * 3600 - 1)
    assert _get_or_issue(cache, CLUSTER, ca, cluster_key) is first
    clock.advance(2)
    second = _get_or_issue(cache, CLUSTER, ca, cluster_key)
    assert second is not first
    assert second.fingerprint != first.fingerprint
    assert clock.wall < first.not_after  # renewed while the old one was still valid
    stats = cache._metrics.stats()
    assert stats.certificates_issued == 2
    assert stats.cache_hits == {"certificate": 1}


def test_a_certificate_is_never_handed_out_past_renewal_even_if_the_monotonic_clock_lags(
    cache: CertificateCache, clock: Clock, ca_pair: certs.KeyPair, cluster_key: ClusterPrivateKey
) -> None:
    ca = etcd_ca(ca_pair)
    first = _get_or_issue(cache, CLUSTER, ca, cluster_key)
    clock.wall += timedelta(hours=23)  # e.g. the machine was suspended: wall time jumped
    assert cache.get(CLUSTER, ca, cluster_key) is None
    assert _get_or_issue(cache, CLUSTER, ca, cluster_key) is not first


def test_a_rotated_ca_gets_a_new_certificate(
    cache: CertificateCache, clock: Clock, ca_pair: certs.KeyPair, cluster_key: ClusterPrivateKey
) -> None:
    first = _get_or_issue(cache, CLUSTER, etcd_ca(ca_pair), cluster_key)
    rotated_pair = certs.new_certificate_authority("etcd-ca-2", algorithm="ecdsa-p256", now=START)
    rotated = etcd_ca(rotated_pair, version="2")
    assert rotated.fingerprint != etcd_ca(ca_pair).fingerprint
    second = _get_or_issue(cache, CLUSTER, rotated, cluster_key)
    assert second.fingerprint != first.fingerprint
    assert certs.verify_signed_by(second.pair.certificate, rotated_pair.certificate)
    assert not certs.verify_signed_by(second.pair.certificate, ca_pair.certificate)


def test_a_new_key_gets_a_new_certificate(
    cache: CertificateCache, ca_pair: certs.KeyPair, cluster_key: ClusterPrivateKey
) -> None:
    ca = etcd_ca(ca_pair)
    first = _get_or_issue(cache, CLUSTER, ca, cluster_key)
    keys = KeyCache(
        maxsize=1, ttl=None, algorithm="ecdsa-p256", metrics=TrackerMetrics(CollectorRegistry())
    )
    assert _get_or_issue(cache, CLUSTER, ca, keys.generate()) is not first


def test_validity_is_capped_by_the_ca_and_renewal_is_two_thirds_of_what_is_left(
    cache: CertificateCache, clock: Clock, cluster_key: ClusterPrivateKey
) -> None:
    short_ca = certs.new_certificate_authority(
        "etcd-ca", algorithm="ecdsa-p256", validity=timedelta(hours=3), now=START
    )
    issued = cache.issue(CLUSTER, etcd_ca(short_ca), cluster_key)
    assert issued.not_after == short_ca.not_after
    assert issued.renew_at == START + timedelta(hours=2)


def test_an_expired_ca_is_a_secret_error_naming_the_cluster(
    cache: CertificateCache, clock: Clock, cluster_key: ClusterPrivateKey
) -> None:
    old_ca = certs.new_certificate_authority(
        "etcd-ca", algorithm="ecdsa-p256", validity=timedelta(hours=1), now=START
    )
    ca = etcd_ca(old_ca)
    clock.advance(2 * 3600)
    with pytest.raises(ClusterSecretError, match=r"ns/c1.*expired"):
        cache.issue(CLUSTER, ca, cluster_key)


def test_drop_cluster_forgets_all_of_its_certificates(
    cache: CertificateCache, ca_pair: certs.KeyPair, cluster_key: ClusterPrivateKey
) -> None:
    ca = etcd_ca(ca_pair)
    cache.issue(CLUSTER, ca, cluster_key)
    other = ClusterKey("ns", "c2", "uid-2")
    cache.issue(other, ca, cluster_key)
    assert cache.drop_cluster(CLUSTER) == 1
    assert cache.get(CLUSTER, ca, cluster_key) is None
    assert cache.get(other, ca, cluster_key) is not None
