"""The operator with a real Kueue: stage Jobs created suspended in a LocalQueue
and admitted by Kueue within a ClusterQueue's GPU quota, high priority first
(a WorkloadPriorityClass), the wait said on the VideoJob in Kueue's words,
spec.suspend through the Workload, and no Workload left behind a deleted
VideoJob."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import (
    KUEUE_GROUP,
    KUEUE_VERSION,
    Cluster,
    WatchThread,
    get_videojob,
    kueue_queues,
    kwok_videojob,
    running_operator,
    wait_for_phase,
    wait_until,
)

pytestmark = pytest.mark.cluster

QUOTA = 4


class GpuPods:
    """The most video_gen pods of a namespace not yet finished at once, from
    a watch, and when each VideoJob's first video_gen pod appeared."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._live: set[str] = set()
        self.most = 0
        self.first_seen: dict[str, float] = {}
        self.watching = WatchThread(
            self._record,
            client.CoreV1Api(cluster.api).list_namespaced_pod,
            namespace,
            label_selector="vidop.io/stage=video_gen",
        )

    def _record(self, kind: str, pod: Any, now: float) -> None:
        self.first_seen.setdefault(pod.metadata.labels["vidop.io/videojob"], now)
        if kind == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
            self._live.discard(pod.metadata.name)
        else:
            self._live.add(pod.metadata.name)
        self.most = max(self.most, len(self._live))


@contextlib.contextmanager
def _priority_class(cluster: Cluster, name: str, value: int) -> Iterator[str]:
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_cluster_custom_object(
        KUEUE_GROUP,
        KUEUE_VERSION,
        "workloadpriorityclasses",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": name},
            "value": value,
        },
    )
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object(
                KUEUE_GROUP, KUEUE_VERSION, "workloadpriorityclasses", name
            )


def _videojob(name: str, **spec: Any) -> dict[str, Any]:
    """A kwok VideoJob whose stages run 1 s, but video_gen, which holds its
    GPU for 6 s: rounds of admission far enough apart to tell."""
    videojob = kwok_videojob(name, run_time="1s", **spec)
    videojob["spec"]["stages"]["video_gen"]["podAnnotations"]["kwok.vidop.io/run-time"] = "6s"
    return videojob


