"""A stage fanned out over scenes, on the real control plane: video_gen as one
Indexed Job on kwok's GPU nodes, a failed scene retried alone, the scenes done
out of all in the status, and exit code 2 still failing the stage at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support import Cluster, Operator, kwok_videojob, wait_for_phase, wait_until
from vid_operator import config

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    cluster.install_videojob_crd()
    running = Operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {
            "s3": {"credentialsSecret": None, "bucket": "videos"},
            "priorityClasses": {"high": None, "low": None},
            "overridePolicy": {
                "allowedFields": list(map(str, config.DEFAULT_OVERRIDABLE)),
                "allowedPodAnnotations": ["kwok.vidop.io/"],
            },
        },
    )
    running.start()
    yield running
    running.stop()


def _scenes(count: int) -> dict[str, Any]:
    return {"podAnnotations": {"kwok.vidop.io/termination-message": json.dumps({"scenes": count})}}


def _video_gen(done: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in done["status"]["stages"] if s["name"] == "video_gen")


def _video_gen_pods(cluster: Cluster, namespace: str, videojob: str) -> list[client.V1Pod]:
    selector = f"vidop.io/videojob={videojob},vidop.io/stage=video_gen"
    pods: list[client.V1Pod] = (
        client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=selector).items
    )
    return pods


def test_video_gen_runs_one_pod_per_scene_and_a_failed_scene_is_retried_alone(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    seen_progress: set[str] = set()
    manifest = kwok_videojob(
        "four-scenes",
        stages={
            "script_gen": _scenes(4),
            "video_gen": {
                "podAnnotations": {"kwok.vidop.io/run-time": "2s", "kwok.vidop.io/fail-item": "2"}
            },
        },
    )
    cluster.apply(manifest, namespace)

    def finished() -> dict[str, Any] | None:
        videojob = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "vidop.io", "v1alpha1", namespace, "videojobs", "four-scenes"
        )
        status = videojob.get("status") or {}
        seen_progress.add(status.get("progress", ""))
        return videojob if status.get("phase") in ("Succeeded", "Failed") else None

    done = wait_until("four-scenes to finish", finished, timeout=120, interval=0.2)

    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"], indent=1)
    video = _video_gen(done)
    assert video["outputs"] == {"items": 4}
    job = client.BatchV1Api(cluster.api).read_namespaced_job(video["jobName"], namespace)
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 4
    assert job.status.succeeded == 4 and job.status.failed == 1
    # Scene 2 failed once and ran again; no other scene ran twice.
    indexes = sorted(
        p.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        for p in _video_gen_pods(cluster, namespace, "four-scenes")
    )
    assert indexes == ["0", "1", "2", "2", "3"]
    assert video["attempts"] == 5
    # Scenes done out of all showed in the PROGRESS column while it ran.
    assert any(p.startswith("1/4 (video_gen ") for p in seen_progress), seen_progress
    printed = cluster.kubectl("get", "videojob", "four-scenes", "-n", namespace).stdout
    assert "4/4" in printed


def test_all_scenes_run_at_once_on_free_gpus_within_the_stages_parallelism(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    manifest = kwok_videojob(
        "eight-scenes",
        stages={
            "script_gen": _scenes(8),
            "video_gen": {"podAnnotations": {"kwok.vidop.io/run-time": "3s"}},
        },
    )
    cluster.apply(manifest, namespace)

    def running_pods() -> int | None:
        running = [
            p
            for p in _video_gen_pods(cluster, namespace, "eight-scenes")
            if p.status.phase == "Running"
        ]
        return len(running) if len(running) >= 2 else None

    at_once = wait_until("scenes to run side by side", running_pods, timeout=60)
    done = wait_for_phase(cluster, namespace, "eight-scenes", "Succeeded", timeout=120)

    assert _video_gen(done)["outputs"] == {"items": 8}
    print(f"\n{at_once} scenes ran at once")
    assert at_once >= 2


def test_a_scene_with_invalid_input_fails_the_stage_at_once_without_retries(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    manifest = kwok_videojob(
        "bad-scene",
        stages={
            "script_gen": _scenes(3),
            "video_gen": {"podAnnotations": {"kwok.vidop.io/exit-code": "2"}},
        },
    )
    cluster.apply(manifest, namespace)

    done = wait_for_phase(cluster, namespace, "bad-scene", "Failed", timeout=90)

    video = _video_gen(done)
    assert video["phase"] == "Failed" and video["reason"] == "InvalidInput"
    assert video["message"].startswith("PodFailurePolicy: exited with code 2")


def test_a_script_with_no_scene_count_fails_the_videojob_in_words(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    manifest = kwok_videojob(
        "no-count",
        stages={"script_gen": {"podAnnotations": {"kwok.vidop.io/termination-message": "{}"}}},
    )
    cluster.apply(manifest, namespace)

    done = wait_for_phase(cluster, namespace, "no-count", "Failed", timeout=60)

    failed = next(c for c in done["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "fans out over the scenes of script_gen's summary, which has none" in failed["message"]
    assert not [p for p in _video_gen_pods(cluster, namespace, "no-count")]
