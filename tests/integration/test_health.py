"""What tools and people read of a VideoJob's health, on the real control
plane: kstatus' verdict (the library Flux decides with, run as
hack/kstatus) for VideoJobs and VideoPipelines in every phase, the failed
ones found with a field selector, and the Events ``kubectl describe`` shows."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support import (
    Cluster,
    Operator,
    kwok_videojob,
    running_operator,
    videopipeline,
    wait_for_phase,
    wait_until,
)

pytestmark = pytest.mark.cluster

STAGES = ("script_gen", "voice_gen", "video_gen", "compositing")


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {"s3": {"credentialsSecret": None, "bucket": "videos"}},
    ) as running:
        yield running


def _kstatus(cluster: Cluster, namespace: str, kind: str) -> dict[str, str]:
    """kstatus' verdict on each object of ``kind`` in the namespace."""
    listed = cluster.kubectl("get", kind, "-n", namespace, "-o", "json").stdout
    verdicts = subprocess.run(
        [str(cluster.bin_dir / "kstatus")],
        input=listed,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {line["name"]: line["status"] for line in map(json.loads, verdicts.splitlines()) if line}


def _conditions(videojob: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in videojob["status"]["conditions"]}


def test_kstatus_reads_every_phase_right(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    exit_2 = {"podAnnotations": {"kwok.vidop.io/exit-code": "2"}}
    for manifest in (
        kwok_videojob("succeeds"),
        kwok_videojob("fails", stages={"script_gen": exit_2}),
        kwok_videojob("runs", run_time="1h"),
        kwok_videojob("suspended", suspend=True),
        kwok_videojob("waits-for-its-pipeline", pipeline="not-applied-yet"),
        # Allowed by the schema, refused by the platform's override policy.
        kwok_videojob("invalid", stages={"script_gen": {"image": "docker.io/someone/else:1"}}),
    ):
        cluster.apply(manifest, namespace)
    cluster.apply(videopipeline("ready", {"name": "only", "image": "platform/only:1"}), namespace)
    cycle = videopipeline(
        "cycle",
        {"name": "a", "image": "platform/a:1", "dependsOn": ["b"]},
        {"name": "b", "image": "platform/b:1", "dependsOn": ["a"]},
    )
    cluster.apply(cycle, namespace)
    wait_for_phase(cluster, namespace, "succeeds", "Succeeded")
    for name in ("fails", "invalid"):
        wait_for_phase(cluster, namespace, name, "Failed")
    wait_for_phase(cluster, namespace, "runs", "Running")
    wait_for_phase(cluster, namespace, "suspended", "Suspended")
    waiting = wait_for_phase(cluster, namespace, "waits-for-its-pipeline", "Pending")

    assert wait_until(
        "the VideoPipelines' status",
        lambda: (
            len(_kstatus(cluster, namespace, "videopipelines")) == 2
            and "InProgress" not in _kstatus(cluster, namespace, "videopipelines").values()
        ),
    )
    assert _kstatus(cluster, namespace, "videojobs") == {
        "succeeds": "Current",
        "fails": "Failed",
        "invalid": "Failed",
        "runs": "InProgress",
        # Not done, and not failed: as kstatus reads a suspended Job.
        "suspended": "InProgress",
        # GitOps tools may apply the VideoPipeline after the VideoJob.
        "waits-for-its-pipeline": "InProgress",
    }
    assert _kstatus(cluster, namespace, "videopipelines") == {"ready": "Current", "cycle": "Failed"}
    assert _conditions(waiting) == {
        "Succeeded": "False",
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
    }
    # kubectl wait works on the new conditions as on the old.
    cluster.kubectl("wait", "--for=condition=Ready", "vj/succeeds", "-n", namespace, "--timeout=5s")
    cluster.kubectl("wait", "--for=condition=Stalled", "vj/fails", "-n", namespace, "--timeout=5s")

    # The failed ones, the seeds' dead-letter queue, filtered by the API server.
    failed = cluster.kubectl(
        "get", "vj", "-A", "--field-selector", "status.phase=Failed", "-o", "name"
    ).stdout.split()
    mine = cluster.kubectl(
        "get", "vj", "-n", namespace, "--field-selector", "status.phase=Failed", "-o", "name"
    ).stdout.split()
    assert sorted(mine) == ["videojob.vidop.io/fails", "videojob.vidop.io/invalid"]
    assert set(mine) <= set(failed)
    on_pipeline = cluster.kubectl(
        "get", "vj", "-n", namespace, "--field-selector", "spec.pipeline=not-applied-yet",
        "-o", "name",
    ).stdout.split()  # fmt: skip
    assert on_pipeline == ["videojob.vidop.io/waits-for-its-pipeline"]


def test_describe_shows_a_videojob_start_each_stage_and_its_success_once(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(kwok_videojob("narrated"), namespace)
    wait_for_phase(cluster, namespace, "narrated", "Succeeded")

    def posted() -> list[Any]:
        events = client.CoreV1Api(cluster.api).list_namespaced_event(
            namespace, field_selector="involvedObject.name=narrated,involvedObject.kind=VideoJob"
        )
        return sorted(events.items, key=lambda e: (e.last_timestamp, e.metadata.name))

    # The last write's Events follow the status that says Succeeded.
    wait_until("the Succeeded Event", lambda: any(e.reason == "Succeeded" for e in posted()))
    events = posted()
    assert all(e.type == "Normal" and e.count == 1 for e in events)
    assert Counter(e.reason for e in events) == {
        "Started": 1,
        "StageStarted": 4,
        "StageSucceeded": 4,
        "Succeeded": 1,
    }
    started = {e.message.split()[1] for e in events if e.reason == "StageStarted"}
    succeeded = {e.message.split()[1] for e in events if e.reason == "StageSucceeded"}
    assert started == succeeded == set(STAGES)
    describe = cluster.kubectl("describe", "vj", "narrated", "-n", namespace).stdout
    assert "stage compositing succeeded" in describe and "VideoJob succeeded" in describe
