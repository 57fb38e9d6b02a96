"""Reading CABPK's bootstrap data as a node would: init and join documents, and every bad input."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import pytest

from kcp import certs
from kcp.sim.bootdata import (
    BootstrapData,
    BootstrapDataError,
    KubeadmCommand,
    ca_cert_hash,
    parse_bootstrap_secret,
    parse_user_data,
)

from .cabpk_userdata import (
    AUDIT_POLICY,
    ENDPOINT,
    TOKEN,
    File,
    Material,
    ca_files,
    cluster_configuration,
    init_user_data,
    join_configuration,
    join_user_data,
    secret,
)

TESTDATA = Path(__file__).parent / "testdata"
WHERE = "bootstrap data Secret ns/m1 (Machine m1 spec.bootstrap.dataSecretName)"


@pytest.fixture(scope="module")
def material() -> Material:
    return Material.new()


def _parse(user_data: str, hostname: str = "m1") -> BootstrapData:
    return parse_user_data(user_data, where=WHERE, hostname=hostname)


def _error(user_data: str) -> BootstrapDataError:
    with pytest.raises(BootstrapDataError) as caught:
        _parse(user_data)
    message = str(caught.value)
    assert message.startswith(WHERE), message
    assert "PRIVATE KEY" not in message and TOKEN not in message
    return caught.value


def _placeholders() -> list[File]:
    files: list[File] = []
    for stem, purpose in (("ca", "ca"), ("etcd/ca", "etcd"), ("front-proxy-ca", "proxy")):
        files.append(File(f"/etc/kubernetes/pki/{stem}.crt", f"CERT-{purpose}\nLINE2\n"))
        files.append(File(f"/etc/kubernetes/pki/{stem}.key", "KEY\n", permissions="0600"))
    files.append(File("/etc/kubernetes/pki/sa.pub", "CERT-sa\nLINE2\n"))
    files.append(File("/etc/kubernetes/pki/sa.key", "KEY\n", permissions="0600"))
    return files


def test_fixture_renders_byte_for_byte_as_cabpk() -> None:
    """The goldens were rendered by CABPK v1.13.6's own cloudinit package, placeholder certs."""
    audit = File("/etc/kubernetes/audit-policy.yaml", "apiVersion: audit.k8s.io/v1\n", "0600")
    init = init_user_data(
        None,
        files=_placeholders(),
        extra=[audit],
        cluster="apiServer: {}\nkind: ClusterConfiguration\n",
        init="kind: InitConfiguration\n",
    )
    assert init == (TESTDATA / "cabpk-init.golden").read_text()
    join = join_user_data(None, files=_placeholders(), extra=[], join="kind: JoinConfiguration\n")
    assert join == (TESTDATA / "cabpk-join.golden").read_text()


def test_init_data(material: Material) -> None:
    boot = parse_bootstrap_secret(secret(init_user_data(material)), where=WHERE, hostname="m1")
    assert boot.command is KubeadmCommand.INIT and boot.is_init
    assert boot.config_path == "/run/kubeadm/kubeadm.yaml"
    assert boot.cluster_configuration is not None
    assert boot.cluster_configuration["controlPlaneEndpoint"] == ENDPOINT
    assert boot.cluster_configuration["apiServer"]["certSANs"] == ["localhost", "127.0.0.1"]
    assert boot.init_configuration is not None
    assert boot.init_configuration["kind"] == "InitConfiguration"
    assert boot.join_configuration is None and boot.discovery is None
    assert boot.node_name is None
    assert boot.certificates_dir == "/etc/kubernetes/pki"
    assert boot.files[AUDIT_POLICY.path].text == AUDIT_POLICY.content
    assert boot.files[AUDIT_POLICY.path].permissions == "0600"
    assert "/run/cluster-api/placeholder" in boot.files
    authorities = boot.authorities
    assert authorities.ca == material.ca and authorities.etcd_ca == material.etcd_ca
    assert authorities.front_proxy_ca == material.proxy_ca
    assert authorities.sa_private_pem == material.sa_private
    assert authorities.sa_public_pem == material.sa_public


