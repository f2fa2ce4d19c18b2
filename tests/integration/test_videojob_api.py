"""The VideoJob and VideoPipeline CRDs on the real API server: what `kubectl
apply` accepts, what it rejects (and in which words), defaults, printer
columns and immutability."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Cluster, videojob_manifest, videopipeline

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def videojob_crd(cluster: Cluster) -> Iterator[None]:
    cluster.install_videojob_crd()
    yield


def _apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> str:
    """kubectl apply; returns what kubectl printed to stderr when it refused."""
    result = cluster.apply(manifest, namespace, check=False)
    return "" if result.returncode == 0 else result.stderr


def test_a_minimal_videojob_is_accepted_with_defaults(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    assert _apply(cluster, namespace, videojob_manifest("minimal")) == ""

    shown = json.loads(
        cluster.kubectl("get", "vj", "minimal", "-n", namespace, "-o", "json").stdout
    )
    assert shown["spec"] == {
        "prompt": "a cat surfing",
        "durationSeconds": 30,
        "resolution": "1280x720",
        "fps": 24,
        "voice": "en",
        "priority": "default",
        "suspend": False,
        "retry": 0,
        "cache": True,
    }


def test_a_full_videojob_with_stage_overrides_is_accepted(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    manifest = videojob_manifest(
        "full",
        durationSeconds=60,
        resolution="1920x1080",
        fps=30,
        voice="en-us",
        priority="high",
        ttlSecondsAfterFinished=3600,
        output={"bucket": "videos", "prefix": "team-a/"},
        stages={
            "video_gen": {
                "image": "registry.example/video-gen:1.2",
                "gpus": 2,
                "resources": {
                    "requests": {"cpu": 4, "memory": "16Gi"},
                    "limits": {"memory": "32Gi"},
                },
                "nodeSelector": {"gpu.type": "a100"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "backoffLimit": 3,
                "activeDeadlineSeconds": 7200,
                "env": [{"name": "MODEL", "value": "big"}],
                "serviceAccountName": "video-identity",
            }
        },
    )

    assert _apply(cluster, namespace, manifest) == ""


# One case per apply-time rule: the spec fields to set, and words the
# rejection must contain.
REJECTIONS = {
    "prompt-missing": ({"prompt": None}, "spec.prompt: Required value"),
    "prompt-blank": ({"prompt": "   "}, "prompt must contain some text, not only spaces"),
    "prompt-too-long": ({"prompt": "x" * 4001}, "may not be more than 4000 bytes"),
    "duration-zero": ({"durationSeconds": 0}, "spec.durationSeconds: Invalid value: 0"),
    "duration-too-long": ({"durationSeconds": 601}, "should be less than or equal to 600"),
    "fps-too-high": ({"fps": 240}, "should be less than or equal to 60"),
    "resolution-shape": ({"resolution": "hd"}, "resolution must look like WIDTHxHEIGHT"),
    "resolution-odd": ({"resolution": "1281x720"}, "with even numbers"),
    "priority-unknown": ({"priority": "urgent"}, 'supported values: "high", "default", "low"'),
    "prompt-unicode-spaces": (
        {"prompt": "\u00a0\u2003\u3000\u200b"},
        "prompt must contain some text, not only spaces",
    ),
    "stage-unknown": (
        {"stages": {"upscale": {"gpus": 1}}},
        "without spec.pipeline, stages may only name the default pipeline's stages: script_gen,",
    ),
    "gpus-too-many": (
        {"stages": {"video_gen": {"gpus": 9}}},
        "spec.stages.video_gen.gpus: Invalid value: 9",
    ),
    "backoff-limit-too-high": (
        {"stages": {"video_gen": {"backoffLimit": 21}}},
        "should be less than or equal to 20",
    ),
    "deadline-zero": (
        {"stages": {"compositing": {"activeDeadlineSeconds": 0}}},
        "spec.stages.compositing.activeDeadlineSeconds: Invalid value: 0",
    ),
    "quantity-malformed": (
        {"stages": {"voice_gen": {"resources": {"limits": {"memory": "lots"}}}}},
        'limits[memory]: Invalid value: "lots": must be a non-negative Kubernetes quantity',
    ),
    "quantity-negative": (
        {"stages": {"voice_gen": {"resources": {"limits": {"memory": "-1"}}}}},
        "must be a non-negative Kubernetes quantity",
    ),
    "quantity-negative-integer": (
        {"stages": {"voice_gen": {"resources": {"requests": {"cpu": -2}}}}},
        "must be a non-negative Kubernetes quantity",
    ),
    "env-contract-name": (
        {"stages": {"script_gen": {"env": [{"name": "VIDOP_ARTIFACT_PREFIX", "value": "x"}]}}},
        "this variable is reserved for the operator and the platform",
    ),
    "env-s3-endpoint": (
        {"stages": {"script_gen": {"env": [{"name": "aws_endpoint_url", "value": "x"}]}}},
        "this variable is reserved for the operator and the platform",
    ),
    "depends-on-is-the-pipelines": (
        {"stages": {"compositing": {"dependsOn": ["script_gen"]}}},
        'unknown field "spec.stages.compositing.dependsOn"',
    ),
    "unknown-field": ({"colour": "red"}, 'unknown field "spec.colour"'),
    "stage-override-too-large": (
        {
            "stages": {
                "video_gen": {
                    "env": [{"name": f"V{i}", "value": "x" * 4096} for i in range(4)],
                    "args": ["y"],
                }
            }
        },
        "command, args, env values and podAnnotations may hold at most 16384 characters",
    ),
}


def test_a_stage_override_at_its_size_limit_is_accepted(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    manifest = videojob_manifest(
        "override-at-limit",
        stages={
            "video_gen": {
                "command": ["c" * 1024],
                "args": ["a" * 1024],
                "env": [{"name": f"V{i}", "value": "x" * 3072} for i in range(4)],
                "podAnnotations": {"note": "n" * 1024, "more": "m" * 1024},
            }
        },
    )

    assert _apply(cluster, namespace, manifest) == ""


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_bad_specs_are_rejected_at_apply_time_in_plain_words(
    cluster: Cluster, namespace: str, videojob_crd: None, case: str
) -> None:
    fields, words = REJECTIONS[case]
    manifest = videojob_manifest(case)
    for key, value in fields.items():
        if value is None:
            del manifest["spec"][key]
        else:
            manifest["spec"][key] = value

    refused = _apply(cluster, namespace, manifest)

    assert words in refused
    assert cluster.kubectl("get", "vj", case, "-n", namespace, check=False).returncode != 0


def test_spec_of_a_started_job_is_immutable_except_suspend(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    assert _apply(cluster, namespace, videojob_manifest("started")) == ""
    # Not started yet: the spec may still change.
    assert _apply(cluster, namespace, videojob_manifest("started", fps=30)) == ""
    cluster.kubectl(
        "patch",
        "vj",
        "started",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"startTime": "2026-11-22T06:00:00Z"}}',
    )

    refused = _apply(cluster, namespace, videojob_manifest("started", fps=30, prompt="a dog"))
    assert "the spec of a started VideoJob cannot change" in refused
    refused = _apply(
        cluster, namespace, videojob_manifest("started", fps=30, stages={"video_gen": {"gpus": 2}})
    )
    assert "the spec of a started VideoJob cannot change" in refused
    assert _apply(cluster, namespace, videojob_manifest("started", fps=30, suspend=True)) == ""


def test_printer_columns_show_phase_stage_progress_and_age(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    assert _apply(cluster, namespace, videojob_manifest("shown")) == ""
    cluster.kubectl(
        "patch",
        "vj",
        "shown",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Running", "stage": "video_gen", "progress": "1/4"}}',
    )

    header, row = cluster.kubectl("get", "videojobs", "-n", namespace).stdout.splitlines()[:2]

    assert header.split() == ["NAME", "PHASE", "STAGE", "PROGRESS", "AGE"]
    assert row.split()[:4] == ["shown", "Running", "video_gen", "1/4"]


def test_overrides_of_a_named_pipeline_may_name_its_own_stages(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    manifest = videojob_manifest("on-pipeline", pipeline="models", stages={"upscale": {"gpus": 1}})

    assert _apply(cluster, namespace, manifest) == ""


MODEL_STAGE: dict[str, Any] = {
    "name": "render",
    "image": "registry.example/models/render:3",
    "command": ["render"],
    "args": ["--steps=$(STEPS)"],
    "env": [
        {"name": "STEPS", "value": "30"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "render-settings"}, "prefix": "RENDER_"}],
    "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi"}},
    "maxResources": {"memory": "64Gi"},
    "gpus": 1,
    "maxGpus": 4,
    "nodeSelector": {"gpu.type": "h100"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "models"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "backoffLimit": 2,
    "activeDeadlineSeconds": 7200,
    "terminationGracePeriodSeconds": 120,
    "volumes": [
        {"name": "models", "persistentVolumeClaim": {"claimName": "model-cache", "readOnly": True}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
        {"name": "settings", "configMap": {"name": "render-settings"}},
        {"name": "certs", "secret": {"secretName": "render-certs"}},
        {
            "name": "work",
            "ephemeral": {
                "volumeClaimTemplate": {
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "50Gi"}},
                    }
                }
            },
        },
    ],
    "volumeMounts": [
        {"name": "models", "mountPath": "/models", "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "work", "mountPath": "/work"},
    ],
    "serviceAccountName": "render-identity",
    "imagePullSecrets": [{"name": "registry-creds"}],
    "podLabels": {"team": "models"},
    "podAnnotations": {"prometheus.io/scrape": "true"},
}


def test_a_pipeline_with_every_stage_field_is_accepted_and_listed(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    manifest = videopipeline(
        "models",
        {"name": "script_gen", "image": "x/script:1"},
        {**MODEL_STAGE, "dependsOn": ["script_gen"]},
        {"name": "mux", "image": "x/mux:1", "dependsOn": ["script_gen", "render"]},
    )

    assert _apply(cluster, namespace, manifest) == ""
    shown = cluster.kubectl("get", "videopipelines", "-n", namespace).stdout
    assert shown.split()[:4] == ["NAME", "READY", "STAGES", "REASON"]
    assert "models" in shown
    explained = cluster.kubectl("explain", "videopipeline.spec.stages.volumes.emptyDir").stdout
    assert "/dev/shm" in explained


def _stage(**fields: Any) -> dict[str, Any]:
    return {"name": "render", "image": "x/render:1", **fields}


# One case per rule of the VideoPipeline: its stages, and words the refusal
# must contain.
PIPELINE_REJECTIONS: dict[str, tuple[list[dict[str, Any]], str]] = {
    "no-stages": ([], "spec.stages: Invalid value"),
    "too-many-stages": (
        [{"name": f"s{i}", "image": "x:1"} for i in range(17)],
        "must have at most 16 items",
    ),
    "duplicate-names": (
        [_stage(), _stage(image="x/other:1")],
        "stage names must be unique",
    ),
    "names-equal-as-job-names": (
        [_stage(name="up_scale"), _stage(name="up-scale")],
        "stage names must be unique (a - and a _ count as the same character)",
    ),
    "name-too-long": ([_stage(name="s" * 33)], "may not be more than 32 bytes"),
    "name-uppercase": ([_stage(name="Render")], "spec.stages[0].name: Invalid value"),
    "depends-on-unknown": (
        [_stage(dependsOn=["upscale"])],
        "dependsOn may only name other stages of this pipeline",
    ),
    "depends-on-itself": (
        [_stage(dependsOn=["render"])],
        "dependsOn may only name other stages of this pipeline",
    ),
    "image-missing": ([{"name": "render"}], "spec.stages[0].image: Required value"),
    "quantity-negative": (
        [_stage(resources={"limits": {"memory": "-1"}})],
        "must be a non-negative Kubernetes quantity",
    ),
    "shm-size-negative": (
        [_stage(volumes=[{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "-1Gi"}}])],
        "must be a non-negative Kubernetes quantity",
    ),
    "env-contract-name": (
        [_stage(env=[{"name": "VIDOP_ARTIFACT_PREFIX", "value": "s3://other/"}])],
        "the stage contract sets this variable",
    ),
    "env-s3-secret": (
        [_stage(env=[{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}])],
        "the stage contract sets this variable",
    ),
    "env-value-and-value-from": (
        [_stage(env=[{"name": "T", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "a"}}}])],
        "either value or valueFrom, not both",
    ),
    "value-from-two-sources": (
        [
            _stage(
                env=[
                    {
                        "name": "T",
                        "valueFrom": {
                            "secretKeyRef": {"name": "a", "key": "b"},
                            "configMapKeyRef": {"name": "a", "key": "b"},
                        },
                    }
                ]
            )
        ],
        "valueFrom takes exactly one of",
    ),
    "volume-without-source": (
        [_stage(volumes=[{"name": "v"}])],
        "a volume takes exactly one of",
    ),
    "volume-host-path": (
        [_stage(volumes=[{"name": "v", "hostPath": {"path": "/"}}])],
        'unknown field "spec.stages[0].volumes[0].hostPath"',
    ),
    "volume-named-scratch": (
        [_stage(volumes=[{"name": "scratch", "emptyDir": {}}])],
        "the volume names scratch and vidop-progress are the stage contract's",
    ),
    "mount-unknown-volume": (
        [_stage(volumeMounts=[{"name": "models", "mountPath": "/models"}])],
        "every volumeMounts entry must name one of the stage's volumes",
    ),
    "mount-over-the-termination-message": (
        [
            _stage(
                volumes=[{"name": "v", "emptyDir": {}}],
                volumeMounts=[{"name": "v", "mountPath": "/dev/termination-log"}],
            )
        ],
        "/scratch, /dev/termination-log and /var/run/vidop are the stage contract's",
    ),
    "max-gpus-below-gpus": ([_stage(gpus=2, maxGpus=1)], "maxGpus must be at least gpus"),
    "operator-label": (
        [_stage(podLabels={"vidop.io/videojob": "someone-else"})],
        "podLabels may not set the operator's or the Job controller's labels",
    ),
    "privileged-is-no-field": (
        [_stage(securityContext={"privileged": True})],
        'unknown field "spec.stages[0].securityContext"',
    ),
}


@pytest.mark.parametrize("case", list(PIPELINE_REJECTIONS))
def test_bad_pipelines_are_rejected_at_apply_time_in_plain_words(
    cluster: Cluster, namespace: str, videojob_crd: None, case: str
) -> None:
    stages, words = PIPELINE_REJECTIONS[case]

    refused = _apply(cluster, namespace, videopipeline(case, *stages))

    assert words in refused
    assert cluster.kubectl("get", "vp", case, "-n", namespace, check=False).returncode != 0
