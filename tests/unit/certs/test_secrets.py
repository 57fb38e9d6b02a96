from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kcp import certs
from kcp.certs import CertificateError, KeyPair, KubeconfigError, PrivateKey, SecretPurpose

from .conftest import assert_no_key_material, pem_label

NAME = "default/c1-etcd"


def test_names_match_cluster_api() -> None:
    assert certs.secret_name("c1", SecretPurpose.CLUSTER_CA) == "c1-ca"
    assert certs.secret_name("c1", SecretPurpose.ETCD) == "c1-etcd"
    assert certs.secret_name("c1", SecretPurpose.FRONT_PROXY) == "c1-proxy"
    assert certs.secret_name("c1", SecretPurpose.SERVICE_ACCOUNT) == "c1-sa"
    assert certs.secret_name("c1", SecretPurpose.KUBECONFIG) == "c1-kubeconfig"
    assert certs.secret_name("c1", "etcd") == "c1-etcd"
    assert str(SecretPurpose.ETCD) == "etcd"
    assert (certs.TLS_CERT_KEY, certs.TLS_KEY_KEY, certs.KUBECONFIG_KEY) == (
        "tls.crt",
        "tls.key",
        "value",
    )
    assert certs.CLUSTER_SECRET_TYPE == "cluster.x-k8s.io/secret"
    with pytest.raises(ValueError):
        certs.secret_name("c1", "bogus")


def test_ca_round_trip(rsa_ca: KeyPair) -> None:
    data = certs.key_pair_to_secret_data(rsa_ca)
    assert data == {"tls.crt": rsa_ca.cert_pem, "tls.key": rsa_ca.key_pem}
    assert pem_label(data["tls.key"]) == "RSA PRIVATE KEY"
    assert certs.key_pair_from_secret_data(data, secret_name=NAME) == rsa_ca
    fast = certs.key_pair_from_secret_data(data, secret_name=NAME, skip_rsa_validation=True)
    assert fast == rsa_ca


def test_decode_secret_data(ec_ca: KeyPair) -> None:
    wire = {
        k: base64.b64encode(v).decode() for k, v in certs.key_pair_to_secret_data(ec_ca).items()
    }
    decoded = certs.decode_secret_data(wire, secret_name=NAME)
    assert certs.key_pair_from_secret_data(decoded, secret_name=NAME) == ec_ca
    assert certs.decode_secret_data(None, secret_name=NAME) == {}
    assert certs.decode_secret_data({"tls.key": None}, secret_name=NAME) == {"tls.key": b""}


def test_bad_base64_names_the_secret_and_key(ec_ca: KeyPair) -> None:
    raw = ec_ca.key_pem.decode()
    with pytest.raises(CertificateError) as e:
        certs.decode_secret_data({"tls.crt": "", "tls.key": raw}, secret_name=NAME)
    message = str(e.value)
    assert message.startswith("Secret default/c1-etcd: data key tls.key is not valid base64;")
    assert "stringData" in message
    assert_no_key_material(message, ec_ca.key_pem)


@pytest.mark.parametrize(("missing", "state"), [("tls.crt", "is missing"), ("tls.key", "is empty")])
def test_missing_data_keys(ec_ca: KeyPair, missing: str, state: str) -> None:
    data = certs.key_pair_to_secret_data(ec_ca)
    if state == "is missing":
        del data[missing]
    else:
        data[missing] = b""
    with pytest.raises(CertificateError) as e:
        certs.key_pair_from_secret_data(data, secret_name=NAME)
    what = "certificate" if missing == "tls.crt" else "private key"
    assert str(e.value) == (
        f"Secret default/c1-etcd: data key {missing} {state}; put the CA's PEM {what} there"
    )


def test_garbage_in_each_key(ec_ca: KeyPair) -> None:
    data = certs.key_pair_to_secret_data(ec_ca)
    with pytest.raises(
        CertificateError, match=r"^Secret default/c1-etcd: data key tls\.key is not PEM"
    ):
        certs.key_pair_from_secret_data({**data, "tls.key": b"garbage"}, secret_name=NAME)
    with pytest.raises(
        CertificateError, match=r"^Secret default/c1-etcd: data key tls\.crt is not PEM"
    ):
        certs.key_pair_from_secret_data({**data, "tls.crt": b"garbage"}, secret_name=NAME)


def test_swapped_keys(ec_ca: KeyPair) -> None:
    swapped = {"tls.crt": ec_ca.key_pem, "tls.key": ec_ca.cert_pem}
    with pytest.raises(CertificateError, match=r"data key tls\.crt holds .* swapped\?") as e:
        certs.key_pair_from_secret_data(swapped, secret_name=NAME)
    assert_no_key_material(str(e.value), ec_ca.key_pem)


def test_mismatched_key(ec_ca: KeyPair, rsa_ca: KeyPair) -> None:
    data = {"tls.crt": ec_ca.cert_pem, "tls.key": rsa_ca.key_pem}
    with pytest.raises(CertificateError) as e:
        certs.key_pair_from_secret_data(data, secret_name=NAME)
    message = str(e.value)
    assert message.startswith(
        "Secret default/c1-etcd: the private key does not belong to the certificate (CN=kubernetes)"
    )
    assert "tls.key" in message
    assert_no_key_material(message, ec_ca.key_pem, rsa_ca.key_pem)


