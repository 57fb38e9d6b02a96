"""Pure crypto for kcp: keys, CAs, issued certificates, PEM, kubeconfig documents and
the data of Cluster API's certificate Secrets. Needs no cluster and imports nothing
else of kcp. Key material never appears in an error message or a repr.
"""

from kcp.certs.authority import (
    CA_VALIDITY,
    CLOCK_SKEW,
    USAGES,
    Usage,
    issue_certificate,
    new_certificate_authority,
)
from kcp.certs.errors import CertificateError, KubeconfigError
from kcp.certs.keypair import KeyPair, check_validity, is_ca, load_key_pair, verify_signed_by
from kcp.certs.keys import (
    DEFAULT_KEY_ALGORITHM,
    KEY_ALGORITHMS,
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    generate_private_key,
    public_keys_equal,
)
from kcp.certs.kubeconfig import Kubeconfig, build_kubeconfig, parse_kubeconfig
from kcp.certs.pem import (
    decode_certificate,
    decode_certificates,
    decode_private_key,
    decode_public_key,
    encode_certificate,
    encode_private_key,
    encode_public_key,
    fingerprint,
)
from kcp.certs.secrets import (
    CLUSTER_SECRET_TYPE,
    KUBECONFIG_KEY,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    SecretPurpose,
    decode_secret_data,
    key_pair_from_secret_data,
    key_pair_to_secret_data,
    kubeconfig_from_secret_data,
    kubeconfig_secret_data,
    new_service_account_key,
    secret_name,
    service_account_key_from_secret_data,
    service_account_key_to_secret_data,
)
from kcp.certs.tls import client_tls_context, load_cert_chain_from_memory

__all__ = [
    "CA_VALIDITY",
    "CLOCK_SKEW",
    "CLUSTER_SECRET_TYPE",
    "DEFAULT_KEY_ALGORITHM",
    "KEY_ALGORITHMS",
    "KUBECONFIG_KEY",
    "TLS_CERT_KEY",
    "TLS_KEY_KEY",
    "USAGES",
    "CertificateError",
    "KeyAlgorithm",
    "KeyPair",
    "Kubeconfig",
    "KubeconfigError",
    "PrivateKey",
    "PublicKey",
    "SecretPurpose",
    "Usage",
    "build_kubeconfig",
    "check_validity",
    "client_tls_context",
    "decode_certificate",
    "decode_certificates",
    "decode_private_key",
    "decode_public_key",
    "decode_secret_data",
    "encode_certificate",
    "encode_private_key",
    "encode_public_key",
    "fingerprint",
    "generate_private_key",
    "is_ca",
    "issue_certificate",
    "key_pair_from_secret_data",
    "key_pair_to_secret_data",
    "kubeconfig_from_secret_data",
    "kubeconfig_secret_data",
    "load_cert_chain_from_memory",
    "load_key_pair",
    "new_certificate_authority",
    "new_service_account_key",
    "parse_kubeconfig",
    "public_keys_equal",
    "secret_name",
    "service_account_key_from_secret_data",
    "service_account_key_to_secret_data",
    "verify_signed_by",
]