def test_join_data(material: Material) -> None:
    boot = _parse(join_user_data(material))
    assert boot.command is KubeadmCommand.JOIN and not boot.is_init
    assert boot.config_path == "/run/kubeadm/kubeadm-join-config.yaml"
    assert boot.cluster_configuration is None and boot.init_configuration is None
    assert boot.join_configuration is not None
    assert boot.discovery is not None
    assert boot.discovery.api_server_endpoint == ENDPOINT
    assert boot.discovery.token == TOKEN and boot.discovery.token_id == "abcdef"
    assert boot.discovery.ca_cert_hashes == (ca_cert_hash(material.ca.certificate),)
    assert TOKEN not in repr(boot.discovery)
    assert boot.authorities.ca == material.ca


def test_rsa_material_as_kcp_generates_it() -> None:
    rsa = Material.new("rsa-2048")
    boot = _parse(join_user_data(rsa))
    assert boot.authorities.etcd_ca == rsa.etcd_ca


def test_ca_pin_is_kubeadms(material: Material) -> None:
    pin = ca_cert_hash(material.ca.certificate)
    assert pin.startswith("sha256:") and len(pin) == len("sha256:") + 64


def test_jinja_renders_the_hostname(material: Material) -> None:
    join = join_configuration(material, node_name="{{ ds.meta_data.local_hostname }}")
    assert _parse(join_user_data(material, join=join), hostname="cp-7").node_name == "cp-7"
    join = join_configuration(material, node_name="{{ ds.meta_data.unknown }}")
    name = _parse(join_user_data(material, join=join)).node_name
    assert name == "CI_MISSING_JINJA_VAR/ds.meta_data.unknown"


def test_file_encodings(material: Material) -> None:
    extra = [
        File("/a", base64.b64encode(b"plain a").decode(), encoding="base64"),
        File("/b", base64.b64encode(gzip.compress(b"zipped b")).decode(), encoding="gzip+base64"),
        File("/c", base64.b64encode(b"c").decode(), encoding="b64"),
    ]
    files = _parse(init_user_data(material, extra=extra)).files
    assert (files["/a"].content, files["/b"].content, files["/c"].content) == (
        b"plain a",
        b"zipped b",
        b"c",
    )


def test_verbosity_and_list_form_commands(material: Material) -> None:
    assert _parse(init_user_data(material, verbosity="--v 5")).is_init
    listed = init_user_data(material).replace(
        "  - 'kubeadm init --config /run/kubeadm/kubeadm.yaml  && echo",
        "  - [kubeadm, init, --config, /run/kubeadm/kubeadm.yaml]\n  - 'echo",
    )
    assert _parse(listed).config_path == "/run/kubeadm/kubeadm.yaml"


def test_custom_certificates_dir(material: Material) -> None:
    cluster = cluster_configuration() + "certificatesDir: /etc/k8s/pki\n"
    user_data = init_user_data(material, files=ca_files(material, "/etc/k8s/pki"), cluster=cluster)
    boot = _parse(user_data)
    assert boot.certificates_dir == "/etc/k8s/pki" and boot.authorities.ca == material.ca


# -- the Secret ---------------------------------------------------------------------------


def test_missing_secret_and_value() -> None:
    with pytest.raises(BootstrapDataError, match="does not exist") as caught:
        parse_bootstrap_secret(None, where=WHERE, hostname="m1")
    assert caught.value.reason == "BootstrapDataMissing"
    empty = {"metadata": {"name": "m1"}, "data": {"format": "Y2xvdWQtY29uZmln"}}
    with pytest.raises(BootstrapDataError, match="no data key `value`") as caught:
        parse_bootstrap_secret(empty, where=WHERE, hostname="m1")
    assert caught.value.reason == "BootstrapDataMissing"


def test_secret_value_not_base64() -> None:
    bad = {"data": {"value": "not base64!"}}
    with pytest.raises(BootstrapDataError, match="`value` is not valid base64") as caught:
        parse_bootstrap_secret(bad, where=WHERE, hostname="m1")
    assert caught.value.reason == "BootstrapDataInvalid"


def test_ignition_is_refused_by_name(material: Material) -> None:
    with pytest.raises(BootstrapDataError, match="format 'ignition' is not supported"):
        parse_bootstrap_secret(
            secret(init_user_data(material), fmt="ignition"), where=WHERE, hostname="m1"
        )


