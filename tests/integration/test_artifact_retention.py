"""artifactRetention.policy: delete on the real control plane: each VideoJob
carries the operator's finalizer, and deleting one that ran leaves a cleanup
Job (kwok runs it) for its own prefix, while the VideoJob goes at once; one
that never started leaves none. The cleanup program itself is tested against
S3 in test_artifacts_cleanup.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support import (
    Cluster,
    Operator,
    get_videojob,
    running_operator,
    videojob_manifest,
    wait_for_phase,
    wait_until,
)

pytestmark = pytest.mark.cluster

FINALIZER = "vidop.io/artifacts"


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {
            "s3": {"credentialsSecret": None, "bucket": "videos", "endpointUrl": "http://s3:8333"},
            "artifactRetention": {"policy": "delete"},
            "overridePolicy": {"allowedPodAnnotations": ["kwok.vidop.io/"]},
        },
    ) as running:
        yield running


def _has_finalizer(cluster: Cluster, namespace: str, name: str) -> bool:
    found = get_videojob(cluster, namespace, name) or {}
    return FINALIZER in (found.get("metadata") or {}).get("finalizers", [])


def _cleanup_jobs(cluster: Cluster, namespace: str) -> list[Any]:
    jobs = client.BatchV1Api(cluster.api).list_namespaced_job(
        namespace, label_selector="vidop.io/cleanup=true"
    )
    return list(jobs.items)


def test_a_deleted_videojob_leaves_a_job_that_deletes_its_artifacts(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(videojob_manifest("tidy"), namespace)
    wait_until("the finalizer", lambda: _has_finalizer(cluster, namespace, "tidy"))
    done = wait_for_phase(cluster, namespace, "tidy", "Succeeded")
    uid = done["metadata"]["uid"]

    cluster.kubectl("delete", "videojob", "tidy", "-n", namespace, "--wait=false")

    wait_until("the VideoJob to go", lambda: get_videojob(cluster, namespace, "tidy") is None)
    (job,) = _cleanup_jobs(cluster, namespace)
    assert job.metadata.name == f"tidy-cleanup-{uid[:8]}"
    assert not job.metadata.owner_references
    (container,) = job.spec.template.spec.containers
    env = {e.name: e.value for e in container.env}
    assert env["VIDOP_ARTIFACT_PREFIX"] == f"s3://videos/videojobs/{namespace}/tidy/{uid}/"
    assert container.command == ["vidop-artifacts-cleanup"]
    wait_until(
        "the cleanup Job to complete",
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for c in client.BatchV1Api(cluster.api)
            .read_namespaced_job(job.metadata.name, namespace)
            .status.conditions
            or []
        ),
    )


def test_a_videojob_that_never_started_leaves_no_cleanup_job(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(videojob_manifest("idle", suspend=True), namespace)
    wait_until("the finalizer", lambda: _has_finalizer(cluster, namespace, "idle"))

    cluster.kubectl("delete", "videojob", "idle", "-n", namespace, "--timeout=30s")

    assert get_videojob(cluster, namespace, "idle") is None
    assert _cleanup_jobs(cluster, namespace) == []


def test_a_videojob_deleted_mid_stage_is_cleaned_up_after_its_stages_stop(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    long = {"script_gen": {"podAnnotations": {"kwok.vidop.io/run-time": "120s"}}}
    cluster.apply(videojob_manifest("busy", stages=long), namespace)
    wait_until("the finalizer", lambda: _has_finalizer(cluster, namespace, "busy"))
    batch = client.BatchV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    wait_until(
        "script_gen's pod to run",
        lambda: any(
            p.status.phase == "Running"
            for p in core.list_namespaced_pod(namespace, label_selector="vidop.io/stage").items
        ),
    )

    cluster.kubectl("delete", "videojob", "busy", "-n", namespace, "--wait=false")

    # The stage Job is stopped (its pod goes) before the cleanup Job exists:
    # rounds of listing, each one list of Jobs (and then of pods).
    suspended_in: int | None = None
    cleanup_in: int | None = None
    running_then: list[str] = []
    deadline = time.monotonic() + 60
    for round_ in range(100_000):
        if cleanup_in is not None or time.monotonic() > deadline:
            break
        for job in batch.list_namespaced_job(namespace).items:
            if job.metadata.labels.get("vidop.io/stage") and job.spec.suspend:
                suspended_in = round_ if suspended_in is None else suspended_in
            if job.metadata.labels.get("vidop.io/cleanup"):
                cleanup_in = round_
        if cleanup_in is not None:
            pods = core.list_namespaced_pod(namespace, label_selector="vidop.io/stage").items
            running_then = [p.metadata.name for p in pods if p.status.phase == "Running"]
        time.sleep(0.02)
    assert suspended_in is not None and cleanup_in is not None
    assert suspended_in <= cleanup_in
    assert running_then == []
    wait_until("the VideoJob to go", lambda: get_videojob(cluster, namespace, "busy") is None)
