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
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=30)


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
    service_account_key: Path
    service_account_pub: Path
    clients: dict[str, KeyPair]


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    # Created 0600, never readable by others even for a moment.
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    is_ca: bool = False,
    server_names: list[str] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
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
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> KeyPair:
    pair = KeyPair(cert=folder / f"{stem}.crt", key=folder / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
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
    return ClusterPKI(ca, apiserver, etcd, etcd_client, sa_key_path, sa_pub_path, client_pairs)
