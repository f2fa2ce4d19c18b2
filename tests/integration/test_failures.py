"""Failures with a cause, on the real control plane: the limits on a stage
that does not start (an image that cannot be pulled, a pod Pending too long),
memory raised after an OOM kill through a successor Job, and a Failed
VideoJob run again from its failed stage when its spec.retry is raised."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support import Cluster, Operator, running_operator, wait_for_phase, wait_until
from vid_operator import config

pytestmark = pytest.mark.cluster

STAGES = ("script_gen", "voice_gen", "video_gen", "compositing")
PULL_LIMIT = 5
PENDING_LIMIT = 8


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    # A platform whose voice_gen raises its memory after an OOM kill (2Gi,
    # then 3Gi, then at most 4Gi), whose GPU stage may wait for a node or
    # quota 8 s, and which gives up on an image after 5 s.
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {
            "s3": {"credentialsSecret": None, "bucket": "videos"},
            "stageDefaults": {"imagePullTimeoutSeconds": PULL_LIMIT},
            "stages": {
                "voice_gen": {"onOOM": {"memoryFactor": 1.5, "maxMemory": "4Gi"}},
                "video_gen": {"pendingTimeoutSeconds": PENDING_LIMIT},
            },
            "overridePolicy": {
                "allowedFields": [*map(str, config.DEFAULT_OVERRIDABLE), "nodeSelector"],
                "allowedPodAnnotations": ["kwok.vidop.io/"],
            },
        },
    ) as running:
        yield running


def _videojob(name: str, **stages: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {"prompt": "a cat surfing", "stages": stages},
    }


def _stage(videojob: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in videojob["status"]["stages"] if s["name"] == name)


def _jobs(cluster: Cluster, namespace: str, stage: str) -> list[Any]:
    jobs = client.BatchV1Api(cluster.api).list_namespaced_job(
        namespace, label_selector=f"vidop.io/stage={stage}"
    )
    return sorted(jobs.items, key=lambda job: job.metadata.creation_timestamp)


def _job_failed_because(job: Any) -> str | None:
    for condition in job.status.conditions or []:
        if condition.type == "Failed" and condition.status == "True":
            return str(condition.reason)
    return None


def _warnings(cluster: Cluster, namespace: str, name: str) -> list[Any]:
    events = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},type=Warning"
    )
    return list(events.items)


def test_an_image_that_cannot_be_pulled_fails_its_stage_after_the_pull_limit(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    stuck = {"kwok.vidop.io/waiting-reason": "ErrImagePull"}
    started = time.monotonic()
    cluster.apply(_videojob("no-image", script_gen={"podAnnotations": stuck}), namespace)

    failed = wait_for_phase(cluster, namespace, "no-image", "Failed", timeout=PULL_LIMIT + 30)

    # Timed from the pod's scheduling, a timestamp of whole seconds.
    assert time.monotonic() - started >= PULL_LIMIT - 1
    script = _stage(failed, "script_gen")
    assert script["reason"] == "ErrImagePull"
    assert script["message"].startswith(
        "ErrImagePull: cannot pull image ghcr.io/vid-operator/script-gen:0.1.0"
    )
    assert f"not retried after imagePullTimeoutSeconds ({PULL_LIMIT} s)" in script["message"]
    condition = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "ErrImagePull"
    # The Job itself is ended (so its pod no longer holds a node), saying why.
    (job,) = _jobs(cluster, namespace, "script_gen")
    assert job.metadata.annotations["vidop.io/ended"] == script["message"]
    wait_until(
        "the Job to fail", lambda: _job_failed_because(_jobs(cluster, namespace, "script_gen")[0])
    )
    wait_until(
        "its pod to go",
        lambda: (
            not client.CoreV1Api(cluster.api)
            .list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}")
            .items
        ),
    )


def test_a_stage_pending_past_its_pending_timeout_fails_with_that_reason(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    nowhere = {"nodeSelector": {f"vidop.io/gpu-model-{namespace[-6:]}": "none"}}
    cluster.apply(_videojob("nowhere", video_gen=nowhere), namespace)

    failed = wait_for_phase(cluster, namespace, "nowhere", "Failed", timeout=PENDING_LIMIT + 40)

    video = _stage(failed, "video_gen")
    assert video["reason"] == "PendingTimeout"
    assert video["message"].startswith(
        f"PendingTimeout: its pod did not start within pendingTimeoutSeconds ({PENDING_LIMIT} s):"
    )
    assert "didn't match Pod's node affinity/selector" in video["message"]
    # voice_gen ran meanwhile; video_gen's Job is ended, not suspended.
    assert _stage(failed, "voice_gen")["phase"] == "Succeeded"
    (job,) = _jobs(cluster, namespace, "video_gen")
    wait_until(
        "the Job to fail", lambda: _job_failed_because(_jobs(cluster, namespace, "video_gen")[0])
    )
    assert not job.spec.suspend


def test_an_oom_kill_gets_a_job_with_more_memory_that_succeeds(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # kwok kills the pod as out of memory at 2Gi only: with more, it succeeds.
    oom_at_2gi = {"podAnnotations": {"kwok.vidop.io/oom-at-memory": "2Gi"}}
    cluster.apply(_videojob("hungry", voice_gen=oom_at_2gi), namespace)

    done = wait_for_phase(cluster, namespace, "hungry", "Succeeded")

    voice = _stage(done, "voice_gen")
    assert voice["run"] == 1 and voice["memoryLimit"] == "3Gi"
    assert voice["history"] == [
        {"jobName": "hungry-voice-gen", "attempts": 1, "reason": "OOMKilled", "memoryLimit": "2Gi"}
    ]
    first, second = _jobs(cluster, namespace, "voice_gen")
    assert first.metadata.name == "hungry-voice-gen"
    assert first.metadata.annotations["vidop.io/ended"].startswith("OOMKilled:")
    assert second.metadata.name == voice["jobName"]
    assert second.metadata.name.startswith("hungry-voice-gen-2-")
    container = second.spec.template.spec.containers[0]
    assert container.resources.limits["memory"] == "3Gi"
    assert container.resources.requests["memory"] == "1536Mi"
    assert second.spec.backoff_limit == 2  # one of the stage's 3 retries went on the OOM kill
    (warning,) = [e for e in _warnings(cluster, namespace, "hungry") if e.reason == "OOMKilled"]
    assert "ran out of memory at 2Gi; its next Job gets 3Gi" in warning.message


def test_an_oom_kill_at_the_maximum_memory_fails_the_stage(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    always = {
        "podAnnotations": {
            "kwok.vidop.io/exit-code": "137",
            "kwok.vidop.io/termination-reason": "OOMKilled",
        }
    }
    cluster.apply(_videojob("greedy", voice_gen=always), namespace)

    failed = wait_for_phase(cluster, namespace, "greedy", "Failed")

    voice = _stage(failed, "voice_gen")
    assert (voice["reason"], voice["memoryLimit"], voice["run"]) == ("OOMKilled", "4Gi", 2)
    assert [h["memoryLimit"] for h in voice["history"]] == ["2Gi", "3Gi"]
    assert "out of memory at its memory limit of 4Gi" in voice["message"]
    assert len(_jobs(cluster, namespace, "voice_gen")) == 3


def test_raising_retry_runs_the_failed_stage_again_and_reuses_the_others(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # No GPU may be asked for in this namespace: video_gen's pod is refused
    # until the quota goes, and its pending limit fails the VideoJob.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-gpus"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "0"}},
    }
    cluster.apply(quota, namespace)
    cluster.apply(_videojob("again"), namespace)
    failed = wait_for_phase(cluster, namespace, "again", "Failed", timeout=PENDING_LIMIT + 40)
    assert _stage(failed, "video_gen")["reason"] == "PendingTimeout"
    script_job = _stage(failed, "script_gen")["jobName"]

    client.CoreV1Api(cluster.api).delete_namespaced_resource_quota("no-gpus", namespace)
    cluster.kubectl(
        "patch", "videojob", "again", "-n", namespace, "--type=merge", "-p", '{"spec":{"retry":1}}'
    )
    done = wait_for_phase(cluster, namespace, "again", "Succeeded")

    assert done["status"]["retries"] == 1
    video = _stage(done, "video_gen")
    assert video["run"] == 1
    assert video["history"][0]["jobName"] == "again-video-gen"
    assert video["history"][0]["reason"] == "PendingTimeout"
    # What had succeeded ran once: one Job each, the same as before.
    assert _stage(done, "script_gen")["jobName"] == script_job
    for stage in ("script_gen", "voice_gen"):
        assert len(_jobs(cluster, namespace, stage)) == 1
    assert len(_jobs(cluster, namespace, "video_gen")) == 2
    cluster.kubectl(
        "wait", "--for=condition=Succeeded", "videojob/again", "-n", namespace, "--timeout=5s"
    )
    events = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=again,reason=Retrying"
    )
    assert [e.message for e in events.items] == ["retry 1: running video_gen again"]
