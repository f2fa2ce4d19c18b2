"""VideoPipelines on the real control plane: a custom DAG run by the real Job
controller on kwok nodes, the pipeline's own status, a started VideoJob that
keeps its pipeline through edits, deletion and operator restarts, and the
model-cache example's Job as the API server stores it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support import Cluster, Operator, running_operator, videopipeline, wait_until

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_TIME = "kwok.vidop.io/run-time"


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    # No S3 credentials: kwok does not run the stages.
    configuration = {"s3": {"credentialsSecret": None, "bucket": "videos"}}
    with running_operator(cluster, tmp_path_factory.mktemp("operator"), configuration) as running:
        yield running


def _videojob(name: str, pipeline: str, run_times: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {
            "prompt": "a custom pipeline",
            "pipeline": pipeline,
            "stages": {
                stage: {"podAnnotations": {RUN_TIME: run_time}}
                for stage, run_time in run_times.items()
            },
        },
    }


def _custom(namespace: str, plural: str, name: str, cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, plural, name
    )
    return found


def _videojob_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = _custom(namespace, "videojobs", name, cluster).get("status") or {}
    return status


def _wait_phase(cluster: Cluster, namespace: str, name: str, phase: str) -> dict[str, Any]:
    wait_until(
        f"VideoJob {name} to be {phase}",
        lambda: _videojob_status(cluster, namespace, name).get("phase") == phase,
        timeout=90,
    )
    return _videojob_status(cluster, namespace, name)


def _ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    status = _custom(namespace, "videopipelines", name, cluster).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def _jobs(cluster: Cluster, namespace: str) -> dict[str, Any]:
    items = client.BatchV1Api(cluster.api).list_namespaced_job(namespace).items
    return {job.metadata.labels["vidop.io/stage"]: job for job in items}


FAN_IN = (
    {"name": "prompt", "image": "x/prompt:1"},
    {"name": "keyframes", "image": "x/keyframes:1", "dependsOn": ["prompt"], "gpus": 1},
    {"name": "narration", "image": "x/narration:1", "dependsOn": ["prompt"]},
    {"name": "segments", "image": "x/segments:1", "dependsOn": ["keyframes"], "gpus": 1},
    {"name": "stitch", "image": "x/stitch:1", "dependsOn": ["segments", "narration"]},
    {"name": "upload-preview", "image": "x/upload:1", "dependsOn": ["stitch"]},
)


def test_a_custom_pipeline_runs_its_dag_and_says_ready(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(videopipeline("fan-in", *FAN_IN), namespace)
    wait_until("the VideoPipeline to be Ready", lambda: _ready(cluster, namespace, "fan-in"))
    ready = _ready(cluster, namespace, "fan-in")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Valid")
    row = cluster.kubectl("get", "vp", "fan-in", "-n", namespace).stdout.splitlines()[1]
    assert row.split()[:4] == ["fan-in", "True", "6", "Valid"]

    run_times = {stage["name"]: "500ms" for stage in FAN_IN}
    cluster.apply(_videojob("custom", "fan-in", run_times), namespace)
    done = _wait_phase(cluster, namespace, "custom", "Succeeded")

    assert done["progress"] == "6/6"
    assert [s["name"] for s in done["stages"]] == [
        "prompt", "keyframes", "narration", "segments", "stitch", "upload-preview",
    ]  # fmt: skip
    jobs = _jobs(cluster, namespace)
    assert jobs["upload-preview"].metadata.name == "custom-upload-preview"
    for stage in FAN_IN:
        for dependency in stage.get("dependsOn", []):
            assert jobs[dependency].status.completion_time <= (
                jobs[stage["name"]].metadata.creation_timestamp
            ), (stage["name"], dependency)
    assert done["pipeline"]["name"] == "fan-in"


def test_a_started_videojob_keeps_its_pipeline_through_edits_deletion_and_restarts(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    original = videopipeline(
        "evolving",
        {"name": "first", "image": "platform/first:1"},
        {"name": "second", "image": "platform/second:1", "dependsOn": ["first"]},
    )
    cluster.apply(original, namespace)
    wait_until("the VideoPipeline to be Ready", lambda: _ready(cluster, namespace, "evolving"))
    cluster.apply(_videojob("kept", "evolving", {"first": "4s", "second": "200ms"}), namespace)
    wait_until("the first stage's Job", lambda: "first" in _jobs(cluster, namespace))

    edited = copy.deepcopy(original)
    edited["spec"]["stages"][1]["image"] = "elsewhere/second:666"
    edited["spec"]["stages"].append({"name": "third", "image": "x/third:1"})
    cluster.apply(edited, namespace)
    operator.kill()
    operator.start()
    cluster.kubectl("delete", "videopipeline", "evolving", "-n", namespace)
    done = _wait_phase(cluster, namespace, "kept", "Succeeded")

    assert done["progress"] == "2/2"
    jobs = _jobs(cluster, namespace)
    assert sorted(jobs) == ["first", "second"]
    (container,) = jobs["second"].spec.template.spec.containers
    assert container.image == "platform/second:1"
    assert done["pipeline"]["generation"] == 1

    # A VideoJob created now waits for the pipeline, and runs once it is back.
    cluster.apply(_videojob("later", "evolving", {"first": "0s", "second": "0s"}), namespace)
    wait_until(
        "the later VideoJob to say it waits",
        lambda: any(
            c.get("reason") == "PipelineNotFound"
            for c in _videojob_status(cluster, namespace, "later").get("conditions") or []
        ),
    )
    assert _videojob_status(cluster, namespace, "later")["phase"] == "Pending"
    cluster.apply(original, namespace)
    done = _wait_phase(cluster, namespace, "later", "Succeeded")
    assert done["progress"] == "2/2"


def test_a_cycle_shows_on_the_pipeline_and_fails_its_videojobs(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(
        videopipeline(
            "loop",
            {"name": "a", "image": "x/a:1", "dependsOn": ["b"]},
            {"name": "b", "image": "x/b:1", "dependsOn": ["a"]},
        ),
        namespace,
    )
    wait_until("the VideoPipeline's verdict", lambda: _ready(cluster, namespace, "loop"))
    verdict = _ready(cluster, namespace, "loop")
    assert verdict is not None
    assert (verdict["status"], verdict["reason"]) == ("False", "InvalidSpec")
    assert "cycle" in verdict["message"]

    cluster.apply(_videojob("on-loop", "loop", {}), namespace)
    failed = _wait_phase(cluster, namespace, "on-loop", "Failed")

    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "InvalidSpec"
    assert "VideoPipeline loop cannot run" in condition["message"]
    assert _jobs(cluster, namespace) == {}
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector=involvedObject.name=on-loop"
    ).stdout
    assert "InvalidSpec" in events


def test_an_override_of_a_stage_the_pipeline_lacks_fails_before_any_job(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    cluster.apply(videopipeline("short", {"name": "only", "image": "x/only:1"}), namespace)
    cluster.apply(_videojob("wrong-stage", "short", {"video_gen": "0s"}), namespace)

    failed = _wait_phase(cluster, namespace, "wrong-stage", "Failed")

    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert (
        "spec.stages names video_gen, which VideoPipeline short does not have"
        in (condition["message"])
    )
    assert _jobs(cluster, namespace) == {}


def test_the_model_cache_example_gives_its_stage_the_cache_the_token_and_the_identity(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    example = yaml.safe_load((EXAMPLES / "pipelines" / "model-cache.yaml").read_text())
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "render-identity"}})
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_example"}}
    )
    # A volume kwok's nodes can mount, bound to the example's claim, so the
    # stage's pod schedules and runs.
    core.create_persistent_volume(
        {
            "metadata": {"name": f"{namespace}-models"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "hostPath": {"path": "/tmp/models"},
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": "model-cache"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "model-cache"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "",
            },
        },
    )
    cluster.apply(example, namespace)
    cluster.apply(
        _videojob("cached", "model-cache", {"script_gen": "0s", "render": "200ms"}), namespace
    )

    wait_until("the render Job", lambda: "render" in _jobs(cluster, namespace))
    job = client.BatchV1Api(cluster.api).read_namespaced_job("cached-render", namespace)
    pod = job.spec.template.spec
    (container,) = pod.containers
    env = {e.name: e for e in container.env}
    assert env["HF_TOKEN"].value_from.secret_key_ref.name == "hf-token"
    assert env["HF_TOKEN"].value is None  # by reference: never in the Job, never in the operator
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["models"].persistent_volume_claim.claim_name == "model-cache"
    assert (volumes["shm"].empty_dir.medium, volumes["shm"].empty_dir.size_limit) == (
        "Memory",
        "8Gi",
    )
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    assert mounts == {"scratch": "/scratch", "models": "/models", "shm": "/dev/shm"}
    assert pod.service_account_name == "render-identity"
    assert pod.automount_service_account_token is True
    assert [s.name for s in pod.image_pull_secrets] == ["registry-credentials"]
    assert pod.termination_grace_period_seconds == 120
    assert job.spec.active_deadline_seconds == 7200
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    # The script stage names no account: it gets no token.
    script = client.BatchV1Api(cluster.api).read_namespaced_job("cached-script-gen", namespace)
    assert script.spec.template.spec.automount_service_account_token is False
    done = _wait_phase(cluster, namespace, "cached", "Succeeded")
    assert done["progress"] == "2/2"
