"""The VideoJob CRD on the real API server: what `kubectl apply` accepts, what
it rejects (and in which words), defaults, printer columns and immutability."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Cluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def videojob_crd(cluster: Cluster) -> Iterator[None]:
    cluster.install_videojob_crd()
    yield


def _videojob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {"prompt": "a cat surfing", **spec},
    }


def _apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> str:
    """kubectl apply; returns what kubectl printed to stderr when it refused."""
    result = cluster.apply(manifest, namespace, check=False)
    return "" if result.returncode == 0 else result.stderr


def test_a_minimal_videojob_is_accepted_with_defaults(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    assert _apply(cluster, namespace, _videojob("minimal")) == ""

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
    }


def test_a_full_videojob_with_stage_overrides_is_accepted(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    manifest = _videojob(
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
                "dependsOn": ["script_gen"],
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
    "stage-unknown": (
        {"stages": {"upscale": {"gpus": 1}}},
        "stages may only name the pipeline's stages: script_gen, voice_gen,",
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
        'limits[memory]: Invalid value: "lots": must be a Kubernetes quantity such as 2, 500m',
    ),
    "depends-on-unknown": (
        {"stages": {"compositing": {"dependsOn": ["upscale"]}}},
        "dependsOn may only name the pipeline's stages",
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
    manifest = _videojob(
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
    manifest = _videojob(case)
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
    assert _apply(cluster, namespace, _videojob("started")) == ""
    # Not started yet: the spec may still change.
    assert _apply(cluster, namespace, _videojob("started", fps=30)) == ""
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

    refused = _apply(cluster, namespace, _videojob("started", fps=30, prompt="a dog"))
    assert "the spec of a started VideoJob cannot change" in refused
    refused = _apply(
        cluster, namespace, _videojob("started", fps=30, stages={"video_gen": {"gpus": 2}})
    )
    assert "the spec of a started VideoJob cannot change" in refused
    assert _apply(cluster, namespace, _videojob("started", fps=30, suspend=True)) == ""


def test_printer_columns_show_phase_stage_progress_and_age(
    cluster: Cluster, namespace: str, videojob_crd: None
) -> None:
    assert _apply(cluster, namespace, _videojob("shown")) == ""
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
