"""The real node's configurations, built by pure functions: what containerd,
the CNI plugins and the kubelet are told, checked without a host."""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path

import pytest

from vidop_devcluster import realnode
from vidop_devcluster.nodes import GPU_RESOURCE, GPU_TAINT_KEY

LAYOUT = realnode.Layout(Path("/clusters/one/node"))
NETWORK = realnode.Network(bridge="vidop0a1b2c3d", subnet="10.201.7.0/24")
GPU_NODE = realnode.NodeShape(name="vidop-node", gpus=1)
CPU_NODE = realnode.NodeShape(name="plain", gpus=0)


def _kubelet(shape: realnode.NodeShape = GPU_NODE) -> dict[str, object]:
    return realnode.kubelet_config(
        LAYOUT,
        shape=shape,
        suffix="0a1b2c3d",
        network=NETWORK,
        port=40001,
        healthz_port=40002,
        client_ca=Path("/pki/ca.crt"),
        serving_cert=Path("/pki/kubelet-serving.crt"),
        serving_key=Path("/pki/kubelet-serving.key"),
    )


def test_the_gateway_is_the_first_address_of_the_subnet() -> None:
    assert NETWORK.gateway == "10.201.7.1"


def test_the_bridge_has_a_fixed_locally_administered_unicast_mac() -> None:
    mac = bytes.fromhex(NETWORK.bridge_mac.replace(":", ""))
    assert len(mac) == 6
    assert mac[0] & 0b10 and not mac[0] & 0b1  # locally administered, unicast
    assert NETWORK.bridge_mac == realnode.Network(NETWORK.bridge, "10.9.9.0/24").bridge_mac
    assert NETWORK.bridge_mac != realnode.Network("vidopffffffff", NETWORK.subnet).bridge_mac


def test_containerd_keeps_everything_in_the_nodes_folder_and_pulls_nothing() -> None:
    config = tomllib.loads(realnode.containerd_config(LAYOUT))

    assert config["version"] == 2
    assert config["root"] == "/clusters/one/node/containerd/root"
    assert config["state"] == "/clusters/one/node/containerd/state"
    assert config["grpc"]["address"] == "/clusters/one/node/containerd/containerd.sock"
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == realnode.PAUSE_IMAGE
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["stream_server_address"] == "127.0.0.1"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == "/clusters/one/node/cni/net.d"


def test_the_pod_network_is_the_nodes_bridge_without_masquerading() -> None:
    config = realnode.cni_config(LAYOUT, NETWORK)

    (bridge,) = config["plugins"]
    assert (bridge["type"], bridge["bridge"]) == ("bridge", "vidop0a1b2c3d")
    # The host's address is set on the bridge beforehand; as a gateway the
    # plugin would turn on the host's IP forwarding.
    assert bridge["isGateway"] is False
    assert bridge["ipMasq"] is False
    ipam = bridge["ipam"]
    assert ipam["dataDir"] == "/clusters/one/node/cni/leases"
    assert ipam["ranges"] == [[{"subnet": "10.201.7.0/24", "gateway": "10.201.7.1"}]]
    assert ipam["routes"] == [{"dst": "10.201.7.0/24"}]  # no default route out


def test_the_kubelet_serves_on_the_bridge_and_trusts_only_the_api_server() -> None:
    config = _kubelet()

    assert (config["address"], config["port"]) == ("10.201.7.1", 40001)
    assert config["readOnlyPort"] == 0
    assert (config["healthzBindAddress"], config["healthzPort"]) == ("127.0.0.1", 40002)
    assert config["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True},
        "x509": {"clientCAFile": "/pki/ca.crt"},
    }
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["tlsCertFile"] == "/pki/kubelet-serving.crt"


def test_the_kubelet_runs_pods_in_the_nodes_own_cgroup_root_through_containerd() -> None:
    config = _kubelet()

    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == "/vidop-0a1b2c3d"
    assert config["containerRuntimeEndpoint"] == (
        "unix:///clusters/one/node/containerd/containerd.sock"
    )
    assert config["podLogsDir"] == "/clusters/one/node/pod-logs"
    assert config["makeIPTablesUtilChains"] is False
    # The imported images cannot be pulled again: never garbage-collected.
    assert config["imageGCHighThresholdPercent"] == 100


