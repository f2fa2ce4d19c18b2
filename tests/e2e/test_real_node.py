"""Stage pods as containers on a real node: the images this repository builds,
run by containerd under a real kubelet, with the hardened pod spec the
operator writes enforced by the kernel (user, read-only root filesystem,
capabilities, seccomp, memory and CPU limits in cgroups). What only a real
node can show is tested here; tests/e2e/test_videojob_to_mp4.py runs the same
pipeline on the process-based local node."""

from __future__ import annotations

import json
import os
import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import Cluster, Operator, RealNode, create_s3_secret, stages_on, wait_until
from vid_operator.config import DEFAULT_IMAGE_REPOSITORY
from vidop_devcluster import realnode
from vidop_devcluster.s3 import S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]  # a cold image build comes first

SECRET = "vid-operator-s3"
BUCKET = "real-node"
TIMEOUT = 300
STAGE_IMAGE = f"{DEFAULT_IMAGE_REPOSITORY}/script-gen:0.1.0"
SMALL = realnode.DEV_STAGE_RESOURCES

# What a stage container sees of its own confinement, as JSON on stdout and
# in its termination message (the stage contract's summary).
PROBE = textwrap.dedent(
    """
    import json, os, pathlib
    facts = {"uid": os.getuid(), "gid": os.getgid()}
    status = dict(
        line.split(":", 1) for line in pathlib.Path("/proc/self/status").read_text().splitlines()
    )
    facts["capEff"] = status["CapEff"].strip()
    facts["seccomp"] = status["Seccomp"].strip()
    facts["noNewPrivs"] = status["NoNewPrivs"].strip()
    try:
        pathlib.Path("/outside-scratch").write_text("x")
        facts["rootWrite"] = "written"
    except OSError as error:
        facts["rootWrite"] = error.strerror
    scratch = pathlib.Path(os.environ["VIDOP_SCRATCH_DIR"]) / "probe"
    scratch.write_text("x")
    facts["scratchWrite"] = "written"
    facts["serviceAccountToken"] = os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount")
    cgroup = pathlib.Path("/sys/fs/cgroup")
    if (cgroup / "memory.max").exists():
        facts["memoryLimit"] = int((cgroup / "memory.max").read_text())
        quota, period = (cgroup / "cpu.max").read_text().split()
    else:
        facts["memoryLimit"] = int((cgroup / "memory" / "memory.limit_in_bytes").read_text())
        quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text()
        period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text()
    facts["cpuLimit"] = int(quota) / int(period)
    summary = json.dumps(facts)
    print(summary, flush=True)
    pathlib.Path(os.environ["VIDOP_TERMINATION_MESSAGE_PATH"]).write_text(summary)
    """
)


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    real_node: RealNode,
    node_s3: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    cluster.install_videojob_crd()
    node_s3.create_bucket(BUCKET)
    on_the_node = {**real_node.placement(), "resources": SMALL}
    running = Operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {
            **stages_on(on_the_node, node_s3, BUCKET, SECRET),
            "priorityClasses": {"high": None, "low": None},
        },
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def videos(cluster: Cluster, namespace: str, node_s3: S3Server, operator: Operator) -> str:
    create_s3_secret(cluster, namespace, node_s3, SECRET)
    return namespace


def _pipeline(name: str, real_node: RealNode, **stage: Any) -> dict[str, Any]:
    """A one-stage VideoPipeline whose stage runs on the real node from the
    script_gen image, with ``stage``'s fields (command, resources, ...)."""
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoPipeline",
        "metadata": {"name": name},
        "spec": {
            "stages": [
                {
                    "name": "probe",
                    "image": STAGE_IMAGE,
                    **real_node.placement(),
                    "resources": SMALL,
                    "backoffLimit": 0,
                    **stage,
                }
            ]
        },
    }


def _videojob(name: str, pipeline: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {
            "prompt": "A paper boat drifting down a rainy street.",
            "durationSeconds": 4,
            "resolution": "640x360",
            "fps": 12,
            **({"pipeline": pipeline} if pipeline else {}),
            **spec,
        },
    }


