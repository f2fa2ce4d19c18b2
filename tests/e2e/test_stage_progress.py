"""Progress from inside a stage, end to end: a stage process on the local node
reports through its projected, pod-bound token; the operator shows it on the
VideoJob, and writes the status for it at most about once every 5 seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support import (
    Cluster,
    LocalNodeProcess,
    Operator,
    ProgressInstall,
    WatchThread,
    create_s3_secret,
    stage_progress_installed,
    videopipeline,
    wait_until,
)
from vid_operator import contract
from vidop_devcluster.s3 import S3Server

pytestmark = pytest.mark.cluster

BUCKET = "e2e-progress"
SECRET = "e2e-s3"
# A stage that reports twice, six seconds apart, then succeeds.
REPORTING_STAGE = """
import sys, time
from vidop_stages.runtime import run_stage

def work(context):
    context.progress(10, "warming up")
    time.sleep(6)
    context.progress(60, "halfway there")
    time.sleep(6)
    return {"reported": 2}

sys.exit(run_stage(work))
"""


@pytest.fixture
def progress(cluster: Cluster, namespace: str) -> Iterator[ProgressInstall]:
    with stage_progress_installed(cluster, namespace) as install:
        yield install


@pytest.fixture
def operator(
    cluster: Cluster,
    namespace: str,
    local_node: LocalNodeProcess,
    s3: S3Server,
    progress: ProgressInstall,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    cluster.install_videojob_crd()
    s3.create_bucket(BUCKET)
    create_s3_secret(cluster, namespace, s3, SECRET)
    running = Operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {
            "s3": {"endpointUrl": s3.endpoint_url, "bucket": BUCKET, "credentialsSecret": SECRET},
            "priorityClasses": {"high": None, "low": None},
            "watchNamespaces": [namespace],
            # The local node sets KUBERNETES_SERVICE_HOST to the API server,
            # as a kubelet does: no apiServer needed.
            "stageProgress": {"serviceAccountName": progress.account},
        },
    )
    running.start()
    yield running
    running.stop()


def test_a_stage_reports_its_progress_and_the_videojob_shows_it(
    cluster: Cluster,
    namespace: str,
    local_node: LocalNodeProcess,
    progress: ProgressInstall,
    operator: Operator,
) -> None:
    stage = {
        "name": "count",
        "image": "ghcr.io/vid-operator/script-gen:0.1.0",
        "command": ["python", "-c", REPORTING_STAGE],
        **local_node.placement(),
    }
    cluster.apply(videopipeline("reporting", stage), namespace)
    seen: list[tuple[float, str, dict[str, Any]]] = []

    def record(kind: str, videojob: Any, now: float) -> None:
        if videojob["metadata"]["name"] == "reports":
            stages = (videojob.get("status") or {}).get("stages") or [{}]
            seen.append((now, videojob["metadata"]["resourceVersion"], stages[0]))

    custom = client.CustomObjectsApi(cluster.api)
    with WatchThread(
        record,
        custom.list_namespaced_custom_object,
        "vidop.io",
        "v1alpha1",
        namespace,
        "videojobs",
    ):
        cluster.apply(
            {
                "apiVersion": "vidop.io/v1alpha1",
                "kind": "VideoJob",
                "metadata": {"name": "reports"},
                "spec": {"prompt": "count to two", "pipeline": "reporting"},
            },
            namespace,
        )
        wait_until(
            "the stage to succeed",
            lambda: seen and seen[-1][2].get("phase") == "Succeeded",
            timeout=120,
        )
        time.sleep(1)

    shown = [(s.get("progress"), s.get("message")) for _, _, s in seen if s.get("progress")]
    assert ("10%", "warming up") in shown, json.dumps(seen, default=str)
    assert ("60%", "halfway there") in shown, json.dumps(seen, default=str)
    # The pod carries what the stage said last, in the contract's encoding.
    (pod,) = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items
    said = contract.read_progress(pod.metadata.annotations[contract.PROGRESS_ANNOTATION])
    assert said == contract.Progress(60, "halfway there")
    # The token was the pod's own projected one, and nothing automounted.
    assert pod.spec.service_account_name == progress.account
    assert pod.spec.automount_service_account_token is False
    # About 13 s of running: its status written a handful of times, not more.
    running = [rv for _, rv, s in seen if s.get("phase") == "Running"]
    assert len(set(running)) <= 6, running
