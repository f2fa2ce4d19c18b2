"""A tenant on a shared cluster, tried as one: a ServiceAccount whose RBAC
allows VideoJobs only (no Jobs, pods or Secrets), on the real control plane,
against the operator's default override policy (the chart's). It must not run
an image or command of its choosing, reach the S3 credentials, write into
another VideoJob's artifacts, reach other nodes, or set pod annotations that
other controllers act on; each route is refused in words that name the field."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import Cluster, Operator, running_operator, wait_until

pytestmark = pytest.mark.cluster

CREDENTIALS_SECRET = "vid-operator-s3"
RUN_TIME = "kwok.vidop.io/run-time"


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    configuration = {"s3": {"credentialsSecret": CREDENTIALS_SECRET, "bucket": "videos"}}
    with running_operator(cluster, tmp_path_factory.mktemp("operator"), configuration) as running:
        yield running


class Tenant:
    """kubectl as the tenant's ServiceAccount."""

    def __init__(self, cluster: Cluster, namespace: str, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.cluster.bin_dir / "kubectl"),
                f"--kubeconfig={self.kubeconfig}",
                "-n",
                self.namespace,
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def apply(self, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def can(self, verb: str, resource: str, *flags: str) -> bool:
        return self.kubectl("auth", "can-i", verb, resource, *flags).stdout.strip() == "yes"


@pytest.fixture
def tenant(cluster: Cluster, namespace: str, tmp_path: Path, operator: Operator) -> Tenant:
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    client.CoreV1Api(cluster.api).create_namespaced_service_account(
        namespace, {"metadata": {"name": "tenant"}}
    )
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "videojob-author"},
            "rules": [
                {
                    "apiGroups": ["vidop.io"],
                    "resources": ["videojobs"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                {
                    "apiGroups": ["vidop.io"],
                    "resources": ["videopipelines"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "tenant-authors"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "videojob-author",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
        },
    )
    # The platform's pipeline in the tenant's namespace.
    cluster.apply(
        {
            "apiVersion": "vidop.io/v1alpha1",
            "kind": "VideoPipeline",
            "metadata": {"name": "platform"},
            "spec": {
                "stages": [
                    {
                        "name": "render",
                        "image": "platform/render:1",
                        "gpus": 1,
                        "resources": {"limits": {"memory": "8Gi", "cpu": "2"}},
                        "env": [{"name": "MODEL_ENDPOINT", "value": "https://models.internal"}],
                    }
                ]
            },
        },
        namespace,
    )
    kubeconfig = cluster.kubeconfig_of(namespace, "tenant", tmp_path / "tenant.kubeconfig")
    return Tenant(cluster, namespace, kubeconfig)


def _videojob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {"prompt": "a tenant's video", **spec},
    }


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, "videojobs", name
    )
    status: dict[str, Any] = found.get("status") or {}
    return status


def _failure(cluster: Cluster, namespace: str, name: str) -> str:
    """The Failed condition's message once the VideoJob has failed."""
    wait_until(
        f"VideoJob {name} to fail",
        lambda: _status(cluster, namespace, name).get("phase") == "Failed",
        timeout=60,
    )
    condition = next(
        c for c in _status(cluster, namespace, name)["conditions"] if c["type"] == "Failed"
    )
    assert condition["reason"] == "InvalidSpec"
    return str(condition["message"])


def _jobs(cluster: Cluster, namespace: str) -> list[Any]:
    items: list[Any] = client.BatchV1Api(cluster.api).list_namespaced_job(namespace).items
    return items


def test_the_tenant_may_author_videojobs_and_nothing_that_runs_code(tenant: Tenant) -> None:
    assert tenant.can("create", "videojobs.vidop.io")
    for verb, resource in (
        ("create", "jobs.batch"),
        ("create", "pods"),
        ("get", "secrets"),
        ("create", "videopipelines.vidop.io"),
    ):
        assert not tenant.can(verb, resource), (verb, resource)
    assert not tenant.can("patch", "videojobs.vidop.io", "--subresource=status")


# Routes the API server accepts and the override policy refuses: the stage
# override, and the words that must open the Failed condition's message.
REFUSED_BY_POLICY: dict[str, tuple[dict[str, Any], str]] = {
    "image": (
        {"video_gen": {"image": "docker.io/attacker/cryptominer:latest"}},
        "spec.stages.video_gen.image: the override policy does not let",
    ),
    "command": (
        {"video_gen": {"command": ["sh", "-c", "cat /proc/self/environ > /dev/termination-log"]}},
        "spec.stages.video_gen.command: the override policy does not let",
    ),
    "args": (
        {"script_gen": {"args": ["--print-secrets"]}},
        "spec.stages.script_gen.args: the override policy does not let",
    ),
    "tolerations": (
        {"video_gen": {"tolerations": [{"operator": "Exists"}]}},
        "spec.stages.video_gen.tolerations: the override policy does not let",
    ),
    "node-selector": (
        {"video_gen": {"nodeSelector": {"team": "b-reserved"}}},
        "spec.stages.video_gen.nodeSelector: the override policy does not let",
    ),
    "service-account": (
        {"video_gen": {"serviceAccountName": "default"}},
        "spec.stages.video_gen.serviceAccountName: the override policy does not let",
    ),
    "vault-injector": (
        {"voice_gen": {"podAnnotations": {"vault.hashicorp.com/agent-inject": "true"}}},
        "spec.stages.voice_gen.podAnnotations: the override policy does not let a VideoJob set"
        " the pod annotation vault.hashicorp.com/agent-inject",
    ),
    "apparmor-unconfined": (
        {
            "voice_gen": {
                "podAnnotations": {
                    "container.apparmor.security.beta.kubernetes.io/stage": "unconfined"
                }
            }
        },
        "spec.stages.voice_gen.podAnnotations: the override policy does not let",
    ),
    "more-gpus": ({"video_gen": {"gpus": 8}}, "spec.stages.video_gen.gpus: 8 is more than"),
    "more-memory": (
        {"compositing": {"resources": {"limits": {"memory": "512Gi"}}}},
        "spec.stages.compositing.resources.limits.memory: 512Gi is more than",
    ),
}


def test_every_route_to_code_nodes_or_injectors_fails_naming_the_field(
    cluster: Cluster, namespace: str, tenant: Tenant
) -> None:
    for case, (stages, _) in REFUSED_BY_POLICY.items():
        applied = tenant.apply(_videojob(case, stages=stages))
        assert applied.returncode == 0, (case, applied.stderr)
    applied = tenant.apply(_videojob("other-bucket", output={"bucket": "team-b-private"}))
    assert applied.returncode == 0, applied.stderr
    applied = tenant.apply(
        _videojob("pipeline-image", pipeline="platform", stages={"render": {"image": "evil:1"}})
    )
    assert applied.returncode == 0, applied.stderr
    redirect = {"render": {"env": [{"name": "MODEL_ENDPOINT", "value": "https://attacker"}]}}
    applied = tenant.apply(_videojob("pipeline-env", pipeline="platform", stages=redirect))
    assert applied.returncode == 0, applied.stderr

    for case, (_, words) in REFUSED_BY_POLICY.items():
        assert _failure(cluster, namespace, case).startswith(words), case
    assert _failure(cluster, namespace, "other-bucket").startswith(
        "spec.output.bucket: team-b-private is not a bucket this operator writes to"
    )
    assert _failure(cluster, namespace, "pipeline-image").startswith(
        "spec.stages.render.image: the override policy does not let a VideoJob on"
        " VideoPipeline platform set image"
    )
    assert _failure(cluster, namespace, "pipeline-env").startswith(
        "spec.stages.render.env: MODEL_ENDPOINT is set by VideoPipeline platform"
    )
    assert _jobs(cluster, namespace) == []  # not one stage ran


def _env(stage: str, name: str, value: str) -> dict[str, Any]:
    return {"stages": {stage: {"env": [{"name": name, "value": value}]}}}


RESERVED = "this variable is reserved for the operator and the platform"
# Spec fields the API server refuses, and words the refusal must contain.
REFUSED_AT_APPLY: dict[str, tuple[dict[str, Any], str]] = {
    "contract-prefix": (_env("script_gen", "VIDOP_ARTIFACT_PREFIX", "s3://videos/x/"), RESERVED),
    "s3-endpoint": (_env("script_gen", "AWS_ENDPOINT_URL", "http://attacker"), RESERVED),
    "every-gpu": (_env("video_gen", "NVIDIA_VISIBLE_DEVICES", "all"), RESERVED),
    "preload": (_env("voice_gen", "LD_PRELOAD", "/scratch/x.so"), RESERVED),
    "proxy": (_env("voice_gen", "https_proxy", "http://attacker:3128"), RESERVED),
    "graph": (
        {"stages": {"compositing": {"dependsOn": []}}},
        'unknown field "spec.stages.compositing.dependsOn"',
    ),
    "prefix-climb": (
        {"output": {"prefix": "videojobs/../../other-bucket"}},
        "prefix may not have . or .. segments",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_AT_APPLY))
def test_reserved_variables_the_graph_and_climbing_prefixes_are_refused_at_apply_time(
    cluster: Cluster, namespace: str, tenant: Tenant, case: str
) -> None:
    spec, words = REFUSED_AT_APPLY[case]

    refused = tenant.apply(_videojob(case, **spec))

    assert refused.returncode != 0 and words in refused.stderr


def test_a_tenants_values_cannot_expand_into_the_credentials(
    cluster: Cluster, namespace: str, tenant: Tenant
) -> None:
    stages = {
        stage: {"podAnnotations": {RUN_TIME: "0s"}}
        for stage in ("script_gen", "voice_gen", "video_gen", "compositing")
    }
    stages["script_gen"]["env"] = [{"name": "STYLE", "value": "$(AWS_SECRET_ACCESS_KEY)"}]
    applied = tenant.apply(
        _videojob("expansion", prompt="say $(AWS_SECRET_ACCESS_KEY)", stages=stages)
    )
    assert applied.returncode == 0, applied.stderr

    wait_until("script_gen's Job", lambda: _jobs(cluster, namespace))
    (job,) = _jobs(cluster, namespace)
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    # $$ is Kubernetes' literal $: the stage sees the text, never the key.
    assert env["STYLE"].value == "$$(AWS_SECRET_ACCESS_KEY)"
    assert "say $$(AWS_SECRET_ACCESS_KEY)" in env["VIDOP_PARAMS"].value
    # The credentials themselves are only ever a reference to the Secret.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name].value is None
        assert env[name].value_from.secret_key_ref.name == CREDENTIALS_SECRET


def test_a_tenants_prefix_stays_inside_its_own_namespace_and_job(
    cluster: Cluster, namespace: str, tenant: Tenant
) -> None:
    applied = tenant.apply(
        _videojob("prefixed", output={"prefix": "videojobs/other-team/victim/0000"})
    )
    assert applied.returncode == 0, applied.stderr

    wait_until("script_gen's Job", lambda: _jobs(cluster, namespace))
    (job,) = _jobs(cluster, namespace)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    uid = job.metadata.owner_references[0].uid
    assert env["VIDOP_ARTIFACT_PREFIX"].endswith(f"/{namespace}/prefixed/{uid}/")


def test_a_tenant_cannot_write_the_status_that_holds_its_pipeline(
    cluster: Cluster, namespace: str, tenant: Tenant
) -> None:
    assert tenant.apply(_videojob("forger", pipeline="platform")).returncode == 0
    wait_until("the pipeline copy", lambda: "pipeline" in _status(cluster, namespace, "forger"))

    forged = tenant.kubectl(
        "patch",
        "videojob",
        "forger",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {"status": {"pipeline": {"spec": {"stages": [{"name": "render", "image": "x"}]}}}}
        ),
    )

    assert forged.returncode != 0 and "Forbidden" in forged.stderr


def test_what_the_policy_allows_runs(cluster: Cluster, namespace: str, tenant: Tenant) -> None:
    stages = {
        "render": {
            "podAnnotations": {RUN_TIME: "100ms"},
            "resources": {"limits": {"memory": "4Gi"}},
            "backoffLimit": 1,
            "env": [{"name": "STYLE", "value": "noir"}],
        }
    }
    applied = tenant.apply(_videojob("allowed", pipeline="platform", stages=stages))
    assert applied.returncode == 0, applied.stderr

    wait_until(
        "the allowed VideoJob to succeed",
        lambda: _status(cluster, namespace, "allowed").get("phase") == "Succeeded",
    )
    (job,) = _jobs(cluster, namespace)
    assert job.spec.backoff_limit == 1
    assert job.spec.template.spec.containers[0].resources.limits["memory"] == "4Gi"
