"""Proof that the development control plane is the real thing.

Each test leans on behaviour only the real components have: the Job
controller's retry accounting and podFailurePolicy, the scheduler's resource
and taint filtering, the garbage collector's cascading deletion, and the API
server's CRD status subresource and printer columns.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from tests.support import Cluster, wait_until

pytestmark = pytest.mark.cluster


def _job(
    name: str,
    *,
    annotations: dict[str, str],
    backoff_limit: int,
    pod_failure_policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": {
            "metadata": {"annotations": annotations},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "stage:dev"}],
            },
        },
    }
    if pod_failure_policy:
        spec["podFailurePolicy"] = pod_failure_policy
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def _finished_condition(batch: client.BatchV1Api, namespace: str, name: str) -> Any:
    job = batch.read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition
    return None


def _pods_of(core: client.CoreV1Api, namespace: str, job: str) -> list[Any]:
    items: list[Any] = core.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
    ).items
    return items


def test_job_succeeds_on_a_kwok_node(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(
        namespace, _job("ok", annotations={"kwok.vidop.io/run-time": "500ms"}, backoff_limit=0)
    )

    condition = wait_until("Job ok to finish", lambda: _finished_condition(batch, namespace, "ok"))

    assert condition.type == "Complete"
    (pod,) = _pods_of(core, namespace, "ok")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name.startswith("kwok-cpu-")


def test_backoff_limit_retries_through_the_job_controller(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(
        namespace, _job("flaky", annotations={"kwok.vidop.io/exit-code": "1"}, backoff_limit=2)
    )

    # The Job controller waits 10 s, then 20 s between retries.
    condition = wait_until(
        "Job flaky to fail", lambda: _finished_condition(batch, namespace, "flaky"), timeout=120
    )

    assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
    pods = _pods_of(core, namespace, "flaky")
    assert len(pods) == 3
    assert {p.status.phase for p in pods} == {"Failed"}
    assert {p.status.container_statuses[0].state.terminated.exit_code for p in pods} == {1}
    assert batch.read_namespaced_job("flaky", namespace).status.failed == 3


def test_pod_failure_policy_fails_the_job_on_exit_code_2(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    batch.create_namespaced_job(
        namespace,
        _job(
            "bad-input",
            annotations={"kwok.vidop.io/exit-code": "2"},
            backoff_limit=5,
            pod_failure_policy=policy,
        ),
    )

    condition = wait_until(
        "Job bad-input to fail", lambda: _finished_condition(batch, namespace, "bad-input")
    )

    assert (condition.type, condition.reason) == ("Failed", "PodFailurePolicy")
    assert len(_pods_of(core, namespace, "bad-input")) == 1


def test_disrupted_pod_is_marked_for_pod_failure_policy(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    policy = {
        "rules": [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    batch.create_namespaced_job(
        namespace,
        _job(
            "evicted",
            annotations={"kwok.vidop.io/exit-code": "137", "kwok.vidop.io/disruption": "true"},
            backoff_limit=5,
            pod_failure_policy=policy,
        ),
    )

    condition = wait_until(
        "Job evicted to fail", lambda: _finished_condition(batch, namespace, "evicted")
    )

    # The rule matched the condition, not the exit code: only a real
    # DisruptionTarget condition on the pod gets here after one pod.
    assert (condition.type, condition.reason) == ("Failed", "PodFailurePolicy")
    (pod,) = _pods_of(core, namespace, "evicted")
    assert any(c.type == "DisruptionTarget" and c.status == "True" for c in pod.status.conditions)


def test_deadline_kills_running_pods_and_fails_the_job(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    job = _job(
        "slow",
        annotations={"kwok.vidop.io/run-time": "1h"},
        backoff_limit=3,
        pod_failure_policy={
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]
        },
    )
    job["spec"]["activeDeadlineSeconds"] = 2
    job["spec"]["podReplacementPolicy"] = "Failed"
    batch.create_namespaced_job(namespace, job)

    condition = wait_until(
        "Job slow to fail", lambda: _finished_condition(batch, namespace, "slow")
    )

    # The Job controller deleted the running pod; kwok, as a kubelet would,
    # killed it so the controller could account for it and let it go.
    assert (condition.type, condition.reason) == ("Failed", "DeadlineExceeded")
    wait_until("the killed pod to be gone", lambda: not _pods_of(core, namespace, "slow"))


def _gpu_pod(name: str, *, gpus: int, tolerate: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "stage:dev",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ],
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
    }
    if tolerate:
        spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_gpu_pods_land_only_where_the_scheduler_allows(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, _gpu_pod("fits", gpus=1, tolerate=True))
    core.create_namespaced_pod(namespace, _gpu_pod("no-toleration", gpus=1, tolerate=False))
    core.create_namespaced_pod(namespace, _gpu_pod("too-many", gpus=9, tolerate=True))

    def running(name: str) -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == "Running" else None

    def unschedulable(name: str) -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return next(
            (
                c
                for c in pod.status.conditions or []
                if c.type == "PodScheduled" and c.reason == "Unschedulable"
            ),
            None,
        )

    fits = wait_until("pod fits to run", lambda: running("fits"))
    node = core.read_node(fits.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.present"] == "true"

    untolerated = wait_until(
        "no-toleration to be unschedulable", lambda: unschedulable("no-toleration")
    )
    assert "untolerated taint" in untolerated.message
    too_many = wait_until("too-many to be unschedulable", lambda: unschedulable("too-many"))
    assert "Insufficient nvidia.com/gpu" in too_many.message
    for name in ("no-toleration", "too-many"):
        pod = core.read_namespaced_pod(name, namespace)
        assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_deleting_the_owner_removes_its_jobs_and_pods(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    job = _job("owned", annotations={"kwok.vidop.io/run-time": "1h"}, backoff_limit=0)
    job["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "owner",
            "uid": owner.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    batch.create_namespaced_job(namespace, job)
    wait_until(
        "the owned Job's pod to run",
        lambda: any(p.status.phase == "Running" for p in _pods_of(core, namespace, "owned")),
    )

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    wait_until(
        "the garbage collector to delete the Job",
        lambda: not batch.list_namespaced_job(namespace).items,
    )
    wait_until("the Job's pods to be gone", lambda: not core.list_namespaced_pod(namespace).items)


_WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.vidop.io"},
    "spec": {
        "group": "test.vidop.io",
        "names": {
            "kind": "Widget",
            "plural": "widgets",
            "singular": "widget",
            "shortNames": ["wg"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_status_subresource_and_printer_columns_through_kubectl(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_WIDGET_CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.test.vidop.io", "--timeout=30s"
    )
    widget = {
        "apiVersion": "test.vidop.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
        "status": {"phase": "Ignored"},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(widget))

    # With a status subresource, the main resource ignores status...
    shown = json.loads(cluster.kubectl("get", "wg", "w1", "-n", namespace, "-o", "json").stdout)
    assert "status" not in shown
    # ...and the status endpoint ignores spec.
    cluster.kubectl(
        "patch",
        "widget",
        "w1",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}, "spec": {"size": 9}}',
    )

    table = cluster.kubectl("get", "widgets", "-n", namespace).stdout.split("\n")
    assert table[0].split() == ["NAME", "PHASE", "SIZE", "AGE"]
    assert table[1].split()[:3] == ["w1", "Ready", "3"]


def test_etcd_refuses_clients_without_a_certificate(cluster: Cluster) -> None:
    if cluster.dev is None:
        pytest.skip("the etcd port is known only for a cluster this session started")
    port = json.loads((cluster.dev.root / "state.json").read_text())["ports"]["etcd-client"]
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE

    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(
            f"https://127.0.0.1:{port}/v3/kv/range", data=b"{}", context=insecure, timeout=5
        )
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)


def test_etcd_keeps_the_data_across_an_apiserver_restart(cluster: Cluster, namespace: str) -> None:
    if cluster.dev is None:
        pytest.skip("restarting kube-apiserver needs a cluster this session started")
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "kept"}, "data": {"k": "v"}})

    cluster.dev.restart_component("kube-apiserver")

    assert core.read_namespaced_config_map("kept", namespace).data == {"k": "v"}
