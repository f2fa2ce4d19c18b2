"""How the development cluster sets up Kueue: its configuration, its CRDs'
conversion webhooks, its roles, and the webhook credentials its certificate
rotator keeps instead of replacing."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vidop_devcluster import kueue, pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_webhook_pair_has_the_shape_kueues_rotator_keeps(tmp_path: Path) -> None:
    issued = pki.generate_kueue_webhook(tmp_path, kueue.WEBHOOK_SERVICE_DNS_NAME)

    ca, serving = _load(issued.ca.cert), _load(issued.serving.cert)
    # The rotator parses the CA key as PKCS#1 RSA and checks the CA against its name.
    assert issued.ca.key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_names = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ca_names.get_values_for_type(x509.DNSName) == [pki.KUEUE_CA_NAME]
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [kueue.WEBHOOK_SERVICE_DNS_NAME]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # It replaces anything that expires within 90 days.
    in_91_days = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=91)
    assert ca.not_valid_after_utc > in_91_days and serving.not_valid_after_utc > in_91_days
    for key in (issued.ca.key, issued.serving.key):
        assert key.stat().st_mode & 0o777 == 0o600


def test_a_client_added_later_is_signed_by_the_clusters_ca(tmp_path: Path) -> None:
    issued = pki.generate(tmp_path, {})

    pair = pki.add_client(tmp_path, "kueue", "vidop-kueue-manager", None)

    cert = _load(pair.cert)
    cert.verify_directly_issued_by(_load(issued.ca.cert))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "vidop-kueue-manager"
    )
    assert pair.key.stat().st_mode & 0o777 == 0o600


def test_configuration_admits_only_labelled_jobs_on_loopback(tmp_path: Path) -> None:
    config = kueue.configuration(
        health_port=1001, metrics_port=1002, webhook_port=1003, cert_dir=tmp_path
    )

    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert config["manageJobsWithoutQueueName"] is False
    assert config["integrations"] == {"frameworks": ["batch/job"]}
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["health"]["healthProbeBindAddress"] == "127.0.0.1:1001"
    assert config["metrics"]["bindAddress"] == "127.0.0.1:1002"
    assert config["webhook"] == {"host": "127.0.0.1", "port": 1003, "certDir": str(tmp_path)}
    assert config["featureGates"] == {"VisibilityOnDemand": False}


def _crd(folder: Path, name: str) -> None:
    plural, group = name.split(".", 1)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {"group": group, "names": {"plural": plural}, "versions": []},
    }
    (folder / f"{group}_{plural}.yaml").write_text(yaml.safe_dump(crd))


def test_converted_crds_call_the_webhook_server_on_loopback(tmp_path: Path) -> None:
    for name in (*kueue.CONVERTED_CRDS, "resourceflavors.kueue.x-k8s.io"):
        _crd(tmp_path, name)

    crds = {c["metadata"]["name"]: c for c in kueue.crds(tmp_path, webhook_port=1003, ca_pem=b"CA")}

    for name in kueue.CONVERTED_CRDS:
        conversion = crds[name]["spec"]["conversion"]
        assert conversion["strategy"] == "Webhook"
        config = conversion["webhook"]["clientConfig"]
        assert config["url"] == "https://127.0.0.1:1003/convert"
        assert base64.b64decode(config["caBundle"]) == b"CA"
    assert "conversion" not in crds["resourceflavors.kueue.x-k8s.io"]["spec"]


def test_a_crd_folder_without_a_converted_crd_is_refused(tmp_path: Path) -> None:
    _crd(tmp_path, kueue.CONVERTED_CRDS[0])

    with pytest.raises(ValueError, match="lacks the CRDs"):
        kueue.crds(tmp_path, webhook_port=1003, ca_pem=b"CA")


def test_kueues_own_roles_are_bound_to_its_user(tmp_path: Path) -> None:
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    for file, kind, namespace in (
        ("role.yaml", "ClusterRole", None),
        ("metrics_auth_role.yaml", "ClusterRole", None),
        ("manager_secrets_role.yaml", "Role", "system"),
    ):
        metadata = {"name": file.removesuffix(".yaml").replace("_", "-")}
        if namespace:
            metadata["namespace"] = namespace
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata}
        (tmp_path / file).write_text(yaml.safe_dump({**role, "rules": [rule]}))

    objects = kueue.rbac(tmp_path, "vidop-kueue-manager")

    bindings = [o for o in objects if o["kind"].endswith("Binding")]
    assert sorted(b["kind"] for b in bindings) == [
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "RoleBinding",
    ]
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o not in bindings}
    for binding in bindings:
        assert binding["subjects"] == [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "vidop-kueue-manager"}
        ]
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        assert role["rules"] == [rule]
        assert role["metadata"].get("namespace") == binding["metadata"].get("namespace")
    (secrets_role,) = [o for o in objects if o["kind"] == "Role"]
    assert secrets_role["metadata"]["namespace"] == kueue.NAMESPACE
