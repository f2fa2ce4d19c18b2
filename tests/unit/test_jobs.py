"""The Job built for a stage: identity, retries, placement, hardening, contract."""

import json
from typing import Any

from vid_operator import config, jobs, pipeline
from vid_operator.api.models import VideoJobSpec
from vid_operator.api.pipelines import VideoPipelineSpec
from vidop_devcluster import localpod

OWNER = jobs.Owner(name="cat-surfing", namespace="media", uid="1234-abcd")


def _job(
    stage: str, spec: dict[str, Any] | None = None, configured: config.OperatorConfig | None = None
) -> dict[str, Any]:
    parsed = VideoJobSpec.model_validate({"prompt": "a cat surfing", **(spec or {})})
    configured = configured or config.OperatorConfig()
    stages = {s.name: s for s in pipeline.resolve(parsed, configured)}
    return jobs.build_stage_job(OWNER, parsed, stages[stage], configured)


def _env(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_identity_name_labels_and_controlling_owner() -> None:
    job = _job("video_gen")

    assert job["metadata"]["name"] == "cat-surfing-video-gen"
    assert job["metadata"]["namespace"] == "media"
    expected_labels = {
        "app.kubernetes.io/managed-by": "vid-operator",
        "vidop.io/videojob": "cat-surfing",
        "vidop.io/stage": "video_gen",
    }
    assert job["metadata"]["labels"] == expected_labels
    assert job["spec"]["template"]["metadata"]["labels"] == expected_labels
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "name": "cat-surfing",
        "uid": "1234-abcd",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_retries_are_the_job_controllers_with_a_failure_policy() -> None:
    spec = _job("script_gen")["spec"]

    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    fail_job, ignore = spec["podFailurePolicy"]["rules"]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"]["values"] == [2]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_a_finished_job_goes_after_the_configured_ttl() -> None:
    assert _job("script_gen")["spec"]["ttlSecondsAfterFinished"] == 3600
    configured = config.from_mapping({"finishedJobs": {"succeededTtlSeconds": 60}})
    assert _job("script_gen", configured=configured)["spec"]["ttlSecondsAfterFinished"] == 60
    kept = config.from_mapping({"finishedJobs": {"succeededTtlSeconds": None}})
    assert "ttlSecondsAfterFinished" not in _job("script_gen", configured=kept)["spec"]


def test_gpu_stage_gets_limits_node_selector_and_toleration() -> None:
    pod = _job("video_gen")["spec"]["template"]["spec"]

    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        pod["tolerations"]
    )


def test_cpu_stage_has_no_gpu_anything() -> None:
    pod = _job("voice_gen")["spec"]["template"]["spec"]

    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


# A platform that lets VideoJobs choose images, placement and more GPUs.
PERMISSIVE = config.from_mapping(
    {
        "overridePolicy": {
            "allowedFields": [
                "image",
                "gpus",
                "backoffLimit",
                "activeDeadlineSeconds",
                "nodeSelector",
                "env",
            ],
        },
        "stages": {"video_gen": {"maxGpus": 4}},
    }
)


def test_spec_overrides_reach_the_job() -> None:
    job = _job(
        "video_gen",
        {
            "priority": "high",
            "stages": {
                "video_gen": {
                    "gpus": 4,
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": 60,
                    "nodeSelector": {"gpu.type": "a100"},
                    "image": "me/video:9",
                    "env": [{"name": "MODEL", "value": "big"}],
                }
            },
        },
        PERMISSIVE,
    )
    pod = job["spec"]["template"]["spec"]

    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 60
    assert pod["containers"][0]["image"] == "me/video:9"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "gpu.type": "a100"}
    assert pod["priorityClassName"] == "vid-operator-high"
    assert _env(job)["MODEL"] == "big"


def test_default_priority_leaves_the_cluster_default() -> None:
    assert "priorityClassName" not in _job("compositing")["spec"]["template"]["spec"]


