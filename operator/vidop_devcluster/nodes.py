"""The fake nodes of the development cluster, as plain manifests.

Pure functions (no API calls): :mod:`vidop_devcluster.cluster` creates
what they return, and the unit tests check them without a cluster. kwok
manages exactly the nodes carrying :data:`KWOK_NODE_LABEL`.
"""

from __future__ import annotations

from typing import Any

KWOK_NODE_LABEL = "vidop.io/kwok-node"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPUS_PER_NODE = 8


def node_manifest(
    name: str, *, gpus: int = 0, cpu: str = "32", memory: str = "128Gi", pods: str = "110"
) -> dict[str, Any]:
    """A Node that kwok will bring Ready. GPU nodes get the label, the taint
    and the extended resource that the NVIDIA device plugin would publish."""
    labels = {
        KWOK_NODE_LABEL: "true",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    resources = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "500Gi"}
    spec: dict[str, Any] = {}
    if gpus:
        labels[GPU_PRESENT_LABEL] = "true"
        resources[GPU_RESOURCE] = str(gpus)
        spec["taints"] = [{"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            # kwok's own convention; it also keeps kube-proxy-like agents away.
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": spec,
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def default_nodes(gpu_nodes: int = 2, cpu_nodes: int = 2) -> list[dict[str, Any]]:
    """The standard fleet: GPU nodes shaped like an 8-GPU server, CPU nodes
    like a general-purpose worker."""
    gpu = [
        node_manifest(f"kwok-gpu-{i}", gpus=GPUS_PER_NODE, cpu="96", memory="1024Gi")
        for i in range(gpu_nodes)
    ]
    cpu = [node_manifest(f"kwok-cpu-{i}", cpu="32", memory="128Gi") for i in range(cpu_nodes)]
    return gpu + cpu
