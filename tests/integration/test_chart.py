"""The Helm chart: values schema, rendered switches, server-side dry-run, and
least-privilege RBAC shown for real by running the operator with the chart's
ServiceAccount token and configuration."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack import chart_values
from kubernetes import client
from pydantic import BaseModel

from tests.support import CHART, Cluster, render_chart, wait_until
from vid_operator import config, contract
from vid_operator.api import crd

ROOT = Path(__file__).resolve().parents[2]


def _helm(
    bin_dir: Path, *args: str, check: bool = True, values: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """helm ``args``; ``values`` (if given) is a values file on its stdin (``-f -``)."""
    if values is not None:
        args = (*args, "--values", "-")
    result = subprocess.run(
        [str(bin_dir / "helm"), *args],
        input=None if values is None else yaml.safe_dump(values),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _apply_videojob(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.apply(
        {
            "apiVersion": "vidop.io/v1alpha1",
            "kind": "VideoJob",
            "metadata": {"name": name},
            "spec": spec,
        },
        namespace,
    )


def _kinds(documents: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return sorted((d["kind"], d["metadata"].get("namespace")) for d in documents)


def _config(documents: list[dict[str, Any]]) -> config.OperatorConfig:
    (configmap,) = [d for d in documents if d["kind"] == "ConfigMap"]
    return config.from_mapping(yaml.safe_load(configmap["data"]["config.yaml"]))


def _aggregated(role: dict[str, Any]) -> bool:
    """A ClusterRole the built-in edit, admin or view roles take in."""
    labels = role["metadata"].get("labels") or {}
    return any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels)


def _verbs(
    documents: list[dict[str, Any]], kind: str, group: str
) -> dict[str, dict[str, set[str]]]:
    """Per ``kind`` (ClusterRole or Role) object of the operator's, keyed by
    its namespace (or "" for a ClusterRole): the verbs its rules grant on each
    resource of ``group``. The tenants' aggregated ClusterRoles are left out."""
    granted: dict[str, dict[str, set[str]]] = {}
    for role in (d for d in documents if d["kind"] == kind and not _aggregated(d)):
        for rule in role["rules"]:
            if group in rule["apiGroups"] or "*" in rule["apiGroups"]:
                verbs = granted.setdefault(role["metadata"].get("namespace", ""), {})
                for resource in rule["resources"]:
                    verbs.setdefault(resource, set()).update(rule["verbs"])
    return granted


def test_lint_passes_and_a_typo_in_values_is_refused(cluster: Cluster) -> None:
    assert _helm(cluster.bin_dir, "lint", str(CHART)).returncode == 0

    typo = _helm(cluster.bin_dir, "template", "x", str(CHART), "--set", "imagee.tag=1", check=False)

    assert typo.returncode != 0
    assert "additional properties 'imagee' not allowed" in typo.stderr


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = next(
        line.split('"')[1]
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.startswith("version = ")
    )

    assert chart["version"] == chart["appVersion"] == package


def test_every_configuration_field_of_the_values_reaches_the_configuration_file(
    cluster: Cluster,
) -> None:
    """values.schema.json takes every field of these models (it is generated
    from them); the template must pass each one on, or a value helm accepts
    would be dropped."""
    (configmap,) = [d for d in render_chart(cluster.bin_dir) if d["kind"] == "ConfigMap"]
    rendered = yaml.safe_load(configmap["data"]["config.yaml"])

    def passed_on(key: str, section: dict[str, Any], model: type[BaseModel]) -> None:
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        assert set(section) == set(fields), key
        for name, field in fields.items():  # a section within (queueing.kueue)
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                passed_on(f"{key}.{name}", section[name], field.annotation)

    for key, model in chart_values.PASS_THROUGH.items():
        passed_on(key, rendered[key], model)


def test_notes_example_is_a_valid_videojob_and_name_the_outputs(
    cluster: Cluster, namespace: str
) -> None:
    installed = _helm(
        cluster.bin_dir,
        "install",
        "vidop",
        str(CHART),
        "--dry-run=client",
        "--namespace",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
    )
    notes = installed.stdout.split("NOTES:", 1)[1]
    example = re.search(r"kubectl apply -n (\S+) -f - <<EOF\n(.*?)\n\s*EOF", notes, re.DOTALL)
    assert example, notes
    crds = [d for d in render_chart(cluster.bin_dir) if d["kind"] == "CustomResourceDefinition"]
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": crds}, None, "--server-side")
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/videojobs.vidop.io", "--timeout=30s"
    )

    videojob = yaml.safe_load(textwrap.dedent(example[2]))
    applied = cluster.apply(videojob, example[1], "--dry-run=server", check=False)

    assert example[1] == namespace
    assert applied.returncode == 0, applied.stderr
    assert f"kubectl create secret generic vid-operator-s3 -n {namespace}" in notes
    assert f"kubectl wait vj/{videojob['metadata']['name']}" in notes
    assert "{.status.outputs.videoUri}" in notes
    assert "s3://vid-operator/videojobs/<namespace>/<name>/<uid>/" in notes