def test_format_defaults_to_cloud_config(material: Material) -> None:
    data = secret(init_user_data(material))
    data["data"] = {"value": data["data"]["value"]}  # type: ignore[index]
    assert parse_bootstrap_secret(data, where=WHERE, hostname="m1").is_init


# -- bad cloud-config ---------------------------------------------------------------------


def test_not_yaml() -> None:
    assert "not valid YAML" in str(_error("#cloud-config\nwrite_files: [\n"))


def test_not_cloud_config() -> None:
    assert "#cloud-config" in str(_error("#!/bin/sh\nkubeadm init\n"))


def test_not_a_mapping() -> None:
    assert "must be a YAML mapping" in str(_error("#cloud-config\n- a\n"))


def test_no_runcmd(material: Material) -> None:
    user_data = init_user_data(material).split("\nruncmd:")[0] + "\n"
    assert "has no runcmd" in str(_error(user_data))


def test_no_kubeadm_command(material: Material) -> None:
    user_data = init_user_data(material).replace("kubeadm init", "echo kubeadm-init")
    assert "neither `kubeadm init` nor `kubeadm join`" in str(_error(user_data))


def test_both_init_and_join(material: Material) -> None:
    user_data = init_user_data(material) + "  - kubeadm join --config /x.yaml\n"
    assert "both `kubeadm init` and `kubeadm join`" in str(_error(user_data))


def test_command_without_config(material: Material) -> None:
    user_data = init_user_data(material).replace("--config /run/kubeadm/kubeadm.yaml", "")
    assert "has no --config" in str(_error(user_data))


def test_config_file_not_written(material: Material) -> None:
    user_data = init_user_data(material).replace("--config /run/kubeadm/", "--config /tmp/")
    assert "--config /tmp/kubeadm.yaml, but write_files has no such file" in str(_error(user_data))


def test_kubeadm_config_not_yaml(material: Material) -> None:
    error = _error(init_user_data(material, init="kind: [InitConfiguration\n"))
    assert "/run/kubeadm/kubeadm.yaml is not valid YAML" in str(error)


def test_unknown_kubeadm_api_version(material: Material) -> None:
    cluster = cluster_configuration().replace("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta2")
    error = _error(init_user_data(material, cluster=cluster))
    assert "ClusterConfiguration has apiVersion kubeadm.k8s.io/v1beta2" in str(error)


def test_no_kubeadm_documents(material: Material) -> None:
    user_data = init_user_data(material, cluster="kind: Other\n", init="kind: Other\n")
    assert "holds no kubeadm configuration document" in str(_error(user_data))


def test_external_etcd(material: Material) -> None:
    cluster = cluster_configuration().replace(
        '  local:\n    dataDir: ""\n', "  external:\n    endpoints: [https://e:2379]\n  local:\n"
    )
    assert "external etcd" in str(_error(init_user_data(material, cluster=cluster)))


def test_path_outside_the_node(material: Material) -> None:
    extra = [File("/etc/../../escape", "x")]
    assert "must not contain `..`" in str(_error(init_user_data(material, extra=extra)))


def test_unknown_encoding(material: Material) -> None:
    extra = [File("/a", "x", encoding="rot13")]
    assert "unknown encoding 'rot13'" in str(_error(init_user_data(material, extra=extra)))


def test_bad_base64_content(material: Material) -> None:
    extra = [File("/a", "!!!", encoding="gzip+base64")]
    assert "write_files /a: content is not valid" in str(
        _error(init_user_data(material, extra=extra))
    )


# -- bad certificate authorities ----------------------------------------------------------


def _without(material: Material, path: str) -> list[File]:
    return [f for f in ca_files(material) if f.path != path]


def _replaced(material: Material, path: str, content: str) -> list[File]:
    return [
        File(f.path, content, f.permissions) if f.path == path else f for f in ca_files(material)
    ]


@pytest.mark.parametrize(
    ("path", "secret_name"),
    [
        ("/etc/kubernetes/pki/ca.crt", "<cluster>-ca"),
        ("/etc/kubernetes/pki/etcd/ca.key", "<cluster>-etcd"),
        ("/etc/kubernetes/pki/sa.pub", "<cluster>-sa"),
    ],
)
def test_missing_authority(material: Material, path: str, secret_name: str) -> None:
    message = str(_error(init_user_data(material, files=_without(material, path))))
    assert f"write_files has no {path}" in message and f"the {secret_name} Secret" in message


