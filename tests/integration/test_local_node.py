"""The local node on the real control plane: the scheduler binds Job pods to it,
it runs them as host processes, and the Job controller sees what a kubelet
would report (exit codes, termination messages, deletions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import Cluster, LocalNodeProcess, wait_until

pytestmark = pytest.mark.cluster


def _job(name: str, node: LocalNodeProcess, script: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]},
                    }
                ]
            },
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    **node.placement(),
                    "containers": [
                        {
                            "name": "main",
                            "image": "not-pulled",
                            "command": ["sh", "-c", script],
                            "terminationMessagePath": "/dev/termination-log",
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                            **container,
                        }
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                }
            },
        },
    }


def _job_condition(cluster: Cluster, namespace: str, name: str) -> Any:
    job = client.BatchV1Api(cluster.api).read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition
    return None


def _pods(cluster: Cluster, namespace: str, job: str) -> list[Any]:
    return list(
        client.CoreV1Api(cluster.api)
        .list_namespaced_pod(namespace, label_selector=f"job-name={job}")
        .items
    )


def test_a_pod_runs_with_its_environment_and_reports_its_termination_message(
    cluster: Cluster, namespace: str, local_node: LocalNodeProcess
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "s3"}, "stringData": {"KEY": "s3cr3t"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cfg"}, "data": {"MODE": "fast"}}
    )
    script = (
        'mkdir -p "$OUT" && echo "$POD $MODE $KEY $(GREETING)" > "$OUT/said" '
        '&& printf \'{"said": "%s"}\' "$(cat "$OUT/said")" > "$VIDOP_TERMINATION_MESSAGE_PATH"'
    )
    job = _job(
        "hello",
        local_node,
        script,
        env=[
            {"name": "GREETING", "value": "hi"},
            {"name": "OUT", "value": "/scratch/out"},
            {"name": "VIDOP_TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "KEY"}}},
        ],
    )
    cluster.apply(job, namespace)

    condition = wait_until("the Job to finish", lambda: _job_condition(cluster, namespace, "hello"))
    assert condition.type == "Complete"
    [pod] = _pods(cluster, namespace, "hello")
    assert pod.spec.node_name == LocalNodeProcess.NAME
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    # `$(GREETING)` in a shell script is command substitution, not Kubernetes expansion:
    # only env values, command and args are expanded.
    assert terminated.message.startswith(f'{{"said": "{pod.metadata.name} fast s3cr3t')
    assert pod.status.phase == "Succeeded"


def test_exit_code_2_fails_the_job_through_the_pod_failure_policy(
    cluster: Cluster, namespace: str, local_node: LocalNodeProcess
) -> None:
    script = 'echo "invalid input: no words" > "$VIDOP_TERMINATION_MESSAGE_PATH"; exit 2'
    env = [{"name": "VIDOP_TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"}]
    cluster.apply(_job("bad", local_node, script, env=env), namespace)

    condition = wait_until("the Job to fail", lambda: _job_condition(cluster, namespace, "bad"))
    assert (condition.type, condition.reason) == ("Failed", "PodFailurePolicy")
    [pod] = _pods(cluster, namespace, "bad")
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 2
    assert terminated.message.strip() == "invalid input: no words"
    assert pod.status.phase == "Failed"


def test_deleting_a_running_job_kills_its_process(
    cluster: Cluster, namespace: str, local_node: LocalNodeProcess, tmp_path: Path
) -> None:
    script = (
        # `$$$$` reaches the shell as `$$`: Kubernetes expands `$$` to `$`.
        'trap "echo stopped > $MARKS/term; exit 143" TERM; echo $$$$ > $MARKS/pid; sleep 300 & wait'
    )
    cluster.apply(
        _job("long", local_node, script, env=[{"name": "MARKS", "value": str(tmp_path)}]),
        namespace,
    )
    pid_file = tmp_path / "pid"
    wait_until("the process to start", pid_file.exists, timeout=30)
    pid = int(wait_until("its pid", lambda: pid_file.read_text().strip()))
    assert Path(f"/proc/{pid}").exists()

    cluster.kubectl("delete", "job", "long", "-n", namespace, "--cascade=foreground", "--wait")

    wait_until("the pod to be gone", lambda: not _pods(cluster, namespace, "long"), timeout=30)
    assert (tmp_path / "term").read_text().strip() == "stopped"
    wait_until("the process to exit", lambda: not Path(f"/proc/{pid}").exists(), timeout=10)


def test_a_missing_secret_holds_the_pod_until_it_appears(
    cluster: Cluster, namespace: str, local_node: LocalNodeProcess
) -> None:
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "late", "key": "KEY"}}}]
    cluster.apply(_job("waits", local_node, 'test "$KEY" = here', env=env), namespace)

    def waiting_reason() -> str | None:
        for pod in _pods(cluster, namespace, "waits"):
            for status in pod.status.container_statuses or []:
                if status.state.waiting:
                    return str(status.state.waiting.reason)
        return None

    assert wait_until("the config error", waiting_reason) == "CreateContainerConfigError"
    client.CoreV1Api(cluster.api).create_namespaced_secret(
        namespace, {"metadata": {"name": "late"}, "stringData": {"KEY": "here"}}
    )
    condition = wait_until("the Job to finish", lambda: _job_condition(cluster, namespace, "waits"))
    assert condition.type == "Complete"


def test_the_node_keeps_its_lease(cluster: Cluster, local_node: LocalNodeProcess) -> None:
    lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(
        LocalNodeProcess.NAME, "kube-node-lease"
    )
    assert lease.spec.holder_identity == LocalNodeProcess.NAME
    assert local_node.ready()
