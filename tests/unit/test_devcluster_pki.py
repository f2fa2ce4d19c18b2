"""The development cluster's credentials: who each certificate says it is."""

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vidop_devcluster import pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_certificate_is_signed_by_the_ca_and_keys_are_private(tmp_path: Path) -> None:
    issued = pki.generate(
        tmp_path,
        {"admin": ("vidop-admin", "system:masters"), "sched": ("system:kube-scheduler", None)},
    )

    ca = _load(issued.ca.cert)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    for pair in [issued.apiserver, *issued.clients.values()]:
        cert = _load(pair.cert)
        cert.verify_directly_issued_by(ca)
        assert pair.key.stat().st_mode & 0o777 == 0o600
    assert issued.service_account_key.stat().st_mode & 0o777 == 0o600


def test_client_certificates_carry_user_and_group(tmp_path: Path) -> None:
    issued = pki.generate(
        tmp_path,
        {"admin": ("vidop-admin", "system:masters"), "sched": ("system:kube-scheduler", None)},
    )

    admin = _load(issued.clients["admin"].cert).subject
    assert admin.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vidop-admin"
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    sched = _load(issued.clients["sched"].cert)
    assert not sched.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    usage = sched.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_apiserver_certificate_names_loopback_and_the_service(tmp_path: Path) -> None:
    issued = pki.generate(tmp_path, {})

    sans = (
        _load(issued.apiserver.cert)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)


def test_the_api_server_calls_kubelets_as_its_own_user_not_a_master(tmp_path: Path) -> None:
    issued = pki.generate(tmp_path, {})

    subject = _load(issued.kubelet_client.cert).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pki.KUBELET_CLIENT_USER
    assert not subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)


def test_a_kubelet_gets_a_node_identity_to_serve_and_to_call_with(tmp_path: Path) -> None:
    issued = pki.generate(tmp_path, {})
    identity = ("system:node:vidop-node", "system:nodes")

    calling = _load(pki.add_client(tmp_path, "kubelet", *identity).cert)
    serving = _load(pki.add_serving(tmp_path, "kubelet-serving", *identity, ["10.1.2.1", "n"]).cert)

    ca = _load(issued.ca.cert)
    for cert in (calling, serving):
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
            "system:nodes"
        )
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["n"]
