"""Certificates and keys for the development cluster.

Called by :mod:`vidop_devcluster.cluster` when it lays out a fresh
cluster folder. Everything is generated anew per cluster (nothing is committed
or reused), with ECDSA P-256 keys because they are fast to make.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=30)
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
"""The user the API server calls kubelets as."""
# Kueue's certificate rotator replaces a pair that expires within 90 days.
_KUEUE_WEBHOOK_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """PEM files of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """Every credential the control plane's components are started with."""

    ca: KeyPair
    apiserver: KeyPair
    etcd: KeyPair
    """etcd's serving and peer pair."""
    etcd_client: KeyPair
    """The API server's client pair for etcd."""
    kubelet_client: KeyPair
    """The API server's client pair for kubelets (logs, exec)."""
    service_account_key: Path
    service_account_pub: Path
    clients: dict[str, KeyPair]


def _write_key(
    key: CertificateIssuerPrivateKeyTypes,
    path: Path,
    form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
) -> None:
    # Created 0600, never readable by others even for a moment.
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(
            key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
        )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _issue(
    subject: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: tuple[x509.Name, CertificateIssuerPrivateKeyTypes] | None,
    *,
    is_ca: bool = False,
    server_names: list[str] | None = None,
    client: bool = False,
    validity: datetime.timedelta = _VALIDITY,
) -> x509.Certificate:
    """A certificate for ``key``; ``server_names`` become its subject
    alternative names (and, unless it is a CA, make it a serving one)."""
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if server_names:
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names and not is_ca else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(
    folder: Path,
    stem: str,
    cert: x509.Certificate,
    key: CertificateIssuerPrivateKeyTypes,
    form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
) -> KeyPair:
    pair = KeyPair(cert=folder / f"{stem}.crt", key=folder / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key, form)
    return pair


def generate(folder: Path, clients: dict[str, tuple[str, str | None]]) -> ClusterPKI:
    """Write a CA, the API server's serving pair, the service-account signing
    key and one client pair per entry of ``clients`` (file stem → (user name,
    group)) into ``folder``."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("vid-operator-devcluster-ca")
    ca_cert = _issue(ca_name, ca_key, None, is_ca=True)
    ca = _write_pair(folder, "ca", ca_cert, ca_key)

    def signed_pair(stem: str, subject: x509.Name, **usage: Any) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        return _write_pair(folder, stem, _issue(subject, key, (ca_name, ca_key), **usage), key)

    apiserver = signed_pair(
        "apiserver",
        _name("kube-apiserver"),
        server_names=[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
    )
    # etcd's pair serves clients and authenticates it to its peers.
    etcd = signed_pair("etcd", _name("etcd"), server_names=["127.0.0.1", "localhost"], client=True)
    etcd_client = signed_pair(
        "apiserver-etcd-client", _name("kube-apiserver-etcd-client"), client=True
    )

    # The API server's identity towards kubelets (logs, exec): a user of its
    # own, which the cluster binds to system:kubelet-api-admin, as kubeadm does.
    kubelet_client = signed_pair(
        "apiserver-kubelet-client", _name(KUBELET_CLIENT_USER), client=True
    )

    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_key_path = folder / "service-account.key"
    _write_key(sa_key, sa_key_path)
    sa_pub_path = folder / "service-account.pub"
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    client_pairs = {
        stem: signed_pair(stem, _name(user, group), client=True)
        for stem, (user, group) in clients.items()
    }
    return ClusterPKI(
        ca, apiserver, etcd, etcd_client, kubelet_client, sa_key_path, sa_pub_path, client_pairs
    )


def add_client(folder: Path, stem: str, user: str, group: str | None) -> KeyPair:
    """One more client pair, signed by the CA that :func:`generate` wrote
    into ``folder`` (a component added to a running cluster)."""
    return _add_pair(folder, stem, _name(user, group), client=True)


def add_serving(folder: Path, stem: str, user: str, group: str | None, names: list[str]) -> KeyPair:
    """One more serving pair for ``names`` (a kubelet's: its subject is the
    node's identity, as a kubelet's serving certificate request would be)."""
    return _add_pair(folder, stem, _name(user, group), server_names=names)


def _add_pair(folder: Path, stem: str, subject: x509.Name, **usage: Any) -> KeyPair:
    ca_cert = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{folder / 'ca.key'} is not the EC key generate() writes")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(subject, key, (ca_cert.subject, ca_key), **usage)
    return _write_pair(folder, stem, cert, key)


@dataclass(frozen=True)
class WebhookPKI:
    """Kueue's webhook credentials: a CA of their own (never the cluster's)
    and the serving pair it signed."""

    ca: KeyPair
    serving: KeyPair


KUEUE_CA_NAME = "kueue-ca"
"""The name Kueue's certificate rotator checks its CA against."""


def generate_kueue_webhook(folder: Path, service_name: str) -> WebhookPKI:
    """A CA and a serving pair in the shape Kueue's certificate rotator keeps
    rather than replaces: an RSA CA (its key in PKCS#1) named
    :data:`KUEUE_CA_NAME`, a serving certificate for ``service_name`` (the
    in-cluster name the rotator checks) and for 127.0.0.1 (where the API
    server really reaches the webhook server), both valid for a year."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name(KUEUE_CA_NAME, "kueue")
    ca_cert = _issue(
        ca_name,
        ca_key,
        None,
        is_ca=True,
        server_names=[KUEUE_CA_NAME],
        validity=_KUEUE_WEBHOOK_VALIDITY,
    )
    ca = _write_pair(folder, "ca", ca_cert, ca_key, serialization.PrivateFormat.TraditionalOpenSSL)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = _issue(
        _name(service_name),
        serving_key,
        (ca_name, ca_key),
        server_names=[service_name, "127.0.0.1"],
        validity=_KUEUE_WEBHOOK_VALIDITY,
    )
    return WebhookPKI(ca, _write_pair(folder, "tls", serving_cert, serving_key))
