"""artifactRetention.policy: delete on the real control plane: each VideoJob
carries the operator's finalizer, and deleting one that ran leaves a cleanup
Job (kwok runs it) for its own prefix, while the VideoJob goes at once; one
that never started leaves none. The cleanup program itself is tested against
S3 in test_artifacts_cleanup.py."""

from __future__ import annotations

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