def _finished(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    videojob = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, "videojobs", name
    )
    status: dict[str, Any] = videojob.get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def _stage(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(stage for stage in status["stages"] if stage["name"] == name)


def _pods(cluster: Cluster, namespace: str, videojob: str) -> list[client.V1Pod]:
    return list(
        client.CoreV1Api(cluster.api)
        .list_namespaced_pod(namespace, label_selector=f"vidop.io/videojob={videojob}")
        .items
    )


def test_the_pipeline_runs_in_containers_from_the_built_images(
    cluster: Cluster, videos: str, node_s3: S3Server, real_node: RealNode, tmp_path: Path
) -> None:
    cluster.apply(_videojob("boat"), videos)

    status = wait_until(
        "the VideoJob to finish", lambda: _finished(cluster, videos, "boat"), TIMEOUT, 1
    )

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    # No try lost on the way: each stage reached S3 over the pod network at once.
    assert [stage["attempts"] for stage in status["stages"]] == [1, 1, 1, 1]
    bucket, _, key = status["outputs"]["videoUri"].removeprefix("s3://").partition("/")
    video = tmp_path / "boat.mp4"
    node_s3.client().download_file(bucket, key, str(video))
    assert video.stat().st_size > 10_000
    core = client.CoreV1Api(cluster.api)
    pods = _pods(cluster, videos, "boat")
    assert {pod.spec.node_name for pod in pods} == {real_node.shape.name}
    for pod in pods:
        (container,) = pod.status.container_statuses
        assert container.container_id.startswith("containerd://")
        assert container.image.startswith(f"{DEFAULT_IMAGE_REPOSITORY}/")
    # `kubectl logs`: the API server asks the kubelet, which reads containerd's log.
    script_gen = next(p for p in pods if p.metadata.labels["vidop.io/stage"] == "script_gen")
    lines = core.read_namespaced_pod_log(script_gen.metadata.name, videos).splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert {"event": "stage succeeded", "stage": "script_gen"}.items() <= events[-1].items(), lines


def test_a_stage_runs_confined_as_the_pod_spec_says(
    cluster: Cluster, videos: str, real_node: RealNode
) -> None:
    cluster.apply(_pipeline("probe", real_node, command=["python3", "-c", PROBE]), videos)
    cluster.apply(_videojob("confined", pipeline="probe"), videos)

    status = wait_until(
        "the VideoJob to finish", lambda: _finished(cluster, videos, "confined"), TIMEOUT, 1
    )

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    facts = _stage(status, "probe")["outputs"]
    assert (facts["uid"], facts["gid"]) == (10001, 10001)
    assert facts["rootWrite"] == "Read-only file system"
    assert facts["scratchWrite"] == "written"
    assert int(facts["capEff"], 16) == 0  # every capability dropped
    assert facts["seccomp"] == "2"  # a seccomp filter (RuntimeDefault) is on
    assert facts["noNewPrivs"] == "1"
    assert facts["serviceAccountToken"] is False
    assert facts["memoryLimit"] == 1 << 30
    assert facts["cpuLimit"] == 2.0


def test_a_stage_that_writes_outside_its_scratch_folder_fails(
    cluster: Cluster, videos: str, real_node: RealNode
) -> None:
    write = "import pathlib; pathlib.Path('/usr/local/lib/leftover').write_text('x')"
    cluster.apply(_pipeline("writer", real_node, command=["python3", "-c", write]), videos)
    cluster.apply(_videojob("writer", pipeline="writer"), videos)

    status = wait_until(
        "the VideoJob to finish", lambda: _finished(cluster, videos, "writer"), TIMEOUT, 1
    )

    assert status["phase"] == "Failed"
    assert _stage(status, "probe")["reason"] == "BackoffLimitExceeded"
    (pod,) = _pods(cluster, videos, "writer")
    log = client.CoreV1Api(cluster.api).read_namespaced_pod_log(pod.metadata.name, videos)
    assert "Read-only file system" in log


def test_an_allocation_past_the_memory_limit_is_oom_killed_and_the_next_job_gets_more(
    cluster: Cluster, videos: str, real_node: RealNode
) -> None:
    # 200 MiB touched: the kernel kills it at 128Mi; onOOM gives the next Job 512Mi.
    hungry = "data = bytearray(200 * 2**20); print('allocated', len(data))"
    cluster.apply(
        _pipeline(
            "hungry",
            real_node,
            command=["python3", "-c", hungry],
            resources={
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"memory": "128Mi"},
            },
            backoffLimit=1,
            onOOM={"memoryFactor": 4, "maxMemory": "512Mi"},
        ),
        videos,
    )
    cluster.apply(_videojob("hungry", pipeline="hungry"), videos)

    status = wait_until(
        "the VideoJob to finish", lambda: _finished(cluster, videos, "hungry"), TIMEOUT, 1
    )

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    probe = _stage(status, "probe")
    assert probe["memoryLimit"] == "512Mi"
    assert probe["history"][0]["reason"] == "OOMKilled"
    assert probe["history"][0]["memoryLimit"] == "128Mi"
    # The kernel's kill, as the kubelet reported it, named in a Warning.
    warnings = client.CoreV1Api(cluster.api).list_namespaced_event(
        videos, field_selector="involvedObject.name=hungry,reason=OOMKilled"
    )
    (warning,) = warnings.items
    assert "ran out of memory at 128Mi; its next Job gets 512Mi" in warning.message


