"""The fake fleet: what the scheduler will see of GPU and CPU nodes."""

from vidop_devcluster import nodes


def test_default_fleet_has_two_gpu_and_two_cpu_nodes_all_managed_by_kwok() -> None:
    fleet = nodes.default_nodes()

    gpu = [n for n in fleet if n["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"]
    cpu = [n for n in fleet if n not in gpu]
    assert len(gpu) == 2 and len(cpu) == 2
    assert all(n["metadata"]["labels"]["vidop.io/kwok-node"] == "true" for n in fleet)
    assert len({n["metadata"]["name"] for n in fleet}) == 4


def test_gpu_nodes_carry_the_taint_and_eight_gpus() -> None:
    node = nodes.node_manifest("g", gpus=8, cpu="96", memory="1024Gi")

    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    for field in ("capacity", "allocatable"):
        assert node["status"][field]["nvidia.com/gpu"] == "8"
        assert node["status"][field]["cpu"] == "96"
        assert node["status"][field]["memory"] == "1024Gi"


def test_cpu_nodes_have_no_gpu_label_taint_or_resource() -> None:
    node = nodes.node_manifest("c")

    assert "nvidia.com/gpu.present" not in node["metadata"]["labels"]
    assert "taints" not in node["spec"]
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