@pytest.fixture
def kueue_operator(kueue: Cluster, namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with (
        kueue_queues(kueue, namespace, gpus=QUOTA) as queues,
        _priority_class(kueue, f"{namespace[:40]}-high", 1000) as high,
        running_operator(
            kueue,
            tmp_path,
            {
                "s3": {"credentialsSecret": None, "bucket": "videos"},
                "watchNamespaces": [namespace],
                "queueing": {
                    "kueue": {
                        "enabled": True,
                        "defaultQueueName": queues.local_queue,
                        "workloadPriorityClasses": {"high": high},
                    }
                },
            },
        ),
    ):
        yield {"queue": queues.local_queue, "high": high}


def _stage(videojob: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in videojob["status"]["stages"] if s["name"] == name)


def _workloads(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        KUEUE_GROUP, KUEUE_VERSION, namespace, "workloads"
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def test_kueue_admits_within_the_quota_high_priority_first_and_says_who_waits(
    kueue: Cluster, namespace: str, kueue_operator: dict[str, Any]
) -> None:
    defaults = [f"default-{i}" for i in range(10)]
    pods = GpuPods(kueue, namespace)
    with pods.watching:
        for name in defaults:
            kueue.apply(_videojob(name), namespace)

        def waiting_for_gpus() -> dict[str, Any] | None:
            for name in defaults:
                found = get_videojob(kueue, namespace, name) or {}
                status = found.get("status") or {}
                stages = {s["name"]: s for s in status.get("stages") or []}
                video = stages.get("video_gen") or {}
                if (
                    status.get("phase") == "Queued"
                    and video.get("phase") == "Queued"
                    and "nvidia.com/gpu" in video.get("message", "")
                ):
                    return found
            return None

        queued = wait_until("a VideoJob waiting for Kueue's GPU quota", waiting_for_gpus)
        video = _stage(queued, "video_gen")
        assert "video_gen" in queued["status"]["stage"]
        assert video["message"].startswith(
            f"waiting for quota in LocalQueue {kueue_operator['queue']}: "
        )
        assert "insufficient unused quota for nvidia.com/gpu" in video["message"]  # Kueue's words
        condition = next(c for c in queued["status"]["conditions"] if c["type"] == "Queued")
        assert condition["status"] == "True" and condition["reason"] == "WaitingForQuota"

        # Two high-priority VideoJobs, after the ten.
        waiting = {n for n in defaults if n not in pods.first_seen}
        for name in ("high-0", "high-1"):
            kueue.apply(_videojob(name, priority="high"), namespace)
        for name in [*defaults, "high-0", "high-1"]:
            wait_for_phase(kueue, namespace, name, "Succeeded", timeout=240)

    assert pods.most <= QUOTA, f"{pods.most} video_gen pods at once for a quota of {QUOTA}"
    assert pods.most == QUOTA
    # The high ones' video_gen started in the first round of admissions after
    # theirs waited: before, or with, the default ones still waiting then.
    # Their script_gen runs first, so one round of default ones (QUOTA of
    # them) may start before their video_gen waits at all; rounds are 6 s
    # apart, the starts of one round within a second.
    late = sorted(pods.first_seen[n] for n in waiting)
    assert len(late) > QUOTA, "the default VideoJobs were admitted before the high ones came"
    highs = max(pods.first_seen["high-0"], pods.first_seen["high-1"])
    assert highs <= late[QUOTA] + 1.0, (pods.first_seen, waiting)
    # Every stage Job went through Kueue: created suspended, with its labels.
    jobs = client.BatchV1Api(kueue.api).list_namespaced_job(namespace).items
    assert all(
        j.metadata.labels.get("kueue.x-k8s.io/queue-name") == kueue_operator["queue"] for j in jobs
    )
    assert {
        j.metadata.labels.get("kueue.x-k8s.io/priority-class")
        for j in jobs
        if j.metadata.labels["vidop.io/videojob"].startswith("high-")
    } == {kueue_operator["high"]}


def test_suspend_with_kueue_holds_through_the_workload_and_resume_finishes(
    kueue: Cluster, namespace: str, kueue_operator: dict[str, Any]
) -> None:
    kueue.apply(kwok_videojob("paused", run_time="20s"), namespace)
    wait_for_phase(kueue, namespace, "paused", "Running")
    custom = client.CustomObjectsApi(kueue.api)
    custom.patch_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, "videojobs", "paused", {"spec": {"suspend": True}}
    )

    wait_for_phase(kueue, namespace, "paused", "Suspended")
    (job,) = client.BatchV1Api(kueue.api).list_namespaced_job(namespace).items
    wait_until("the stage Job suspended", lambda: _suspended(kueue, namespace, job.metadata.name))
    (workload,) = _workloads(kueue, namespace)
    assert workload["spec"]["active"] is False
    time.sleep(3)  # Kueue would resume an admitted Job suspended behind its back
    assert _suspended(kueue, namespace, job.metadata.name)
    assert (get_videojob(kueue, namespace, "paused") or {})["status"]["phase"] == "Suspended"

    custom.patch_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, "videojobs", "paused", {"spec": {"suspend": False}}
    )
    wait_for_phase(kueue, namespace, "paused", "Succeeded", timeout=120)


def _suspended(cluster: Cluster, namespace: str, job: str) -> bool:
    found = client.BatchV1Api(cluster.api).read_namespaced_job(job, namespace)
    return bool(found.spec.suspend)


def test_deleting_a_videojob_waiting_for_quota_leaves_no_workload(
    kueue: Cluster, namespace: str, kueue_operator: dict[str, Any]
) -> None:
    # Four VideoJobs hold the quota for a while; the fifth waits for it.
    for i in range(QUOTA):
        hog = kwok_videojob(f"hog-{i}", run_time="1s")
        hog["spec"]["stages"]["video_gen"]["podAnnotations"]["kwok.vidop.io/run-time"] = "60s"
        kueue.apply(hog, namespace)
    kueue.apply(kwok_videojob("waiting", run_time="1s"), namespace)

    def video_gen_queued() -> bool:
        found = get_videojob(kueue, namespace, "waiting") or {}
        stages = (found.get("status") or {}).get("stages") or []
        return any(s["name"] == "video_gen" and s["phase"] == "Queued" for s in stages)

    wait_until("the fifth VideoJob's video_gen to wait for quota", video_gen_queued, timeout=60)
    client.CustomObjectsApi(kueue.api).delete_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, "videojobs", "waiting"
    )

    def left_behind() -> list[str]:
        return [
            w["metadata"]["name"]
            for w in _workloads(kueue, namespace)
            if any(o["name"].startswith("waiting-") for o in w["metadata"]["ownerReferences"])
        ]

    wait_until("the deleted VideoJob's Workloads to go", lambda: not left_behind(), timeout=60)
