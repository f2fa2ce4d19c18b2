"""Proof that the development cluster's Kueue is the real thing.

Kueue's own manager admits suspended, queue-labelled Jobs within a
ClusterQueue's quota, keeps the rest waiting with the reason on their
Workloads, admits them when quota frees up, and its Workloads go with their
Jobs through the garbage collector.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.support import (
    KUEUE_GROUP,
    KUEUE_VERSION,
    QUEUE_NAME_LABEL,
    Cluster,
    condition_of,
    kueue_queues,
    wait_until,
    workload_of,
)

pytestmark = pytest.mark.cluster


def _queued_gpu_job(name: str, queue: str, run_time: str) -> dict[str, Any]:
    """A suspended Job for ``queue`` whose one pod asks for a GPU and runs on
    a kwok GPU node for ``run_time``: what the operator makes of a GPU stage."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_NAME_LABEL: queue}},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"kwok.vidop.io/run-time": run_time}},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": "main",
                            "image": "stage:dev",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                },
            },
        },
    }


def _complete(batch: client.BatchV1Api, namespace: str, name: str) -> bool:
    job = batch.read_namespaced_job(name, namespace)
    return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])


def test_kueue_admits_within_quota_and_the_rest_waits(kueue: Cluster, namespace: str) -> None:
    batch = client.BatchV1Api(kueue.api)
    with kueue_queues(kueue, namespace, gpus=2) as queues:
        names = ["gpu-a", "gpu-b", "gpu-c"]
        uids = {
            name: batch.create_namespaced_job(
                namespace, _queued_gpu_job(name, queues.local_queue, run_time="6s")
            ).metadata.uid
            for name in names
        }

        def suspended() -> dict[str, bool]:
            return {n: bool(batch.read_namespaced_job(n, namespace).spec.suspend) for n in names}

        def one_waiting_for_quota() -> dict[str, Any] | None:
            # Exactly two let go, and the third's Workload says why it waits.
            still = [n for n, flag in suspended().items() if flag]
            if len(still) != 1:
                return None
            workload = workload_of(kueue, namespace, uids[still[0]])
            if workload is None or condition_of(workload, "QuotaReserved") != "False":
                return None
            return workload

        waiting = wait_until("Kueue to admit two Jobs of three", one_waiting_for_quota)
        (waiting_job,) = [n for n, flag in suspended().items() if flag]
        reserved = next(c for c in waiting["status"]["conditions"] if c["type"] == "QuotaReserved")
        assert reserved["reason"] == "Pending"
        # e.g. "couldn't assign flavors to pod set main: insufficient unused
        # quota for nvidia.com/gpu in flavor <flavor>, 1 more needed"
        assert "insufficient unused quota for nvidia.com/gpu" in reserved["message"], reserved
        for name in names:
            if name != waiting_job:
                admitted = workload_of(kueue, namespace, uids[name])
                assert admitted is not None
                assert condition_of(admitted, "Admitted") == "True"
                assert admitted["status"]["admission"]["clusterQueue"] == queues.cluster_queue

        # The first two finish, give their quota back, and the third runs.
        for name in names:
            wait_until(f"Job {name} to complete", lambda n=name: _complete(batch, namespace, n))
        assert not any(suspended().values())
        finished = workload_of(kueue, namespace, uids[waiting_job])
        assert finished is not None and condition_of(finished, "Finished") == "True"

        # A deleted Job takes its Workload with it (the garbage collector,
        # once Kueue lets go of its finalizer).
        workload_name = finished["metadata"]["name"]
        batch.delete_namespaced_job(waiting_job, namespace, propagation_policy="Background")
        wait_until(
            f"Workload {workload_name} to be gone",
            lambda: workload_of(kueue, namespace, uids[waiting_job]) is None,
        )


def test_workloads_are_served_in_v1beta1_through_kueues_conversion_webhook(
    kueue: Cluster, namespace: str
) -> None:
    """The CRDs' conversion webhook is Kueue's own webhook server on loopback,
    reached by the API server with the certificate the cluster gave it."""
    custom = client.CustomObjectsApi(kueue.api)
    with kueue_queues(kueue, namespace, gpus=1) as queues:
        old = custom.get_namespaced_custom_object(
            KUEUE_GROUP, "v1beta1", namespace, "localqueues", queues.local_queue
        )
        new = custom.get_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, namespace, "localqueues", queues.local_queue
        )
    assert old["apiVersion"] == f"{KUEUE_GROUP}/v1beta1"
    assert old["spec"]["clusterQueue"] == new["spec"]["clusterQueue"] == queues.cluster_queue