def test_deleting_the_videojob_stops_the_running_container_one_can_exec_into(
    cluster: Cluster, videos: str, real_node: RealNode
) -> None:
    marker = f"vidop-sleeper-{secrets.token_hex(4)}"
    sleep = f"import time; print('{marker}', flush=True); time.sleep(600)"
    cluster.apply(_pipeline("sleeper", real_node, command=["python3", "-c", sleep]), videos)
    cluster.apply(_videojob("sleeper", pipeline="sleeper"), videos)

    def running_on_the_host() -> list[int]:
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if marker.encode() in (proc / "cmdline").read_bytes():
                        found.append(int(proc.name))
                except OSError:
                    continue
        return found

    pids = wait_until("the stage's process to run", running_on_the_host, TIMEOUT, 0.5)
    # It runs as the stage user; `kubectl exec` reaches it through the kubelet.
    assert os.stat(f"/proc/{pids[0]}").st_uid == 10001
    (pod,) = _pods(cluster, videos, "sleeper")
    inside = cluster.kubectl("exec", pod.metadata.name, "-n", videos, "--", "id", "-u")
    assert inside.stdout.strip() == "10001"
    cluster.kubectl("delete", "videojob", "sleeper", "-n", videos, "--wait=true")

    wait_until("the container to stop", lambda: not running_on_the_host(), 60, 0.5)
    wait_until("the stage pods to go", lambda: not _pods(cluster, videos, "sleeper"), 60, 0.5)


def test_the_nodes_credentials_reach_only_what_a_node_may(
    cluster: Cluster, namespace: str, real_node: RealNode
) -> None:
    # The kubelet's own kubeconfig: system:node:<name> in system:nodes, held to
    # its own Node and its pods' references by the Node authorizer and
    # NodeRestriction, as in a real cluster.
    as_node = f"--kubeconfig={cluster.kubeconfig.parent / 'kubelet.kubeconfig'}"
    client.CoreV1Api(cluster.api).create_namespaced_secret(
        namespace, {"metadata": {"name": "not-for-nodes"}, "stringData": {"k": "v"}}
    )

    def as_the_node(*args: str) -> str:
        done = cluster.kubectl(as_node, *args, check=False)
        assert done.returncode != 0, done.stdout
        return done.stderr

    assert "forbidden" in as_the_node("get", "secret", "not-for-nodes", "-n", namespace)
    assert "forbidden" in as_the_node("label", "node", "kwok-gpu-0", "vidop.io/x=y")
    restricted = "node-restriction.kubernetes.io/pool=mine"
    assert "forbidden" in as_the_node("label", "node", real_node.shape.name, restricted)
    # What it may: read its own Node.
    own = cluster.kubectl(as_node, "get", "node", real_node.shape.name, "-o", "name")
    assert own.stdout.strip() == f"node/{real_node.shape.name}"
