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
from kubernetes.client.exceptions import ApiException

from tests.support import Cluster, Operator, running_operator, wait_until

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


def _videojob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {"prompt": "a cat surfing", **spec},
    }


def _get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "vidop.io", "v1alpha1", namespace, "videojobs", name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return obj


def _cleanup_jobs(cluster: Cluster, namespace: str) -> list[Any]:
    jobs = client.BatchV1Api(cluster.api).list_namespaced_job(
        namespace, label_selector="vidop.io/cleanup=true"
    )
    return list(jobs.items)


def test_a_deleted_videojob_leaves_a_job_that_deletes_its_artifacts(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(_videojob("tidy"), namespace)
    wait_until(
        "the finalizer",
        lambda: (
            FINALIZER
            in ((_get(cluster, namespace, "tidy") or {}).get("metadata") or {}).get(
                "finalizers", []
            )
        ),
    )
    done = wait_until(
        "the VideoJob to succeed",
        lambda: (
            (v := _get(cluster, namespace, "tidy"))
            and (v.get("status") or {}).get("phase") == "Succeeded"
            and v
        ),
    )
    uid = done["metadata"]["uid"]

    cluster.kubectl("delete", "videojob", "tidy", "-n", namespace, "--wait=false")

    wait_until("the VideoJob to go", lambda: _get(cluster, namespace, "tidy") is None)
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
    cluster.apply(_videojob("idle", suspend=True), namespace)
    wait_until(
        "the finalizer",
        lambda: (
            FINALIZER
            in ((_get(cluster, namespace, "idle") or {}).get("metadata") or {}).get(
                "finalizers", []
            )
        ),
    )

    cluster.kubectl("delete", "videojob", "idle", "-n", namespace, "--timeout=30s")

    assert _get(cluster, namespace, "idle") is None
    assert _cleanup_jobs(cluster, namespace) == []
