"""What the development cluster's Kueue is made of, as plain manifests.

Pure functions (no API calls): :meth:`DevCluster.start_kueue
<vidop_devcluster.cluster.DevCluster.start_kueue>` applies what they return
and starts Kueue's manager with :func:`configuration`; the unit tests check
them without a cluster. The CRDs and RBAC roles are Kueue's own, copied by
``hack/tools.sh`` from the module the manager was built from (the
``kueue-manifests`` folder beside the binaries).

How Kueue runs here, and why:

- Only the ``batch/job`` integration, and only Jobs that carry the queue-name
  label (``manageJobsWithoutQueueName: false``): the operator creates its stage
  Jobs suspended and labelled, so Kueue's mutating webhook for Jobs is not
  needed, and no webhook configuration is registered with the API server.
- Kueue's manager still starts its webhook server and its certificate rotator
  (with ``internalCertManagement`` off it would read a fixed
  ``/etc/kueue/metrics/certs``). The rotator keeps a CA and serving pair it
  finds valid in its Secret, so the cluster gives it one
  (:func:`vidop_devcluster.pki.generate_kueue_webhook`) and puts the same files
  in the webhook server's certificate folder, as a mounted Secret would be in a
  pod. The rotator then injects that CA into the CRDs' conversion webhooks,
  which point at the webhook server on loopback: v1beta1 requests really are
  converted by Kueue.
- The visibility API server (``VisibilityOnDemand``) is off: it writes its
  certificates to a fixed ``/visibility`` and needs an APIService.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "kueue-system"
"""Where Kueue keeps its webhook Secret (its ``namespace`` setting)."""
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_SECRET = "kueue-webhook-server-cert"
WEBHOOK_SERVICE_DNS_NAME = f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc"
"""The name the certificate rotator checks the serving certificate against."""
CONVERTED_CRDS = (
    "localqueues.kueue.x-k8s.io",
    "clusterqueues.kueue.x-k8s.io",
    "workloads.kueue.x-k8s.io",
    "cohorts.kueue.x-k8s.io",
    "multikueueclusters.kueue.x-k8s.io",
)
"""The CRDs whose conversion webhook the certificate rotator injects its CA
into; it is not ready until every one has a conversion webhook."""
_ROLE_PREFIX = "vidop-dev:kueue-"


def configuration(
    *, health_port: int, metrics_port: int, webhook_port: int, cert_dir: Path
) -> dict[str, Any]:
    """Kueue's ``Configuration`` for one manager on loopback."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": WEBHOOK_SECRET,
        },
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
    }


def crds(crd_dir: Path, *, webhook_port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """Kueue's CRDs from ``crd_dir``, those in :data:`CONVERTED_CRDS` with a
    conversion webhook at the webhook server on loopback, trusted through
    ``ca_pem``."""
    found = [yaml.safe_load(path.read_text()) for path in sorted(crd_dir.glob("*.yaml"))]
    for crd in found:
        if crd["metadata"]["name"] in CONVERTED_CRDS:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{webhook_port}/convert",
                        "caBundle": base64.b64encode(ca_pem).decode(),
                    },
                    "conversionReviewVersions": ["v1"],
                },
            }
    missing = set(CONVERTED_CRDS) - {crd["metadata"]["name"] for crd in found}
    if missing:
        raise ValueError(f"{crd_dir} lacks the CRDs {sorted(missing)}")
    return found


def rbac(rbac_dir: Path, user: str) -> list[dict[str, Any]]:
    """Kueue's own roles for its manager (the generated ClusterRole, the
    metrics authentication ClusterRole, the Role on its Secrets), renamed into
    this cluster's namespace and bound to ``user``."""
    objects: list[dict[str, Any]] = []
    for file, scope in (
        ("role.yaml", "cluster"),
        ("metrics_auth_role.yaml", "cluster"),
        ("manager_secrets_role.yaml", "namespace"),
    ):
        role = yaml.safe_load((rbac_dir / file).read_text())
        name = _ROLE_PREFIX + role["metadata"]["name"]
        subject = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
        if scope == "cluster":
            role["metadata"] = {"name": name}
            binding_kind = "ClusterRoleBinding"
            metadata: dict[str, Any] = {"name": name}
        else:
            role["metadata"] = {"name": name, "namespace": NAMESPACE}
            binding_kind = "RoleBinding"
            metadata = {"name": name, "namespace": NAMESPACE}
        objects += [
            role,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": binding_kind,
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": role["kind"],
                    "name": name,
                },
                "subjects": [subject],
            },
        ]
    return objects


def webhook_secret(*, ca_cert: bytes, ca_key: bytes, cert: bytes, key: bytes) -> dict[str, Any]:
    """The Secret the certificate rotator reads its CA and serving pair from."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": WEBHOOK_SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {
            name: base64.b64encode(value).decode()
            for name, value in (
                ("ca.crt", ca_cert),
                ("ca.key", ca_key),
                ("tls.crt", cert),
                ("tls.key", key),
            )
        },
    }