def test_expired_ca(ec_key: PrivateKey) -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    ca = certs.new_certificate_authority(
        "etcd-ca", private_key=ec_key, now=t0, validity=timedelta(days=1)
    )
    data = certs.key_pair_to_secret_data(ca)
    with pytest.raises(
        CertificateError,
        match=r"^Secret default/c1-etcd: data key tls\.crt \(CN=etcd-ca\) expired at 2030-01-02",
    ):
        certs.key_pair_from_secret_data(data, secret_name=NAME, now=t0 + timedelta(days=3))
    assert certs.key_pair_from_secret_data(data, secret_name=NAME, now=t0) == ca


def test_not_a_ca(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    leaf = certs.issue_certificate(ec_ca, common_name="apiserver-etcd-client", private_key=ec_key)
    data = certs.key_pair_to_secret_data(leaf)
    with pytest.raises(
        CertificateError, match=r"data key tls\.crt \(CN=apiserver-etcd-client\) is not a CA"
    ):
        certs.key_pair_from_secret_data(data, secret_name=NAME)
    assert certs.key_pair_from_secret_data(data, secret_name=NAME, require_ca=False) == leaf


def test_service_account_key(rsa_key: PrivateKey, ec_key: PrivateKey) -> None:
    data = certs.service_account_key_to_secret_data(rsa_key)
    assert data["tls.crt"].startswith(b"-----BEGIN PUBLIC KEY-----")
    assert pem_label(data["tls.key"]) == "RSA PRIVATE KEY"
    key = certs.service_account_key_from_secret_data(data, secret_name="default/c1-sa")
    assert certs.public_keys_equal(key.public_key(), rsa_key.public_key())
    # tls.crt is optional, but must match when present.
    only_key = {"tls.key": data["tls.key"]}
    assert certs.service_account_key_from_secret_data(only_key, secret_name="default/c1-sa")
    wrong = {**data, "tls.crt": certs.encode_public_key(ec_key)}
    with pytest.raises(
        CertificateError, match=r"^Secret default/c1-sa: the public key in tls\.crt does not belong"
    ):
        certs.service_account_key_from_secret_data(wrong, secret_name="default/c1-sa")
    with pytest.raises(
        CertificateError, match=r"^Secret default/c1-sa: data key tls\.key is missing"
    ):
        certs.service_account_key_from_secret_data({}, secret_name="default/c1-sa")
    with pytest.raises(CertificateError, match=r"data key tls\.crt is not PEM"):
        certs.service_account_key_from_secret_data({**data, "tls.crt": b"x"}, secret_name="s")


def test_new_service_account_key_generates_once() -> None:
    public, private = certs.new_service_account_key(algorithm="ecdsa-p256")
    key = certs.service_account_key_from_secret_data(
        {"tls.crt": public, "tls.key": private}, secret_name="default/c1-sa"
    )
    assert certs.public_keys_equal(certs.decode_public_key(public), key.public_key())


@pytest.mark.timeout(30)
def test_new_service_account_key_is_rsa_by_default() -> None:
    public, private = certs.new_service_account_key()
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert pem_label(private) == "RSA PRIVATE KEY"
    assert isinstance(
        certs.decode_private_key(private, skip_rsa_validation=True), rsa.RSAPrivateKey
    )


def test_kubeconfig_secret(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    admin = certs.issue_certificate(ec_ca, common_name="kubernetes-admin", private_key=ec_key)
    doc = certs.build_kubeconfig(
        cluster_name="c1",
        server="https://h:6443",
        ca_pem=ec_ca.cert_pem,
        client_cert_pem=admin.cert_pem,
        client_key_pem=admin.key_pem,
    )
    data = certs.kubeconfig_secret_data(doc)
    assert data == {"value": doc}
    kc = certs.kubeconfig_from_secret_data(data, secret_name="default/c1-kubeconfig")
    assert kc.server == "https://h:6443"
    with pytest.raises(
        KubeconfigError, match=r"^Secret default/c1-kubeconfig: data key value is missing"
    ):
        certs.kubeconfig_from_secret_data({}, secret_name="default/c1-kubeconfig")
    with pytest.raises(
        KubeconfigError,
        match=r"^Secret default/c1-kubeconfig: data key value: kubeconfig has no current-context",
    ):
        certs.kubeconfig_from_secret_data({"value": b"a: 1"}, secret_name="default/c1-kubeconfig")


def test_formatted_tracebacks_hold_no_key_material(ec_ca: KeyPair, rsa_ca: KeyPair) -> None:
    import traceback

    truncated = rsa_ca.key_pem[:200] + rsa_ca.key_pem[-40:]
    cases = [
        {"tls.crt": ec_ca.cert_pem, "tls.key": rsa_ca.key_pem},
        {"tls.crt": ec_ca.cert_pem, "tls.key": truncated},
        {"tls.crt": rsa_ca.key_pem, "tls.key": rsa_ca.key_pem},
    ]
    for data in cases:
        with pytest.raises(CertificateError) as e:
            certs.key_pair_from_secret_data(data, secret_name=NAME)
        text = "".join(traceback.format_exception(e.value))
        assert_no_key_material(text, rsa_ca.key_pem)
        assert e.value.__cause__ is None