def test_a_gpu_node_registers_tainted_and_labelled_and_says_its_gpus_are_simulated() -> None:
    assert _kubelet()["registerWithTaints"] == [
        {"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"}
    ]
    assert realnode.node_labels(GPU_NODE) == {
        realnode.REAL_NODE_LABEL: "true",
        "nvidia.com/gpu.present": "true",
    }
    patch = realnode.simulated_gpu_patch(GPU_NODE)
    assert patch["status"]["capacity"] == {GPU_RESOURCE: "1"}
    assert patch["status"]["allocatable"] == {GPU_RESOURCE: "1"}
    annotation = realnode.simulated_gpu_annotation(GPU_NODE)["metadata"]["annotations"]
    assert "advertised for scheduling only" in annotation[realnode.SIMULATED_GPU_ANNOTATION]


def test_a_node_without_gpus_has_no_taint_and_no_gpu_label() -> None:
    assert _kubelet(CPU_NODE)["registerWithTaints"] == []
    assert realnode.node_labels(CPU_NODE) == {realnode.REAL_NODE_LABEL: "true"}
    assert realnode.placement(CPU_NODE) == {
        "nodeSelector": {"kubernetes.io/hostname": "plain"},
        "tolerations": [],
    }


def test_the_labels_are_ones_noderestriction_lets_a_kubelet_set() -> None:
    for key in realnode.node_labels(GPU_NODE):
        domain = key.partition("/")[0]
        assert not (domain.endswith("kubernetes.io") or domain.endswith("k8s.io")), key


def test_placement_on_a_gpu_node_tolerates_its_taint() -> None:
    assert realnode.placement(GPU_NODE) == {
        "nodeSelector": {"kubernetes.io/hostname": "vidop-node"},
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }


def test_the_pod_network_overlaps_nothing_the_host_routes() -> None:
    first = realnode.choose_network("0000000a", [])
    taken = [ipaddress.ip_network("10.0.0.0/8")]
    assert ipaddress.ip_network(first.subnet).subnet_of(ipaddress.ip_network("10.0.0.0/8"))
    assert first.bridge == "vidop0000000a"

    # A host route over the whole of 10/8 leaves nothing: say so.
    with pytest.raises(RuntimeError, match="no free"):
        realnode.choose_network("0000000a", taken)

    busy = [ipaddress.ip_network(first.subnet)]
    second = realnode.choose_network("0000000a", busy)
    assert not ipaddress.ip_network(second.subnet).overlaps(busy[0])


def test_the_same_suffix_gets_the_same_network_and_another_suffix_another() -> None:
    one = realnode.choose_network("3e16c048", [])
    assert realnode.choose_network("3e16c048", []) == one
    assert realnode.choose_network("3e16c049", []).subnet != one.subnet


def test_a_sweep_releases_dead_and_unreadable_records_and_keeps_live_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host's records, moved to a folder of the test's: a half-written one
    # (a process killed mid-write), one from before records named their
    # owner, one whose owner (this process) lives. No node of these runs, so
    # releasing one only deletes what is named after its suffix: nothing here.
    monkeypatch.setattr(realnode, "HOST_RECORDS", tmp_path)
    (tmp_path / "0000dead.json").write_text('{"root": ')
    (tmp_path / "000000ff.json").write_text(json.dumps({"root": str(tmp_path / "old")}))
    alive = {"root": str(tmp_path / "mine"), "owner": os.getpid()}
    alive["ownerStart"] = realnode._start_time(os.getpid())
    (tmp_path / "0000a11e.json").write_text(json.dumps(alive))

    with realnode.host_lock():
        swept = realnode.sweep_stale()

    assert sorted(swept) == ["000000ff", "0000dead"]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["0000a11e.json"]