def test_pods_are_hardened_and_get_no_service_account_token() -> None:
    pod = _job("compositing")["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "scratch", "emptyDir": {}} in pod["volumes"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    # Named in the environment as well, so the local node can map it to a host file.
    env = _env(_job("compositing"))
    assert env["VIDOP_TERMINATION_MESSAGE_PATH"] == container["terminationMessagePath"]
    assert env["VIDOP_SCRATCH_DIR"] == "/scratch"


def test_stage_contract_environment_with_credentials_by_reference() -> None:
    configured = config.from_mapping(
        {"s3": {"endpointUrl": "http://127.0.0.1:8333", "bucket": "media", "prefix": "jobs"}}
    )
    env = _env(_job("voice_gen", {"voice": "en-us"}, configured))

    assert env["VIDOP_STAGE"] == "voice_gen"
    assert env["VIDOP_JOB_UID"] == "1234-abcd"
    assert env["VIDOP_ARTIFACT_PREFIX"] == "s3://media/jobs/media/cat-surfing/1234-abcd/"
    assert env["VIDOP_S3_ENDPOINT"] == "http://127.0.0.1:8333"
    assert json.loads(env["VIDOP_PARAMS"]) == {
        "prompt": "a cat surfing",
        "durationSeconds": 30,
        "resolution": "1280x720",
        "fps": 24,
        "voice": "en-us",
    }
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "vid-operator-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    }


def test_output_override_moves_the_artifacts() -> None:
    configured = config.from_mapping({"s3": {"allowedBuckets": ["team-b"]}})
    env = _env(_job("script_gen", {"output": {"bucket": "team-b", "prefix": "x/y"}}, configured))

    assert env["VIDOP_ARTIFACT_PREFIX"] == "s3://team-b/x/y/media/cat-surfing/1234-abcd/"


def test_suspended_videojob_creates_suspended_jobs() -> None:
    assert _job("script_gen", {"suspend": True})["spec"]["suspend"] is True


def _pipeline_job(stage: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    source = pipeline.pipeline_source(
        "models", VideoPipelineSpec.model_validate({"stages": [{"name": "render", **stage}]})
    )
    parsed = VideoJobSpec.model_validate({"prompt": "a cat", "pipeline": "models", **(spec or {})})
    configured = config.OperatorConfig()
    (resolved,) = pipeline.resolve(parsed, configured, source)
    return jobs.build_stage_job(OWNER, parsed, resolved, configured)


def test_a_pipeline_stage_gets_a_model_cache_a_token_and_shared_memory() -> None:
    job = _pipeline_job(
        {
            "image": "registry.example/models/render:3",
            "env": [
                {"name": "MODEL_DIR", "value": "/models"},
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "render-settings"}}],
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": "model-cache"}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            ],
            "volumeMounts": [
                {"name": "models", "mountPath": "/models", "readOnly": True},
                {"name": "shm", "mountPath": "/dev/shm"},
            ],
            "serviceAccountName": "render-identity",
            "imagePullSecrets": [{"name": "registry-creds"}],
            "terminationGracePeriodSeconds": 120,
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
            "podLabels": {"team": "models"},
        }
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert container["image"] == "registry.example/models/render:3"
    assert _env(job)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert _env(job)["NODE"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert container["envFrom"] == [{"configMapRef": {"name": "render-settings"}}]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "model-cache"}} in pod[
        "volumes"
    ]
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert {"name": "scratch", "emptyDir": {}} in pod["volumes"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert pod["serviceAccountName"] == "render-identity"
    assert pod["automountServiceAccountToken"] is True  # named, so its token is wanted
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert "nodeAffinity" in pod["affinity"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "models" and labels["vidop.io/stage"] == "render"
    # The contract is the same for every stage of every pipeline.
    assert _env(job)["VIDOP_STAGE"] == "render"
    assert _env(job)["VIDOP_ARTIFACT_PREFIX"] == (
        "s3://vid-operator/videojobs/media/cat-surfing/1234-abcd/"
    )


def test_a_pipeline_stage_without_an_account_gets_no_token() -> None:
    pod = _pipeline_job({"image": "x/render:1"})["spec"]["template"]["spec"]

    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod and "imagePullSecrets" not in pod


def test_a_tenants_env_value_cannot_expand_the_contracts_variables() -> None:
    job = _pipeline_job(
        {"image": "x/render:1"},
        {"stages": {"render": {"env": [{"name": "STYLE", "value": "$(AWS_SECRET_ACCESS_KEY)"}]}}},
    )

    # Kubernetes reads $$ as a literal $: the value stays the text the tenant wrote.
    assert _env(job)["STYLE"] == "$$(AWS_SECRET_ACCESS_KEY)"


def test_a_prompt_reaches_the_stage_as_written_and_expands_nothing() -> None:
    prompt = "narrate $(AWS_SECRET_ACCESS_KEY) and $$ and $(API_KEY)"
    env = _env(_job("script_gen", {"prompt": prompt}))

    assert "$$(API_KEY)" in env["VIDOP_PARAMS"] and "$$$$" in env["VIDOP_PARAMS"]
    # What the kubelet (and the local node, which does as it does) hands the stage:
    delivered = localpod.expand(
        env["VIDOP_PARAMS"], {"API_KEY": "secret", "AWS_SECRET_ACCESS_KEY": "key"}
    )
    assert json.loads(delivered)["prompt"] == prompt


def test_the_cleanup_job_deletes_one_videojobs_prefix_as_hardened_as_a_stage() -> None:
    configured = config.from_mapping(
        {"s3": {"endpointUrl": "http://127.0.0.1:8333", "bucket": "media", "prefix": "jobs"}}
    )
    spec = VideoJobSpec.model_validate({"prompt": "x", "output": {"prefix": "team-a"}})

    job = jobs.build_cleanup_job(OWNER, spec, configured)

    assert job["metadata"]["name"] == "cat-surfing-cleanup-1234-abc"
    assert "ownerReferences" not in job["metadata"]  # its VideoJob is gone
    assert job["metadata"]["labels"]["vidop.io/cleanup"] == "true"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["vidop-artifacts-cleanup"]
    assert container["image"] == "ghcr.io/vid-operator/script-gen:0.1.0"
    assert _env(job) == {
        "VIDOP_ARTIFACT_PREFIX": "s3://media/team-a/media/cat-surfing/1234-abcd/",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VIDOP_S3_ENDPOINT": "http://127.0.0.1:8333",
        "AWS_ACCESS_KEY_ID": {
            "secretKeyRef": {"name": "vid-operator-s3", "key": "AWS_ACCESS_KEY_ID"}
        },
        "AWS_SECRET_ACCESS_KEY": {
            "secretKeyRef": {"name": "vid-operator-s3", "key": "AWS_SECRET_ACCESS_KEY"}
        },
    }
    stage_pod = _job("compositing")["spec"]["template"]["spec"]
    assert pod["securityContext"] == stage_pod["securityContext"]
    assert container["securityContext"] == stage_pod["containers"][0]["securityContext"]
    assert pod["automountServiceAccountToken"] is False


def test_the_cleanup_job_goes_where_it_is_told_with_the_stages_pull_secrets() -> None:
    configured = config.from_mapping(
        {
            "artifactRetention": {
                "nodeSelector": {"pool": "cpu"},
                "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
            },
            "stageDefaults": {"imagePullSecrets": [{"name": "registry-creds"}]},
        }
    )

    pod = jobs.build_cleanup_job(OWNER, VideoJobSpec(prompt="x"), configured)["spec"]["template"]
    spec = pod["spec"]

    assert spec["nodeSelector"] == {"pool": "cpu"}
    assert spec["tolerations"] == [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["imagePullSecrets"] == [{"name": "registry-creds"}]
