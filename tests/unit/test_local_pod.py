"""The local node's decisions about a pod: environment, paths, command line, status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vid_operator import contract
from vidop_devcluster import localpod
from vidop_devcluster.localpod import NodeShape, PodConfigError, UnsupportedPod

SECRETS = {("media", "s3"): {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "shh"}}
CONFIG_MAPS = {("media", "settings"): {"LEVEL": "debug", "MODE": "fast"}}


def _secrets(namespace: str, name: str) -> dict[str, str] | None:
    return SECRETS.get((namespace, name))


def _config_maps(namespace: str, name: str) -> dict[str, str] | None:
    return CONFIG_MAPS.get((namespace, name))


def _pod(**container: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "cat-video-gen-x1",
            "namespace": "media",
            "uid": "u-1",
            "labels": {"vidop.io/stage": "video_gen"},
        },
        "spec": {
            "nodeName": "vidop-local",
            "containers": [{"name": "stage", "command": ["vidop-stage-video-gen"], **container}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return localpod.environment(
        pod, pod["spec"]["containers"][0], secrets=_secrets, config_maps=_config_maps
    )


def test_environment_resolves_literals_references_and_the_downward_api() -> None:
    pod = _pod(
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
        env=[
            {"name": "STAGE", "value": "video_gen"},
            {"name": "GREETING", "value": "stage $(STAGE) at $(APP_LEVEL), $$(STAGE) $(NOPE)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "WHICH",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['vidop.io/stage']"}},
            },
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}},
            },
            {
                "name": "MISSING_OK",
                "valueFrom": {"secretKeyRef": {"name": "gone", "key": "x", "optional": True}},
            },
        ],
    )

    assert _env(pod) == {
        "APP_LEVEL": "debug",
        "APP_MODE": "fast",
        "STAGE": "video_gen",
        "GREETING": "stage video_gen at debug, $(STAGE) $(NOPE)",
        "POD": "cat-video-gen-x1",
        "WHICH": "video_gen",
        "AWS_SECRET_ACCESS_KEY": "shh",
    }


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"secretKeyRef": {"name": "gone", "key": "k"}}, "Secret 'gone' not found"),
        ({"secretKeyRef": {"name": "s3", "key": "nope"}}, "Secret 's3' has no key 'nope'"),
        ({"configMapKeyRef": {"name": "settings", "key": "x"}}, "ConfigMap 'settings' has no key"),
    ],
)
def test_a_missing_reference_is_a_config_error_to_retry(
    reference: dict[str, Any], message: str
) -> None:
    with pytest.raises(PodConfigError, match=message):
        _env(_pod(env=[{"name": "X", "valueFrom": reference}]))


def test_resource_field_references_are_refused_clearly() -> None:
    pod = _pod(env=[{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}])
    with pytest.raises(UnsupportedPod, match="'CPU'"):
        _env(pod)


@pytest.mark.parametrize(
    ("spec_change", "message"),
    [
        ({"initContainers": [{"name": "init"}]}, "exactly one container"),
        ({"containers": [{"name": "a"}, {"name": "b"}]}, "exactly one container"),
        ({"containers": [{"name": "stage", "image": "x"}]}, "needs the container's command"),
    ],
)
def test_pods_a_host_process_cannot_stand_for_are_refused(
    spec_change: dict[str, Any], message: str
) -> None:
    pod = _pod()
    pod["spec"].update(spec_change)
    with pytest.raises(UnsupportedPod, match=message):
        localpod.container_of(pod)


def test_container_paths_map_into_the_sandbox(tmp_path: Path) -> None:
    pod = _pod(
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        terminationMessagePath="/dev/termination-log",
    )
    paths = localpod.host_paths(pod, pod["spec"]["containers"][0], tmp_path)

    assert localpod.map_path("/scratch", paths) == str(tmp_path / "volumes/scratch")
    assert localpod.map_path("/scratch/a/b.mp4", paths) == str(tmp_path / "volumes/scratch/a/b.mp4")
    assert localpod.map_path("/dev/termination-log", paths) == str(tmp_path / "termination-log")
    # Only leading whole path components are container paths.
    assert localpod.map_path("/scratchpad", paths) == "/scratchpad"
    assert localpod.map_path("see /scratch", paths) == "see /scratch"


def test_volumes_other_than_emptydir_and_projected_are_refused(tmp_path: Path) -> None:
    pod = _pod(volumeMounts=[{"name": "keys", "mountPath": "/var/run/keys"}])
    pod["spec"]["volumes"] = [{"name": "keys", "secret": {"secretName": "keys"}}]
    with pytest.raises(UnsupportedPod, match="emptyDir and projected volumes only"):
        localpod.host_paths(pod, pod["spec"]["containers"][0], tmp_path)


def _progress_pod() -> dict[str, Any]:
    """A stage pod that reports progress, as vid_operator.jobs builds it."""
    pod = _pod(
        volumeMounts=[
            {"name": "scratch", "mountPath": "/scratch"},
            {
                "name": contract.PROGRESS_VOLUME,
                "mountPath": contract.PROGRESS_DIR,
                "readOnly": True,
            },
        ],
        env=[
            {
                "name": contract.ENV_POD_NAME,
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
            {
                "name": contract.ENV_PROGRESS_TOKEN_FILE,
                "value": f"{contract.PROGRESS_DIR}/{contract.PROGRESS_TOKEN_PATH}",
            },
        ],
    )
    pod["spec"]["serviceAccountName"] = "vidop-stage-progress"
    pod["spec"]["volumes"].append(
        {
            "name": contract.PROGRESS_VOLUME,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {
                        "serviceAccountToken": {
                            "path": contract.PROGRESS_TOKEN_PATH,
                            "expirationSeconds": contract.PROGRESS_TOKEN_SECONDS,
                        }
                    },
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": contract.PROGRESS_CA_PATH}],
                        }
                    },
                ],
            },
        }
    )
    return pod


def test_the_progress_volume_is_projected_into_the_sandbox_as_a_kubelet_would(
    tmp_path: Path,
) -> None:
    pod = _progress_pod()
    container = pod["spec"]["containers"][0]
    requests: list[Any] = []

    def issue(request: Any) -> str:
        requests.append(request)
        return "token-for-" + request["spec"]["boundObjectRef"]["name"]

    def config_maps(namespace: str, name: str) -> dict[str, str] | None:
        found = {("media", "kube-root-ca.crt"): {"ca.crt": "-----BEGIN CERTIFICATE-----"}}
        return found.get((namespace, name))

    (volume,) = localpod.projected_volumes(pod, container)
    files = localpod.projected_files(pod, volume, tokens=issue, config_maps=config_maps)
    paths = localpod.host_paths(pod, container, tmp_path)
    env = {key: localpod.map_path(value, paths) for key, value in _env(pod).items()}

    assert files == {
        "token": "token-for-cat-video-gen-x1",
        "ca.crt": "-----BEGIN CERTIFICATE-----",
    }
    # A token bound to the pod: it stops working when the pod is gone.
    assert requests == [
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": "cat-video-gen-x1",
                    "uid": "u-1",
                },
            },
        }
    ]
    assert localpod.service_account_of(pod) == "vidop-stage-progress"
    assert localpod.token_refresh_seconds(requests[0]) == 480
    assert env == {
        contract.ENV_POD_NAME: "cat-video-gen-x1",
        contract.ENV_PROGRESS_TOKEN_FILE: str(tmp_path / "volumes/vidop-progress/token"),
    }
    assert (
        localpod.volume_folder(tmp_path, contract.PROGRESS_VOLUME)
        == Path(env[contract.ENV_PROGRESS_TOKEN_FILE]).parent
    )


def test_projected_sources_a_kubelet_would_wait_for_or_cannot_project(tmp_path: Path) -> None:
    pod = _progress_pod()
    (volume,) = localpod.projected_volumes(pod, pod["spec"]["containers"][0])

    def no_config_maps(namespace: str, name: str) -> dict[str, str] | None:
        return None

    # The ConfigMap may still appear: retried, as a kubelet does.
    with pytest.raises(PodConfigError, match=r"kube-root-ca\.crt"):
        localpod.projected_files(pod, volume, tokens=lambda r: "t", config_maps=no_config_maps)
    volume["projected"]["sources"][1]["configMap"]["optional"] = True
    assert localpod.projected_files(
        pod, volume, tokens=lambda r: "t", config_maps=no_config_maps
    ) == {"token": "t"}
    # An audience and no lifetime: the API's default lifetime.
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    del token["expirationSeconds"]
    token["audience"] = "vault"
    assert localpod.token_request(pod, token)["spec"]["audiences"] == ["vault"]
    assert localpod.token_request(pod, token)["spec"]["expirationSeconds"] == 3600
    volume["projected"]["sources"].append({"downwardAPI": {"items": []}})
    with pytest.raises(UnsupportedPod, match="not downwardAPI"):
        localpod.projected_files(pod, volume, tokens=lambda r: "t", config_maps=no_config_maps)


def test_pods_reach_the_api_server_the_node_talks_to() -> None:
    assert localpod.service_environment("https://127.0.0.1:36443") == {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "36443",
    }


def test_command_line_is_command_then_args_expanded() -> None:
    container = {"command": ["run", "$(STAGE)"], "args": ["--out=$(OUT)", "$$(OUT)"]}
    assert localpod.command_line(container, {"STAGE": "voice_gen", "OUT": "/scratch"}) == [
        "run",
        "voice_gen",
        "--out=/scratch",
        "$(OUT)",
    ]


@pytest.mark.parametrize(("returncode", "exit_code"), [(0, 0), (2, 2), (-9, 137), (-15, 143)])
def test_exit_codes_are_reported_as_a_container_runtime_would(
    returncode: int, exit_code: int
) -> None:
    assert localpod.exit_code_of(returncode) == exit_code


def test_terminated_status_carries_phase_exit_code_and_the_message() -> None:
    ok = localpod.terminated_status("stage", 7, 0, '{"video": "s3://b/v.mp4"}', "t0", "t1")
    bad = localpod.terminated_status("stage", 7, 2, "x" * 5000, "t0", "t1")

    assert ok["status"]["phase"] == "Succeeded"
    terminated = ok["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert terminated["message"] == '{"video": "s3://b/v.mp4"}'
    assert bad["status"]["phase"] == "Failed"
    bad_terminated = bad["status"]["containerStatuses"][0]["state"]["terminated"]
    assert bad_terminated["reason"] == "Error"
    # A kubelet keeps the last 4 KiB.
    assert len(bad_terminated["message"]) == localpod.TERMINATION_MESSAGE_LIMIT


def test_a_gpu_local_node_looks_like_a_gpu_node_and_says_it_is_simulated() -> None:
    shape = NodeShape(gpus=2, taints=({"key": "vidop.io/local-node", "effect": "NoSchedule"},))
    node = localpod.node_manifest(shape)
    status = localpod.node_status(shape, "t")["status"]

    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert node["metadata"]["labels"]["vidop.io/local-node"] == "true"
    # kwok must leave it alone.
    assert "vidop.io/kwok-node" not in node["metadata"]["labels"]
    assert "simulated-gpu" in "".join(node["metadata"]["annotations"])
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"][
        "taints"
    ]
    assert status["allocatable"]["nvidia.com/gpu"] == "2"
    assert localpod.node_manifest(NodeShape())["spec"] == {}
    assert "nvidia.com/gpu" not in localpod.node_status(NodeShape(), "t")["status"]["capacity"]


def test_the_placement_lands_a_pod_on_the_local_node_through_its_taints() -> None:
    shape = NodeShape(gpus=1, taints=({"key": "vidop.io/local-node", "effect": "NoSchedule"},))
    node = localpod.node_manifest(shape)
    placement = localpod.placement(shape)

    labels = node["metadata"]["labels"]
    assert all(labels.get(key) == value for key, value in placement["nodeSelector"].items())
    # No kwok node has this hostname: the selector alone keeps pods off them.
    assert placement["nodeSelector"] == {"kubernetes.io/hostname": "vidop-local"}
    for taint in node["spec"]["taints"]:
        assert any(
            t["key"] == taint["key"]
            and t["operator"] == "Exists"
            and t["effect"] == taint["effect"]
            for t in placement["tolerations"]
        ), f"nothing tolerates {taint}"
    assert localpod.placement(NodeShape())["tolerations"] == []