def test_front_proxy_ca_optional_on_init_required_on_join(material: Material) -> None:
    files = [f for f in ca_files(material) if "front-proxy" not in f.path]
    assert _parse(init_user_data(material, files=files)).authorities.front_proxy_ca is None
    message = str(_error(join_user_data(material, files=files)))
    assert "front-proxy-ca.crt" in message and "<cluster>-proxy" in message


def test_key_of_another_ca(material: Material) -> None:
    files = _replaced(material, "/etc/kubernetes/pki/ca.key", material.etcd_ca.key_pem.decode())
    message = str(_error(init_user_data(material, files=files)))
    assert "cluster CA (/etc/kubernetes/pki/ca.crt and /etc/kubernetes/pki/ca.key)" in message
    assert "does not belong to the certificate" in message


def test_certificate_not_pem(material: Material) -> None:
    files = _replaced(material, "/etc/kubernetes/pki/etcd/ca.crt", "garbage\n")
    message = str(_error(init_user_data(material, files=files)))
    assert "etcd CA (/etc/kubernetes/pki/etcd/ca.crt" in message and "not PEM" in message


def test_certificate_that_is_not_a_ca(material: Material) -> None:
    leaf = certs.issue_certificate(material.ca, common_name="leaf", algorithm="ecdsa-p256")
    files = [
        File(f.path, leaf.cert_pem.decode(), f.permissions)
        if f.path.endswith("front-proxy-ca.crt")
        else File(f.path, leaf.key_pem.decode(), f.permissions)
        if f.path.endswith("front-proxy-ca.key")
        else f
        for f in ca_files(material)
    ]
    assert "is not a CA certificate" in str(_error(init_user_data(material, files=files)))


def test_service_account_halves_differ(material: Material) -> None:
    other, _ = certs.new_service_account_key("ecdsa-p256")
    files = _replaced(material, "/etc/kubernetes/pki/sa.pub", other.decode())
    message = str(_error(init_user_data(material, files=files)))
    assert "sa.pub is not the public half of /etc/kubernetes/pki/sa.key" in message


# -- bad join configuration ---------------------------------------------------------------


def test_worker_join_is_refused(material: Material) -> None:
    join = join_configuration(material).replace("controlPlane:\n  localAPIEndpoint: {}\n", "")
    assert "join as a worker node" in str(_error(join_user_data(material, join=join)))


def test_join_without_join_configuration(material: Material) -> None:
    user_data = join_user_data(material, join="apiVersion: v1\nkind: KubeletConfiguration\n")
    assert "no JoinConfiguration" in str(_error(user_data))


def test_bad_token(material: Material) -> None:
    join = join_configuration(material, token="not-a-token")
    assert "not a bootstrap token" in str(_error(join_user_data(material, join=join)))


def test_no_pin_and_no_skip(material: Material) -> None:
    join = join_configuration(material)
    join = join.replace(f"    caCertHashes:\n    - {ca_cert_hash(material.ca.certificate)}\n", "")
    assert "neither caCertHashes nor unsafeSkipCAVerification" in str(
        _error(join_user_data(material, join=join))
    )
    skipped = join.replace("    token:", "    unsafeSkipCAVerification: true\n    token:")
    assert _parse(join_user_data(material, join=skipped)).discovery is not None


def test_pin_of_another_ca(material: Material) -> None:
    other = certs.new_certificate_authority("other", algorithm="ecdsa-p256")
    join = join_configuration(material).replace(
        ca_cert_hash(material.ca.certificate), ca_cert_hash(other.certificate)
    )
    assert "matches none of" in str(_error(join_user_data(material, join=join)))


def test_file_discovery_is_refused(material: Material) -> None:
    join = join_configuration(material).replace(
        "discovery:\n", "discovery:\n  file:\n    kubeConfigPath: /etc/kubernetes/discovery.conf\n"
    )
    assert "file discovery is not supported" in str(_error(join_user_data(material, join=join)))