def test_operator_pod_values_reach_the_deployment(cluster: Cluster) -> None:
    values = {
        "priorityClassName": "system-cluster-critical",
        "podLabels": {"team": "video", "app.kubernetes.io/name": "not-the-selector"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "extraArgs": ["--verbose"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "logLevel": "warning",
        "logFormat": "console",
    }
    (deployment,) = [
        d for d in render_chart(cluster.bin_dir, values=values) if d["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    selector = deployment["spec"]["selector"]["matchLabels"]

    assert pod["metadata"]["labels"] == {**selector, "team": "video"}
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": selector}
    assert container["args"][-3:] == ["--log-level=warning", "--log-format=console", "--verbose"]
    assert container["env"][-1] == {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}


def test_crd_template_is_the_generated_one() -> None:
    template = (CHART / "templates" / "crd.yaml").read_text()

    assert template == crd.render_chart_template(), "run `make crds`"


def test_default_install_is_cluster_wide_with_the_built_in_gpu_placement(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir)

    assert ("ClusterRole", None) in _kinds(documents)
    assert not [d for d in documents if d["kind"] == "PriorityClass"]
    # The one Role: the leader election's, in the release's namespace.
    assert [d["metadata"]["namespace"] for d in documents if d["kind"] == "Role"] == [
        "vid-operator"
    ]
    configured = _config(documents)
    assert configured.watch_namespaces == []
    assert configured.gpu.node_selector == {"nvidia.com/gpu.present": "true"}
    assert configured.priority_classes == {"high": None, "default": None, "low": None}
    crds = {
        d["metadata"]["name"]: d["metadata"]["annotations"]
        for d in documents
        if d["kind"] == "CustomResourceDefinition"
    }
    assert crds == {
        "videojobs.vidop.io": {"helm.sh/resource-policy": "keep"},
        "videopipelines.vidop.io": {"helm.sh/resource-policy": "keep"},
    }


def test_default_configuration_has_the_secure_override_policy(cluster: Cluster) -> None:
    configured = _config(render_chart(cluster.bin_dir))

    policy = configured.override_policy
    assert set(policy.allowed_fields) == {
        "resources",
        "gpus",
        "backoffLimit",
        "activeDeadlineSeconds",
        "env",
    }
    for refused in ("image", "command", "args", "tolerations", "nodeSelector"):
        assert refused not in policy.allowed_fields
    assert "serviceAccountName" not in policy.allowed_fields
    assert policy.allowed_pod_annotations == []  # no annotation key at all
    assert policy.allowed_images == []
    assert configured.s3.allowed_buckets == []
    # The chart's defaults are the operator's built-in ones, not a second opinion.
    assert policy == config.OverridePolicy()
    assert configured.stage_defaults == config.StageDefaults()


def test_policy_and_stage_default_values_reach_the_operator_configuration(
    cluster: Cluster,
) -> None:
    values = {
        "overridePolicy": {
            "allowedFields": ["image", "resources"],
            "allowedImages": ["registry.example.com/models/"],
            "allowedPodAnnotations": ["example.com/", "sidecar.istio.io/inject"],
        },
        "s3": {"allowedBuckets": ["tenant-a-videos", "tenant-b.videos"]},
        "stageDefaults": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": None,  # no deadline
            "terminationGracePeriodSeconds": 120,
            "imagePullSecrets": [{"name": "registry-creds"}],
            "podLabels": {"team": "video"},
            "podAnnotations": {"example.com/cost-centre": "42"},
        },
        "stages": {
            "video_gen": {
                "maxGpus": 4,
                "maxResources": {"memory": "32Gi", "cpu": 8},
                "envFrom": [{"secretRef": {"name": "model-api"}}],
                "env": [
                    {
                        "name": "HF_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
                    }
                ],
                "volumes": [{"name": "weights", "persistentVolumeClaim": {"claimName": "w"}}],
                "volumeMounts": [{"name": "weights", "mountPath": "/models", "readOnly": True}],
                "serviceAccountName": "video-gen",
                "terminationGracePeriodSeconds": 300,
                "affinity": {"nodeAffinity": {}},
                "podLabels": {"stage": "video"},
                "imagePullSecrets": [{"name": "gpu-registry"}],
            }
        },
    }

    configured = _config(render_chart(cluster.bin_dir, values=values))

    policy = configured.override_policy
    assert policy.allowed_fields == ["image", "resources"]
    assert policy.allowed_images == ["registry.example.com/models/"]
    assert policy.allowed_pod_annotations == ["example.com/", "sidecar.istio.io/inject"]
    assert configured.s3.allowed_buckets == ["tenant-a-videos", "tenant-b.videos"]
    defaults = configured.stage_defaults
    assert (defaults.backoff_limit, defaults.active_deadline_seconds) == (1, None)
    assert defaults.termination_grace_period_seconds == 120
    assert [s.name for s in defaults.image_pull_secrets] == ["registry-creds"]
    assert defaults.pod_labels == {"team": "video"}
    assert defaults.pod_annotations == {"example.com/cost-centre": "42"}
    video = configured.stages["video_gen"]
    assert (video.max_gpus, video.max_resources) == (4, {"memory": "32Gi", "cpu": 8})
    assert video.env is not None and video.env[0].value_from is not None
    assert video.volume_mounts is not None and video.volume_mounts[0].mount_path == "/models"
    assert video.service_account_name == "video-gen"
    assert video.image == "ghcr.io/vid-operator/video-gen:0.1.0"  # built-in default kept

    # An empty list is no fields at all (not the default's five).
    nothing = _config(
        render_chart(cluster.bin_dir, values={"overridePolicy": {"allowedFields": []}})
    )
    assert nothing.override_policy.allowed_fields == []


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        (
            {"overridePolicy": {"allowedField": ["image"]}},
            "at '/overridePolicy': additional properties 'allowedField' not allowed",
        ),
        (
            {"overridePolicy": {"allowedFields": ["resources", "imagee"]}},
            "at '/overridePolicy/allowedFields/1': value must be one of",
        ),
        (
            {"overridePolicy": {"allowedFields": ["podAnnotations"]}},
            "at '/overridePolicy/allowedFields/0': value must be one of",
        ),
        (
            {"overridePolicy": {"allowedFields": None}},  # null removes the key
            "at '/overridePolicy': missing property 'allowedFields'",
        ),
        (
            {"stageDefaults": {"backofLimit": 1}},
            "at '/stageDefaults': additional properties 'backofLimit' not allowed",
        ),
        (
            {"s3": {"allowedBuckets": ["Not_A_Bucket"]}},
            "at '/s3/allowedBuckets/0': 'Not_A_Bucket' does not match pattern",
        ),
        (
            {"stages": {"video_gen": {"maxGpu": 2}}},
            "at '/stages/video_gen': additional properties 'maxGpu' not allowed",
        ),
        (
            {"stages": {"video_gen": {"resources": {"limits": {"memory": "-1Gi"}}}}},
            "at '/stages/video_gen/resources/limits/memory': '-1Gi' does not match pattern",
        ),
        (
            {"queueing": {"maxRuning": 4}},
            "at '/queueing': additional properties 'maxRuning' not allowed",
        ),
        (
            {"queueing": {"maxRunningPerNamespace": 0}},
            "at '/queueing/maxRunningPerNamespace': minimum: got 0, want 1",
        ),
        (
            {"queueing": {"kueue": {"enable": True}}},
            "at '/queueing/kueue': additional properties 'enable' not allowed",
        ),
        (
            {"queueing": {"kueue": {"enabled": None}}},
            "at '/queueing/kueue': missing property 'enabled'",
        ),
        (
            {"queueing": {"kueue": {"workloadPriorityClasses": {"hgih": "videos-high"}}}},
            "at '/queueing/kueue/workloadPriorityClasses': additional properties 'hgih'",
        ),
        (
            {"queueing": {"kueue": {"workloadPriorityClasses": {"high": "Videos_High"}}}},
            "at '/queueing/kueue/workloadPriorityClasses/high': 'Videos_High' does not match",
        ),
        (
            {"queueing": {"kueue": {"namespaceQueueNames": {"Team_A": "gpu"}}}},
            "invalid propertyName 'Team_A'",
        ),
    ],
)
def test_override_policy_stage_and_queueing_typos_are_refused_by_the_schema(
    cluster: Cluster, values: dict[str, Any], refusal: str
) -> None:
    rendered = _helm(cluster.bin_dir, "template", "x", str(CHART), values=values, check=False)
    linted = _helm(cluster.bin_dir, "lint", "--strict", str(CHART), values=values, check=False)

    assert rendered.returncode != 0 and refusal in rendered.stderr, rendered.stderr
    assert linted.returncode != 0 and refusal in linted.stdout + linted.stderr


@pytest.mark.parametrize(
    ("sets", "kind", "where"),
    [
        ((), "ClusterRole", [""]),
        (("watchNamespaces={media,batch-a}",), "Role", ["media", "batch-a"]),
    ],
)
def test_rbac_reads_videopipelines_and_writes_only_their_status(
    cluster: Cluster, sets: tuple[str, ...], kind: str, where: list[str]
) -> None:
    granted = _verbs(render_chart(cluster.bin_dir, *sets), kind, "vidop.io")

    assert sorted(granted) == sorted(where)
    for verbs in granted.values():
        pipelines = {r: v for r, v in verbs.items() if r.startswith("videopipelines") or r == "*"}
        assert pipelines == {
            "videopipelines": {"list", "watch"},
            "videopipelines/status": {"patch"},
        }
        assert "*" not in set().union(*verbs.values())


@pytest.mark.parametrize(
    ("sets", "kind", "where"),
    [
        ((), "ClusterRole", [""]),
        (("watchNamespaces={media,batch-a}",), "Role", ["media", "batch-a"]),
    ],
)
def test_rbac_lists_watches_and_patches_kueue_workloads_only_with_kueue(
    cluster: Cluster, sets: tuple[str, ...], kind: str, where: list[str]
) -> None:
    without = _verbs(render_chart(cluster.bin_dir, *sets), kind, "kueue.x-k8s.io")
    granted = _verbs(
        render_chart(cluster.bin_dir, *sets, "queueing.kueue.enabled=true"),
        kind,
        "kueue.x-k8s.io",
    )

    assert without == {}
    assert granted == {namespace: {"workloads": {"list", "watch", "patch"}} for namespace in where}


def test_queueing_values_reach_the_operator_configuration(cluster: Cluster) -> None:
    default = _config(render_chart(cluster.bin_dir)).queueing
    assert default == config.Queueing()  # no cap, no Kueue

    configured = _config(
        render_chart(
            cluster.bin_dir,
            values={
                "queueing": {
                    "maxRunning": 20,
                    "maxRunningPerNamespace": 5,
                    "kueue": {
                        "enabled": True,
                        "defaultQueueName": "videos",
                        "namespaceQueueNames": {"team-a": "team-a-gpus"},
                        "workloadPriorityClasses": {"high": "videos-high", "low": "videos-low"},
                    },
                }
            },
        )
    ).queueing

    assert (configured.max_running, configured.max_running_per_namespace) == (20, 5)
    kueue = configured.kueue
    assert kueue.enabled and kueue.default_queue_name == "videos"
    assert kueue.namespace_queue_names == {"team-a": "team-a-gpus"}
    # The priority left out keeps Kueue's default.
    assert kueue.workload_priority_classes == {
        "high": "videos-high",
        "default": None,
        "low": "videos-low",
    }


def test_namespace_mode_has_roles_only_in_the_watched_namespaces(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir, "watchNamespaces={media,batch-a}")

    kinds = _kinds(documents)
    # Nothing cluster-wide for the operator: the only ClusterRoles are the
    # tenants' aggregated ones, which the chart binds to nobody.
    assert not [k for k in kinds if k[0] == "ClusterRoleBinding"]
    cluster_roles = [d for d in documents if d["kind"] == "ClusterRole"]
    assert all(_aggregated(role) for role in cluster_roles)
    assert ("Role", "media") in kinds and ("Role", "batch-a") in kinds
    for group in ("vidop.io", "batch", ""):
        assert sorted(_verbs(documents, "Role", group)) == ["batch-a", "media"]
    # The release's namespace gets the leader election's Lease, nothing else.
    assert _verbs(documents, "Role", "coordination.k8s.io") == {
        "vid-operator": {"leases": {"get", "update", "create"}}
    }
    assert ("RoleBinding", "media") in kinds and ("RoleBinding", "batch-a") in kinds
    assert _config(documents).watch_namespaces == ["media", "batch-a"]


def _progress_objects(documents: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(kind, namespace) of each object of the in-stage progress feature."""
    return _kinds([d for d in documents if d["metadata"]["name"].endswith("stage-progress")])


def test_stage_progress_is_off_by_default(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir, "watchNamespaces={media}")

    assert _progress_objects(documents) == []
    assert _config(documents).stage_progress == config.StageProgress()


@pytest.mark.parametrize(
    ("sets", "namespaces"),
    [
        (("watchNamespaces={media,batch-a}",), ["batch-a", "media"]),
        (("watchNamespaces={media}", "stageProgress.namespaces={team-x}"), ["team-x"]),
        # Cluster-wide, no list: the platform creates them per namespace.
        ((), []),
    ],
)
def test_stage_progress_gets_its_account_rights_and_policy(
    cluster: Cluster, sets: tuple[str, ...], namespaces: list[str]
) -> None:
    documents = render_chart(
        cluster.bin_dir,
        "stageProgress.enabled=true",
        "stageProgress.serviceAccountName=progress",
        "stageProgress.apiServer=https://api.example:6443",
        # The progress policy is not optional: without it the token could
        # change any pod of its namespace.
        "admissionPolicy.enabled=false",
        *sets,
    )

    assert _progress_objects(documents) == sorted(
        [
            ("ClusterRole", None),
            ("ValidatingAdmissionPolicy", None),
            ("ValidatingAdmissionPolicyBinding", None),
            *(("RoleBinding", ns) for ns in namespaces),
        ]
    )
    accounts = [d for d in documents if d["kind"] == "ServiceAccount"]
    progress_accounts = [a for a in accounts if a["metadata"]["name"] == "progress"]
    assert sorted(a["metadata"]["namespace"] for a in progress_accounts) == namespaces
    assert all(a["automountServiceAccountToken"] is False for a in progress_accounts)
    (role,) = [
        d
        for d in documents
        if d["kind"] == "ClusterRole" and "stage-progress" in d["metadata"]["name"]
    ]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
    for binding in (
        d
        for d in documents
        if d["kind"] == "RoleBinding" and "stage-progress" in d["metadata"]["name"]
    ):
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "progress",
                "namespace": binding["metadata"]["namespace"],
            }
        ]
    (policy,) = [d for d in documents if d["kind"] == "ValidatingAdmissionPolicy"]
    (condition,) = policy["spec"]["matchConditions"]
    assert "'^system:serviceaccount:[^:]+:progress$'" in condition["expression"]
    assert f"<= {contract.MAX_PROGRESS_BYTES}" in " ".join(
        v["expression"] for v in policy["spec"]["validations"]
    )
    assert _config(documents).stage_progress == config.StageProgress(
        service_account_name="progress", api_server="https://api.example:6443"
    )


def test_stage_progress_api_server_must_be_https(cluster: Cluster) -> None:
    result = _helm(
        cluster.bin_dir,
        "template",
        "x",
        str(CHART),
        "--set",
        "stageProgress.apiServer=http://api.example:6443",
        check=False,
    )

    assert result.returncode != 0
    assert "stageProgress" in result.stderr and "apiServer" in result.stderr


def test_priority_classes_are_created_and_mapped_only_when_asked(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir, "priorityClasses.create=true")

    classes = {d["metadata"]["name"]: d["value"] for d in documents if d["kind"] == "PriorityClass"}
    assert classes == {
        "vid-operator-high": 1000,
        "vid-operator-default": 0,
        "vid-operator-low": -10,
    }
    assert _config(documents).priority_classes["high"] == "vid-operator-high"


def test_the_argocd_health_check_is_rendered_from_its_lua_file_only_when_asked(
    cluster: Cluster,
) -> None:
    key = "resource.customizations.health.vidop.io_VideoJob"

    default = render_chart(cluster.bin_dir)
    documents = render_chart(cluster.bin_dir, "argocd.healthCheckConfigMap=true")

    assert not [d for d in default if d["metadata"]["name"].endswith("-argocd-health")]
    (health,) = [
        d for d in documents if d["metadata"]["name"] == "vidop-vid-operator-argocd-health"
    ]
    assert health["data"][key] == (CHART / "argocd" / "videojob-health.lua").read_text()


def test_stage_values_reach_the_operator_configuration(cluster: Cluster) -> None:
    documents = render_chart(
        cluster.bin_dir, "stages.video_gen.gpus=4", "stages.video_gen.image=me/video:2"
    )

    configured = _config(documents)
    video = configured.stages["video_gen"]
    assert (video.gpus, video.image) == (4, "me/video:2")
    assert video.command == ["vidop-stage-video-gen"]  # built-in default kept
    assert video.backoff_limit is None  # so stageDefaults' applies
    assert configured.stage_defaults.backoff_limit == 3


def test_finished_job_ttls_reach_the_operator_configuration(cluster: Cluster) -> None:
    default = _config(render_chart(cluster.bin_dir)).finished_jobs
    assert (default.succeeded_ttl_seconds, default.failed_ttl_seconds) == (3600, 604800)

    kept = _config(
        render_chart(
            cluster.bin_dir,
            "finishedJobs.succeededTtlSeconds=null",
            "finishedJobs.failedTtlSeconds=60",
        )
    ).finished_jobs

    assert (kept.succeeded_ttl_seconds, kept.failed_ttl_seconds) == (None, 60)


def test_two_replicas_with_leader_election_by_default(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir)
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (budget,) = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    (role,) = [d for d in documents if d["kind"] == "Role"]

    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-elect" in container["args"]
    assert "--leader-elect-lease-name=vidop-vid-operator" in container["args"]
    (namespace,) = [e for e in container["env"] if e["name"] == "VIDOP_POD_NAMESPACE"]
    assert namespace["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    # Read and renewed by name; create cannot be limited to one.
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["vidop-vid-operator"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]


def test_one_replica_without_leader_election(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir, "leaderElection.enabled=false", "replicaCount=1")
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [a for a in container["args"] if a.startswith("--leader-elect")]
    assert not [d for d in documents if d["kind"] in ("PodDisruptionBudget", "Role")]

    both = _helm(
        cluster.bin_dir,
        "template",
        "x",
        str(CHART),
        "--set",
        "leaderElection.enabled=false",
        check=False,
    )
    assert both.returncode != 0
    assert "replicaCount above 1 needs leaderElection.enabled" in both.stderr


def test_operator_pod_is_hardened(cluster: Cluster) -> None:
    (deployment,) = [d for d in render_chart(cluster.bin_dir) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]


def _container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_metrics_are_served_on_their_own_port_behind_a_service(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir)
    container = _container(documents)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    assert ports == {"health": 8080, "metrics": 8081}
    assert "--metrics-bind-address=:8081" in container["args"]
    (service,) = [d for d in documents if d["kind"] == "Service"]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}
    ]
    # The Prometheus Operator's objects and the dashboard only when asked.
    assert not [d for d in documents if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert not [d for d in documents if d["metadata"]["name"].endswith("-dashboard")]


def test_metrics_off_means_no_port_no_service(cluster: Cluster) -> None:
    documents = render_chart(cluster.bin_dir, "metrics.enabled=false")
    container = _container(documents)

    assert "--metrics-bind-address=0" in container["args"]
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert not [d for d in documents if d["kind"] == "Service"]


def test_service_and_pod_monitors_and_the_dashboard_when_asked(cluster: Cluster) -> None:
    documents = render_chart(
        cluster.bin_dir,
        values={
            "metrics": {
                "serviceMonitor": {
                    "enabled": True,
                    "interval": "15s",
                    "labels": {"release": "kps"},
                },
                "podMonitor": {"enabled": True, "labels": {"release": "kps"}},
                "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}},
            }
        },
    )
    (service,) = [d for d in documents if d["kind"] == "Service"]
    (service_monitor,) = [d for d in documents if d["kind"] == "ServiceMonitor"]
    (pod_monitor,) = [d for d in documents if d["kind"] == "PodMonitor"]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in _container(documents)["ports"]}

    assert service_monitor["apiVersion"] == pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert service_monitor["metadata"]["labels"]["release"] == "kps"
    selected = service_monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
    # vidop_videojobs{namespace=...} keeps its own namespace label.
    assert endpoint["honorLabels"] is True
    assert pod_monitor["metadata"]["labels"]["release"] == "kps"
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert pod_endpoint["port"] in container_ports and pod_endpoint["interval"] == "30s"
    (dashboard,) = [d for d in documents if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["kind"] == "ConfigMap"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    shipped = json.loads(dashboard["data"]["vid-operator.json"])
    assert shipped == json.loads((CHART / "dashboards" / "vid-operator.json").read_text())


def test_a_service_monitor_without_the_service_is_refused(cluster: Cluster) -> None:
    result = _helm(
        cluster.bin_dir,
        "template",
        "x",
        str(CHART),
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
        check=False,
    )

    assert result.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in result.stderr


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("watchNamespaces={default}",),
        ("priorityClasses.create=true", "crds.keep=false", "metrics.dashboard.enabled=true"),
        ("leaderElection.enabled=false", "replicaCount=1"),
        ("podDisruptionBudget.minAvailable=50%",),
        ("queueing.kueue.enabled=true", "queueing.maxRunning=10"),
        ("stageProgress.enabled=true", "stageProgress.namespaces={default}"),
    ],
)
def test_rendered_manifests_pass_server_side_dry_run(
    cluster: Cluster, namespace: str, sets: tuple[str, ...]
) -> None:
    documents = render_chart(cluster.bin_dir, *sets, namespace=namespace)

    result = cluster.apply(
        {"apiVersion": "v1", "kind": "List", "items": documents},
        None,
        "--dry-run=server",
        check=False,
    )

    assert result.returncode == 0, result.stderr


@pytest.fixture
def operator_identity(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    """The chart's namespace-mode RBAC, ServiceAccount and configuration
    installed for `namespace`, and a kubeconfig holding that account's token."""
    documents = render_chart(
        cluster.bin_dir,
        f"watchNamespaces={{{namespace}}}",
        "s3.credentialsSecret=",
        namespace=namespace,
    )
    wanted = [
        d
        for d in documents
        if d["kind"]
        in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CustomResourceDefinition")
    ]
    cluster.apply(
        {"apiVersion": "v1", "kind": "List", "items": wanted},
        None,
        "--server-side",
        "--force-conflicts",
    )
    (account,) = [d["metadata"]["name"] for d in wanted if d["kind"] == "ServiceAccount"]
    token = (
        client.CoreV1Api(cluster.api)
        .create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 3600}}
        )
        .status.token
    )
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "operator"
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(admin))
    (configmap,) = [d for d in wanted if d["kind"] == "ConfigMap"]
    (tmp_path / "config.yaml").write_text(configmap["data"]["config.yaml"])
    # The Deployment's arguments (leader election on, as by default), but
    # for the liveness and metrics ports: other operators run on this host.
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [
        a for a in container["args"] if not a.startswith(("--liveness=", "--metrics-bind-address="))
    ]
    args.append("--metrics-bind-address=0")
    (tmp_path / "args.json").write_text(json.dumps(args))
    yield f"system:serviceaccount:{namespace}:{account}"


