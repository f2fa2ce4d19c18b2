"""The operator end to end on the real control plane: VideoJobs in, stage Jobs
run by the real Job controller on kwok nodes, status and Events out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import Cluster, Operator, kwok_videojob, wait_until
from vid_operator import config
from vidop_devcluster import nodes

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("script_gen", "voice_gen", "video_gen", "compositing")


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    cluster.install_videojob_crd()
    for name, value in (("vid-operator-high", 1000), ("vid-operator-low", -10)):
        cluster.apply(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
            }
        )
    running = Operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        # No S3 credentials in these tests: kwok does not run the stages. This
        # platform lets VideoJobs ask for up to 4 GPUs for video_gen and choose
        # nodes by label (the unschedulable test asks for a node that is not there).
        {
            "s3": {"credentialsSecret": None, "bucket": "videos"},
            "stages": {"video_gen": {"maxGpus": 4}},
            "overridePolicy": {
                "allowedFields": [*map(str, config.DEFAULT_OVERRIDABLE), "nodeSelector"],
                "allowedPodAnnotations": ["kwok.vidop.io/"],
            },
        },
    )
    running.start()
    yield running
    running.stop()


def _apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.apply(manifest, namespace)


def _get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, "videojobs", name
    )
    return obj


def _phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    phase: str | None = _get(cluster, namespace, name).get("status", {}).get("phase")
    return phase


def _wait_phase(
    cluster: Cluster, namespace: str, name: str, phase: str, timeout: float = 90
) -> dict[str, Any]:
    wait_until(
        f"VideoJob {name} to be {phase}",
        lambda: _phase(cluster, namespace, name) == phase,
        timeout=timeout,
    )
    return _get(cluster, namespace, name)


def _jobs(cluster: Cluster, namespace: str) -> list[Any]:
    items: list[Any] = client.BatchV1Api(cluster.api).list_namespaced_job(namespace).items
    return items


def _stage_status(videojob: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in videojob["status"]["stages"] if s["name"] == stage)


def test_happy_path_runs_the_dag_and_kubectl_wait_sees_it(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(cluster, namespace, kwok_videojob("cat-surfing", run_time="1s"))

    cluster.kubectl(
        "wait",
        "--for=condition=Succeeded",
        "videojob/cat-surfing",
        "-n",
        namespace,
        "--timeout=90s",
    )

    done = _get(cluster, namespace, "cat-surfing")
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["progress"] == "4/4"
    assert done["status"]["completionTime"]
    assert [s["phase"] for s in done["status"]["stages"]] == ["Succeeded"] * 4
    jobs = {j.metadata.labels["vidop.io/stage"]: j for j in _jobs(cluster, namespace)}
    assert sorted(jobs) == sorted(STAGES)
    # Each stage's Job was created only after its dependencies' Jobs completed.
    for stage, dependencies in (
        ("voice_gen", ["script_gen"]),
        ("video_gen", ["script_gen"]),
        ("compositing", ["voice_gen", "video_gen"]),
    ):
        for dependency in dependencies:
            assert jobs[dependency].status.completion_time <= (
                jobs[stage].metadata.creation_timestamp
            ), (stage, dependency)
    row = cluster.kubectl("get", "vj", "cat-surfing", "-n", namespace).stdout.splitlines()[1]
    assert row.split()[:3] == ["cat-surfing", "Succeeded", "4/4"]
    # The operator kept its hands off what git owns: no finalizers, no kopf
    # annotations, nothing but the status it reports.
    assert not done["metadata"].get("finalizers")
    assert not [k for k in done["metadata"].get("annotations", {}) if "kopf" in k]
    assert "kopf" not in done["status"]


def test_gpu_stage_lands_on_a_gpu_node_with_its_limits(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(cluster, namespace, kwok_videojob("gpu", stages={"video_gen": {"gpus": 2}}))
    _wait_phase(cluster, namespace, "gpu", "Succeeded")

    core = client.CoreV1Api(cluster.api)
    # One pod per scene (kwok's script has two), each on a GPU node with its GPUs.
    pods = core.list_namespaced_pod(namespace, label_selector="vidop.io/stage=video_gen").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
        node = core.read_node(pod.spec.node_name)
        assert node.metadata.labels.get("nvidia.com/gpu.present") == "true"


def test_retryable_failure_is_retried_to_backoff_limit_then_fails_the_job(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(
        cluster,
        namespace,
        kwok_videojob(
            "flaky",
            stages={
                "voice_gen": {"backoffLimit": 1, "podAnnotations": {"kwok.vidop.io/exit-code": "1"}}
            },
        ),
    )

    failed = _wait_phase(cluster, namespace, "flaky", "Failed", timeout=120)

    voice = _stage_status(failed, "voice_gen")
    assert voice["phase"] == "Failed"
    assert voice["attempts"] == 2
    assert "BackoffLimitExceeded" in voice["message"]
    assert failed["status"]["stage"] == "voice_gen"
    condition = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert condition["status"] == "True" and "voice_gen" in condition["message"]
    # No stage after the failure started.
    assert "compositing" not in {
        j.metadata.labels["vidop.io/stage"] for j in _jobs(cluster, namespace)
    }
    cluster.kubectl(
        "wait", "--for=condition=Failed", "videojob/flaky", "-n", namespace, "--timeout=10s"
    )


def test_an_out_of_memory_kill_is_named_with_the_limit(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    oom = {
        "kwok.vidop.io/exit-code": "137",
        "kwok.vidop.io/termination-reason": "OOMKilled",
    }
    _apply(
        cluster,
        namespace,
        kwok_videojob("oom", stages={"voice_gen": {"backoffLimit": 0, "podAnnotations": oom}}),
    )

    failed = _wait_phase(cluster, namespace, "oom", "Failed")

    voice = _stage_status(failed, "voice_gen")
    assert voice["reason"] == "OOMKilled"
    assert "OOMKilled: out of memory at its memory limit of 2Gi" in voice["message"]
    condition = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "OOMKilled"


def test_a_crash_is_named_by_its_exit_code(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    crash = {"kwok.vidop.io/exit-code": "3"}
    _apply(
        cluster,
        namespace,
        kwok_videojob("crash", stages={"script_gen": {"backoffLimit": 0, "podAnnotations": crash}}),
    )

    failed = _wait_phase(cluster, namespace, "crash", "Failed")

    script = _stage_status(failed, "script_gen")
    assert script["reason"] == "BackoffLimitExceeded"
    assert "exit code 3: kwok: exit code 3 on request" in script["message"]


def test_an_image_that_cannot_be_pulled_shows_on_the_stage(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    stuck = {"kwok.vidop.io/waiting-reason": "ImagePullBackOff"}
    _apply(
        cluster,
        namespace,
        kwok_videojob("no-image", stages={"script_gen": {"podAnnotations": stuck}}),
    )

    def stuck_stage() -> dict[str, Any] | None:
        stages = _get(cluster, namespace, "no-image").get("status", {}).get("stages", [])
        script = next((s for s in stages if s["name"] == "script_gen"), None)
        return script if script and script.get("reason") == "ImagePullBackOff" else None

    script = wait_until("the stage to say its image cannot be pulled", stuck_stage)
    assert script["phase"] == "Running"
    assert script["message"].startswith(
        "ImagePullBackOff: cannot pull image ghcr.io/vid-operator/script-gen:0.1.0"
    )


def test_a_pod_the_admission_refuses_is_named_on_the_stage(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # The Job is created; its pod is refused at admission, which the Job
    # controller reports only in FailedCreate Events.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-pods"},
            "spec": {"hard": {"pods": "0"}},
        },
        namespace,
    )
    _apply(cluster, namespace, kwok_videojob("refused"))

    def refused_stage() -> dict[str, Any] | None:
        stages = _get(cluster, namespace, "refused").get("status", {}).get("stages", [])
        script = next((s for s in stages if s["name"] == "script_gen"), None)
        return script if script and script.get("reason") == "PodCreationRefused" else None

    # The resync (every 30 s) reads why a Job has had no pod for 10 s.
    script = wait_until("the stage to say its pod is refused", refused_stage, timeout=75)
    assert script["phase"] == "Running"
    assert script["message"].startswith(
        "PodCreationRefused: the Job controller cannot create its pod:"
    )
    assert "exceeded quota: no-pods" in script["message"]


def test_invalid_input_exit_code_fails_at_once(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(
        cluster,
        namespace,
        kwok_videojob(
            "bad-input",
            stages={
                "script_gen": {
                    "backoffLimit": 5,
                    "podAnnotations": {"kwok.vidop.io/exit-code": "2"},
                }
            },
        ),
    )

    failed = _wait_phase(cluster, namespace, "bad-input", "Failed")

    script = _stage_status(failed, "script_gen")
    assert script["attempts"] == 1
    assert "invalid input" in script["message"]


def test_finished_stage_jobs_get_a_ttl_and_a_failed_one_a_longer_one(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    stages = {"voice_gen": {"podAnnotations": {"kwok.vidop.io/exit-code": "2"}}}
    _apply(cluster, namespace, kwok_videojob("kept-for-logs", stages=stages))

    _wait_phase(cluster, namespace, "kept-for-logs", "Failed")

    def ttls() -> dict[str, int | None]:
        return {
            j.metadata.labels["vidop.io/stage"]: j.spec.ttl_seconds_after_finished
            for j in _jobs(cluster, namespace)
        }

    # The defaults of the configuration: an hour once done, a week once failed.
    wait_until("the failed Job's TTL", lambda: ttls().get("voice_gen") == 604800, timeout=10)
    assert ttls()["script_gen"] == 3600


def test_deleting_a_videojob_mid_stage_removes_its_jobs_and_pods(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    core = client.CoreV1Api(cluster.api)
    _apply(cluster, namespace, kwok_videojob("cancel-me", run_time="1h"))
    wait_until(
        "the first stage's pod to run",
        lambda: any(p.status.phase == "Running" for p in core.list_namespaced_pod(namespace).items),
    )

    cluster.kubectl(
        "delete", "videojob", "cancel-me", "-n", namespace, "--wait=true", "--timeout=60s"
    )

    wait_until("the Jobs to be gone", lambda: not _jobs(cluster, namespace))
    wait_until("the pods to be gone", lambda: not core.list_namespaced_pod(namespace).items)


def test_operator_killed_mid_pipeline_finishes_with_one_job_per_stage(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(cluster, namespace, kwok_videojob("survivor", run_time="2s"))
    (first,) = wait_until("the first stage Job", lambda: _jobs(cluster, namespace))

    operator.kill()
    time.sleep(3)  # the first stage finishes while nobody watches
    operator.start()

    done = _wait_phase(cluster, namespace, "survivor", "Succeeded")
    jobs = _jobs(cluster, namespace)
    assert sorted(j.metadata.labels["vidop.io/stage"] for j in jobs) == sorted(STAGES)
    # The first stage's Job is the one from before the kill, adopted, not re-run.
    (script_job,) = [j for j in jobs if j.metadata.labels["vidop.io/stage"] == "script_gen"]
    assert script_job.metadata.uid == first.metadata.uid
    # video_gen's attempts are its pods: one per scene of kwok's two.
    assert [s["attempts"] for s in done["status"]["stages"]] == [1, 1, 2, 1]


def test_a_cycle_only_the_operator_can_see_fails_as_invalid_spec_and_others_go_on(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(
        cluster,
        namespace,
        {
            "apiVersion": "vidop.io/v1alpha1",
            "kind": "VideoPipeline",
            "metadata": {"name": "loop"},
            "spec": {
                "stages": [
                    {"name": "a", "image": "x/a:1", "dependsOn": ["b"]},
                    {"name": "b", "image": "x/b:1", "dependsOn": ["a"]},
                ]
            },
        },
    )
    loop = kwok_videojob("loop")
    loop["spec"] = {"prompt": "a loop", "pipeline": "loop"}
    _apply(cluster, namespace, loop)
    _apply(cluster, namespace, kwok_videojob("fine"))

    failed = _wait_phase(cluster, namespace, "loop", "Failed")
    _wait_phase(cluster, namespace, "fine", "Succeeded")

    condition = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "InvalidSpec"
    assert "cycle" in condition["message"]
    events = (
        client.CoreV1Api(cluster.api)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=loop")
        .items
    )
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in events)


def test_a_253_character_name_runs_to_success(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    name = "a" * 240 + "-long-name-x"
    name = name + "z" * (253 - len(name))
    _apply(cluster, namespace, kwok_videojob(name))

    _wait_phase(cluster, namespace, name, "Succeeded")

    assert all(len(j.metadata.name) <= 63 for j in _jobs(cluster, namespace))


def test_suspend_holds_the_pipeline_and_resume_finishes_it(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(cluster, namespace, kwok_videojob("paused", suspend=True))
    _wait_phase(cluster, namespace, "paused", "Suspended")
    assert not _jobs(cluster, namespace)

    _apply(cluster, namespace, kwok_videojob("paused", suspend=False))

    _wait_phase(cluster, namespace, "paused", "Succeeded")


def test_ttl_deletes_a_finishedkwok_videojob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(cluster, namespace, kwok_videojob("short-lived", ttlSecondsAfterFinished=2))

    def gone() -> bool:
        return (
            cluster.kubectl("get", "vj", "short-lived", "-n", namespace, check=False).returncode
            != 0
        )

    wait_until("the VideoJob to be deleted after its TTL", gone, timeout=90)


def test_unschedulable_stage_says_so_until_a_gpu_node_appears(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # Only a kind of GPU node that does not exist yet will do.
    label = f"vidop.io/gpu-model-{namespace[-6:]}"
    _apply(
        cluster,
        namespace,
        kwok_videojob("waiting", stages={"video_gen": {"nodeSelector": {label: "h100"}}}),
    )

    def waiting_message() -> str | None:
        status = _get(cluster, namespace, "waiting").get("status", {})
        for stage in status.get("stages", []):
            if stage["name"] == "video_gen" and stage.get("message", "").startswith("waiting"):
                return str(stage["message"])
        return None

    message = wait_until("the stage to report it cannot be scheduled", waiting_message)
    # What to fix first, then the scheduler's own words.
    assert message.startswith("waiting for a node: no node matches its node selector or affinity")
    assert "didn't match Pod's node affinity/selector" in message
    waiting = _get(cluster, namespace, "waiting")["status"]
    assert any(
        c["type"] == "Unschedulable" and c["status"] == "True" for c in waiting["conditions"]
    )

    node = nodes.node_manifest(f"kwok-h100-{namespace[-6:]}", gpus=8)
    node["metadata"]["labels"][label] = "h100"
    core = client.CoreV1Api(cluster.api)
    core.create_node(node)
    try:
        done = _wait_phase(cluster, namespace, "waiting", "Succeeded")
    finally:
        core.delete_node(node["metadata"]["name"])
    assert "message" not in _stage_status(done, "video_gen")
    assert any(
        c["type"] == "Unschedulable" and c["status"] == "False"
        for c in done["status"]["conditions"]
    )


def test_a_stage_past_its_deadline_fails_thekwok_videojob(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(
        cluster,
        namespace,
        kwok_videojob(
            "too-slow", run_time="1h", stages={"script_gen": {"activeDeadlineSeconds": 2}}
        ),
    )

    failed = _wait_phase(cluster, namespace, "too-slow", "Failed")

    assert "DeadlineExceeded" in _stage_status(failed, "script_gen")["message"]


def test_a_disrupted_pod_is_retried_without_counting_as_a_failure(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    core = client.CoreV1Api(cluster.api)
    _apply(
        cluster,
        namespace,
        kwok_videojob("evicted", run_time="5s", stages={"script_gen": {"backoffLimit": 0}}),
    )

    def running_pod() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="vidop.io/stage=script_gen")
        return next((p for p in pods.items if p.status.phase == "Running"), None)

    pod = wait_until("the first stage's pod to run", running_pod)
    # What an eviction looks like to the Job controller: the pod fails with
    # the DisruptionTarget condition (kwok does it on these annotations).
    core.patch_namespaced_pod(
        pod.metadata.name,
        namespace,
        {
            "metadata": {
                "annotations": {
                    "kwok.vidop.io/exit-code": "137",
                    "kwok.vidop.io/disruption": "true",
                    "kwok.vidop.io/run-time": "0s",
                }
            }
        },
    )

    done = _wait_phase(cluster, namespace, "evicted", "Succeeded")

    # backoffLimit 0, yet it went on: the disruption was not counted.
    assert _stage_status(done, "script_gen")["attempts"] == 1
    script_job = next(
        j for j in _jobs(cluster, namespace) if j.metadata.labels["vidop.io/stage"] == "script_gen"
    )
    assert not script_job.status.failed
    assert (
        len(core.list_namespaced_pod(namespace, label_selector="vidop.io/stage=script_gen").items)
        == 2
    )


def test_suspend_mid_run_suspends_the_running_job_and_resume_finishes(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    batch = client.BatchV1Api(cluster.api)
    _apply(cluster, namespace, kwok_videojob("pause-me", run_time="3s"))
    wait_until("the first stage Job", lambda: _jobs(cluster, namespace))

    _apply(cluster, namespace, kwok_videojob("pause-me", run_time="3s", suspend=True))

    _wait_phase(cluster, namespace, "pause-me", "Suspended")
    wait_until(
        "the running Job to be suspended",
        lambda: all(j.spec.suspend for j in _jobs(cluster, namespace)),
    )
    wait_until(
        "its pods to stop",
        lambda: (
            not [
                p
                for p in client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items
                if p.status.phase in ("Pending", "Running")
            ]
        ),
    )
    assert len(batch.list_namespaced_job(namespace).items) == 1

    _apply(cluster, namespace, kwok_videojob("pause-me", run_time="3s", suspend=False))

    _wait_phase(cluster, namespace, "pause-me", "Succeeded")


def test_stage_summaries_become_outputs_and_priority_picks_the_class(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    summary = {
        "videoUri": "s3://videos/x/final.mp4",
        "thumbnailUri": "s3://videos/x/t.jpg",
        "durationSeconds": 20.0,
    }
    _apply(
        cluster,
        namespace,
        kwok_videojob(
            "outputs",
            priority="high",
            stages={
                "script_gen": {
                    "podAnnotations": {"kwok.vidop.io/termination-message": '{"scenes": 4}'}
                },
                "compositing": {
                    "podAnnotations": {"kwok.vidop.io/termination-message": json.dumps(summary)}
                },
            },
        ),
    )

    done = _wait_phase(cluster, namespace, "outputs", "Succeeded")

    assert done["status"]["outputs"] == summary
    assert _stage_status(done, "script_gen")["outputs"] == {"scenes": 4}
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items
    assert {(p.spec.priority_class_name, p.spec.priority) for p in pods} == {
        ("vid-operator-high", 1000)
    }


def test_a_new_videojob_of_a_deleted_ones_name_runs_afresh(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    _apply(cluster, namespace, kwok_videojob("again"))
    old = _wait_phase(cluster, namespace, "again", "Succeeded")

    cluster.kubectl("delete", "videojob", "again", "-n", namespace, "--wait=false")
    _apply(cluster, namespace, kwok_videojob("again"))

    new = _wait_phase(cluster, namespace, "again", "Succeeded")
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    owners = {j.metadata.owner_references[0].uid for j in _jobs(cluster, namespace)}
    assert owners == {new["metadata"]["uid"]}


def test_gitops_reapply_finds_no_conflict_and_no_drift(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    manifest = json.dumps(kwok_videojob("from-git"))
    gitops = ["--server-side", "--field-manager=argocd-controller", "-n", namespace, "-f", "-"]
    cluster.kubectl("apply", *gitops, input=manifest)
    _wait_phase(cluster, namespace, "from-git", "Succeeded")

    # Re-applying what git holds: no conflict (no --force-conflicts) and no change.
    cluster.kubectl("apply", *gitops, input=manifest)
    diff = cluster.kubectl("diff", *gitops, input=manifest, check=False)
    assert diff.returncode == 0, diff.stdout
    managers = {
        (m["manager"], m.get("subresource", ""))
        for m in _get(cluster, namespace, "from-git")["metadata"]["managedFields"]
    }
    # The operator's only fields are in the status subresource.
    assert {m for m in managers if m[0] != "argocd-controller"} <= {
        (manager, "status") for manager, _ in managers
    }


HOSTILE_SUMMARIES = {
    # What stages have written, exiting 0; 1,024 characters is the most a pod
    # annotation (and so kwok's termination message here) may hold.
    "deep-arrays": ("[" * 1024, "nests deeper than 8 levels"),
    "huge-integer": ('{"n": ' + "9" * 309 + "}", "does not fit in 64 bits"),
    "deep-inside-an-object": ('{"a": ' + "[" * 300 + "]" * 300 + "}", "nests deeper"),
    "not-finite": ('{"n": NaN}', "JSON does not allow"),
}


def test_a_hostile_stage_summary_is_left_out_and_the_videojob_still_finishes(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # voice_gen's: video_gen fans out over script_gen's scene count.
    for case, (summary, _) in HOSTILE_SUMMARIES.items():
        stages = {
            "voice_gen": {"podAnnotations": {"kwok.vidop.io/termination-message": summary}},
        }
        _apply(cluster, namespace, kwok_videojob(f"summary-{case}", stages=stages))

    for case, (_, words) in HOSTILE_SUMMARIES.items():
        done = _wait_phase(cluster, namespace, f"summary-{case}", "Succeeded", timeout=120)
        voice = _stage_status(done, "voice_gen")
        assert "outputs" not in voice
        assert words in voice["message"], case

    # The resync still serves everyone after meeting them: a Job refused by a
    # ResourceQuota is created once the quota is gone.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-jobs"},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }
    cluster.apply(quota, namespace)
    time.sleep(1)
    _apply(cluster, namespace, kwok_videojob("after-quota"))
    time.sleep(3)
    assert not any(j.metadata.name.startswith("after-quota") for j in _jobs(cluster, namespace))
    client.CoreV1Api(cluster.api).delete_namespaced_resource_quota("no-jobs", namespace)
    _wait_phase(cluster, namespace, "after-quota", "Succeeded", timeout=120)