def test_the_charts_rbac_is_enough_to_run_a_videojob_and_no_more(
    cluster: Cluster, namespace: str, operator_identity: str, tmp_path: Path
) -> None:
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/videojobs.vidop.io",
        "crd/videopipelines.vidop.io",
        "--timeout=30s",
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(tmp_path / "operator.kubeconfig"),
        "VIDOP_CONFIG": str(tmp_path / "config.yaml"),
        "VIDOP_POD_NAMESPACE": namespace,  # the chart's downward API
    }
    args = json.loads((tmp_path / "args.json").read_text())
    assert "--leader-elect" in args
    log = tmp_path / "operator.log"
    with log.open("wb") as output:
        operator = subprocess.Popen(
            [sys.executable, "-m", "vid_operator", "--liveness=http://127.0.0.1:0/healthz", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _apply_videojob(
            cluster,
            namespace,
            "least-privilege",
            {"prompt": "a cat", "ttlSecondsAfterFinished": 3600},
        )

        def phase() -> str | None:
            obj = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
                "vidop.io", "v1alpha1", namespace, "videojobs", "least-privilege"
            )
            return obj.get("status", {}).get("phase")  # type: ignore[no-any-return]

        assert wait_until(
            "the VideoJob to succeed under the chart's RBAC",
            lambda: phase() == "Succeeded",
            timeout=90,
        )
    finally:
        operator.terminate()
        operator.wait(timeout=15)
    text = log.read_text()
    # A 403 as a status, not the digits of a timestamp's fraction (.403249Z).
    assert "Forbidden" not in text and not re.search(r"(?<![.\d])403(?!\d)", text)

    def can(*args: str) -> bool:
        result = cluster.kubectl("auth", "can-i", f"--as={operator_identity}", *args, check=False)
        return result.stdout.strip() == "yes"

    assert can("create", "jobs.batch", "-n", namespace)
    assert can("patch", "videojobs.vidop.io", "--subresource=status", "-n", namespace)
    assert not can("get", "secrets", "-n", namespace)
    assert not can("list", "secrets", "-n", namespace)
    assert not can("update", "videojobs.vidop.io", "-n", namespace)  # spec belongs to git
    assert not can("delete", "jobs.batch", "-n", namespace)
    assert not can("create", "deployments.apps", "-n", namespace)
    assert not can("create", "pods", "-n", namespace)
    assert not can("list", "jobs.batch", "-n", "default")  # another namespace
    assert not can("list", "videojobs.vidop.io", "--all-namespaces")
    for verb in ("list", "watch"):
        assert can(verb, "videopipelines.vidop.io", "-n", namespace)
    assert can("patch", "videopipelines.vidop.io", "--subresource=status", "-n", namespace)
    for verb in ("get", "create", "update", "patch", "delete", "deletecollection"):
        assert not can(verb, "videopipelines.vidop.io", "-n", namespace)  # spec belongs to git
    assert not can("update", "videopipelines.vidop.io", "--subresource=status", "-n", namespace)
    assert not can("list", "videopipelines.vidop.io", "-n", "default")
    # The Lease: its own, in the release's namespace (here the watched one).
    lease = "leases.coordination.k8s.io/vidop-vid-operator"
    assert can("update", lease, "-n", namespace)
    assert not can("update", "leases.coordination.k8s.io/kube-scheduler", "-n", namespace)
    assert not can("delete", lease, "-n", namespace)
    assert not can("list", "leases.coordination.k8s.io", "-n", namespace)
    assert not can("create", "leases.coordination.k8s.io", "-n", "default")


def test_install_upgrade_and_uninstall(cluster: Cluster, namespace: str) -> None:
    release = f"r{namespace[-6:]}"
    helm = ["--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
    # The CRD may already be there from another test's kubectl apply: the
    # release takes it over, as an upgrade from a hand-installed CRD would.
    common = [
        "--take-ownership",
        "--set",
        "priorityClasses.create=true",
        "--set",
        f"priorityClasses.high.name={release}-high",
        "--set",
        f"priorityClasses.default.name={release}-default",
        "--set",
        f"priorityClasses.low.name={release}-low",
    ]
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    scheduling = client.SchedulingV1Api(cluster.api)

    _helm(
        cluster.bin_dir,
        "install",
        release,
        str(CHART),
        *helm,
        *common,
        "--wait",
        "--timeout",
        "90s",
    )
    deployment = apps.read_namespaced_deployment(f"{release}-vid-operator", namespace)
    assert deployment.status.ready_replicas == 2  # on kwok nodes
    before = deployment.spec.template.metadata.annotations["checksum/config"]

    _helm(
        cluster.bin_dir,
        "upgrade",
        release,
        str(CHART),
        *helm,
        *common,
        "--set",
        "s3.bucket=other-bucket",
        "--wait",
        "--timeout",
        "90s",
    )
    configmap = core.read_namespaced_config_map(f"{release}-vid-operator", namespace)
    assert "other-bucket" in configmap.data["config.yaml"]
    deployment = apps.read_namespaced_deployment(f"{release}-vid-operator", namespace)
    assert deployment.spec.template.metadata.annotations["checksum/config"] != before

    _apply_videojob(
        cluster, namespace, "stays", {"prompt": "kept across uninstall", "suspend": True}
    )

    _helm(cluster.bin_dir, "uninstall", release, *helm, "--wait", "--timeout", "90s")

    # What stays: the CRD (resource policy keep) and so the VideoJobs.
    assert cluster.kubectl("get", "crd", "videojobs.vidop.io", check=False).returncode == 0
    assert cluster.kubectl("get", "crd", "videopipelines.vidop.io", check=False).returncode == 0
    assert cluster.kubectl("get", "vj", "stays", "-n", namespace, check=False).returncode == 0
    # What goes: everything else the release made.
    assert not apps.list_namespaced_deployment(namespace).items
    assert not [
        c
        for c in core.list_namespaced_config_map(namespace).items
        if c.metadata.name.startswith(release)
    ]
    assert not [
        p for p in scheduling.list_priority_class().items if p.metadata.name.startswith(release)
    ]
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    assert not [r for r in rbac.list_cluster_role().items if r.metadata.name.startswith(release)]
