"""What the local node decides about a pod, as pure functions.

:mod:`vidop_devcluster.localnode` runs pods as host processes; this
module holds the parts that need no API and no process, so the unit tests
cover them exactly: the Node manifest, which pods it can run, the container's
environment and command line (Kubernetes' ``$(VAR)`` expansion included), the
mapping of container paths to host folders, and the status a kubelet would
report at each step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vidop_devcluster.nodes import GPU_PRESENT_LABEL, GPU_RESOURCE, GPU_TAINT_KEY

LOCAL_NODE_LABEL = "vidop.io/local-node"
SIMULATED_GPU_ANNOTATION = "vidop.io/simulated-gpu"
TERMINATION_MESSAGE_LIMIT = 4096
"""Bytes of the termination message a kubelet keeps."""


class PodConfigError(Exception):
    """The pod names something that is missing (a Secret key, a ConfigMap);
    a kubelet reports ``CreateContainerConfigError`` and tries again."""


class UnsupportedPod(Exception):
    """The pod needs something a host process cannot give it; it fails."""


@dataclass(frozen=True)
class NodeShape:
    """What the local node advertises. Capacity is declared, not measured:
    resources are not enforced on host processes."""

    name: str = "vidop-local"
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "20"
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()


def node_manifest(shape: NodeShape) -> dict[str, Any]:
    """The Node object. With ``gpus`` it looks like a GPU node (label, taint
    and extended resource) so GPU stages land on it, and says by annotation
    that the GPUs are simulated: stages take their CPU path unless the host
    really has one."""
    labels = {
        LOCAL_NODE_LABEL: "true",
        "kubernetes.io/hostname": shape.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "local",
        **shape.labels,
    }
    annotations: dict[str, str] = {}
    taints = [dict(taint) for taint in shape.taints]
    if shape.gpus:
        labels[GPU_PRESENT_LABEL] = "true"
        annotations[SIMULATED_GPU_ANNOTATION] = (
            "advertised for scheduling only; stages run on the host's CPU unless it has a GPU"
        )
        taints.append({"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": shape.name, "labels": labels, "annotations": annotations},
        "spec": {"taints": taints} if taints else {},
    }


def placement(shape: NodeShape) -> dict[str, Any]:
    """The pod spec fields (``nodeSelector``, ``tolerations``) that put a pod
    on this node and nowhere else: the demo's operator configuration gives them
    to every stage, so CPU stages tolerate the simulated GPU's taint too."""
    tolerations = [
        {"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}
        for taint in node_manifest(shape)["spec"].get("taints", [])
    ]
    return {"nodeSelector": {"kubernetes.io/hostname": shape.name}, "tolerations": tolerations}


def node_status(shape: NodeShape, now: str, *, ready: bool = True) -> dict[str, Any]:
    """The Node's status subresource, with a fresh Ready heartbeat."""
    resources = {
        "cpu": shape.cpu,
        "memory": shape.memory,
        "pods": shape.pods,
        "ephemeral-storage": "100Gi",
    }
    if shape.gpus:
        resources[GPU_RESOURCE] = str(shape.gpus)
    return {
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": shape.name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "LocalNodeReady" if ready else "LocalNodeStopped",
                    "message": "vid-operator local node runs pods as host processes"
                    if ready
                    else "the local node process stopped",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "vidop-local",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "host-process://",
                "osImage": "",
                "kernelVersion": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        }
    }


def container_of(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The one container a local pod may have."""
    spec = pod["spec"]
    if spec.get("initContainers") or len(spec.get("containers") or []) != 1:
        raise UnsupportedPod("the local node runs pods with exactly one container")
    container: dict[str, Any] = spec["containers"][0]
    if not container.get("command"):
        # Images are not pulled, so their ENTRYPOINT is unknown.
        raise UnsupportedPod("the local node needs the container's command (images are not pulled)")
    return container


def host_paths(
    pod: Mapping[str, Any], container: Mapping[str, Any], sandbox: Path
) -> dict[str, Path]:
    """Container path -> host path: each emptyDir or projected mount gets a
    folder in the pod's sandbox, the termination message a file."""
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
    paths: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"], {})
        if "emptyDir" not in volume and "projected" not in volume:
            raise UnsupportedPod(
                f"volume {mount['name']!r}: the local node supports emptyDir and projected "
                "volumes only"
            )
        paths[mount["mountPath"].rstrip("/") or "/"] = volume_folder(sandbox, mount["name"])
    message_path = container.get("terminationMessagePath") or "/dev/termination-log"
    paths[message_path] = sandbox / "termination-log"
    return paths


def volume_folder(sandbox: Path, volume: str) -> Path:
    """Where a pod volume's files are on the host."""
    return sandbox / "volumes" / volume


DEFAULT_TOKEN_SECONDS = 3600
"""A projected token's lifetime when the pod names none (the API's default)."""


def projected_volumes(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The projected volumes the container mounts."""
    mounted = {mount["name"] for mount in container.get("volumeMounts") or []}
    return [
        volume
        for volume in pod["spec"].get("volumes") or []
        if "projected" in volume and volume["name"] in mounted
    ]


def token_request(pod: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """The TokenRequest a kubelet makes for a ``serviceAccountToken``
    projection: the pod's ServiceAccount, bound to the pod (so the token dies
    with it), for the projection's audience and lifetime."""
    metadata = pod["metadata"]
    spec: dict[str, Any] = {
        "expirationSeconds": source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS,
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata["name"],
            "uid": metadata["uid"],
        },
    }
    if source.get("audience"):
        spec["audiences"] = [source["audience"]]
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def service_account_of(pod: Mapping[str, Any]) -> str:
    return str(pod["spec"].get("serviceAccountName") or "default")


TokenSource = Callable[[Mapping[str, Any]], str]
"""A TokenRequest (:func:`token_request`) -> the token the API server issued."""


def projected_files(
    pod: Mapping[str, Any], volume: Mapping[str, Any], *, tokens: TokenSource, config_maps: Lookup
) -> dict[str, str]:
    """A projected volume's files (path inside it -> content), as a kubelet
    writes them: ``serviceAccountToken`` and ``configMap`` sources (all
    keys, or the listed ``items``); a missing ConfigMap or key is a
    :class:`PodConfigError` unless the source is optional."""
    namespace = pod["metadata"]["namespace"]
    files: dict[str, str] = {}
    for source in volume["projected"].get("sources") or []:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files[token["path"]] = tokens(token_request(pod, token))
        elif "configMap" in source:
            files.update(_config_map_files(source["configMap"], namespace, config_maps))
        else:
            kinds = ", ".join(sorted(source))
            raise UnsupportedPod(
                f"volume {volume['name']!r}: the local node projects serviceAccountToken and "
                f"configMap sources only, not {kinds}"
            )
    return files


def _config_map_files(
    ref: Mapping[str, Any], namespace: str, config_maps: Lookup
) -> dict[str, str]:
    data = config_maps(namespace, ref["name"])
    if data is None:
        if ref.get("optional"):
            return {}
        raise PodConfigError(f"ConfigMap {ref['name']!r} not found")
    items = ref.get("items") or [{"key": key, "path": key} for key in data]
    files: dict[str, str] = {}
    for item in items:
        if item["key"] not in data:
            if ref.get("optional"):
                continue
            raise PodConfigError(f"ConfigMap {ref['name']!r} has no key {item['key']!r}")
        files[item["path"]] = data[item["key"]]
    return files


def token_refresh_seconds(request: Mapping[str, Any]) -> float:
    """When a kubelet replaces a projected token: once 80 % of its lifetime
    has passed, so a reader never holds an expired one."""
    return 0.8 * float(request["spec"]["expirationSeconds"])


def service_environment(api_server: str) -> dict[str, str]:
    """``KUBERNETES_SERVICE_HOST`` and ``_PORT``, which a kubelet gives every
    container: here the API server the node itself talks to (pods run on the
    host, so its address is theirs too)."""
    address = urlsplit(api_server)
    host = address.hostname or "127.0.0.1"
    port = address.port or 443
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port)}


def map_path(value: str, paths: Mapping[str, Path]) -> str:
    """``value`` with a leading container path replaced by its host path
    (longest match first), so ``/scratch/x`` becomes ``<sandbox>/volumes/scratch/x``."""
    for container_path in sorted(paths, key=len, reverse=True):
        if value == container_path or value.startswith(container_path.rstrip("/") + "/"):
            return str(paths[container_path]) + value[len(container_path) :]
    return value


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined variable is substituted,
    an undefined reference stays as written, ``$$`` escapes a ``$``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REFERENCE.sub(substitute, value)


Lookup = Callable[[str, str], Mapping[str, str] | None]
"""(namespace, name) -> the object's data (decoded), or None if it is missing."""


def _field_value(pod: Mapping[str, Any], path: str) -> str:
    metadata = pod["metadata"]
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((metadata.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    raise UnsupportedPod(f"fieldRef {path!r} is not supported by the local node")


def _key_ref(kind: str, ref: Mapping[str, Any], namespace: str, lookup: Lookup) -> str | None:
    data = lookup(namespace, ref["name"])
    if data is not None and ref["key"] in data:
        return data[ref["key"]]
    if ref.get("optional"):
        return None
    missing = "not found" if data is None else f"has no key {ref['key']!r}"
    raise PodConfigError(f"{kind} {ref['name']!r} {missing}")


def environment(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    secrets: Lookup,
    config_maps: Lookup,
) -> dict[str, str]:
    """The container's environment as a kubelet builds it: ``envFrom`` first,
    then ``env`` in order, each value expanded against what came before."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("Secret", source["secretRef"])
            if "secretRef" in source
            else ("ConfigMap", source["configMapRef"])
        )
        data = (secrets if kind == "Secret" else config_maps)(namespace, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise PodConfigError(f"{kind} {ref['name']!r} not found")
        for key, data_value in data.items():
            env[source.get("prefix", "") + key] = data_value
    for variable in container.get("env") or []:
        value = _variable_value(pod, variable, env, secrets=secrets, config_maps=config_maps)
        if value is not None:
            env[variable["name"]] = value
    return env


def _variable_value(
    pod: Mapping[str, Any],
    variable: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    secrets: Lookup,
    config_maps: Lookup,
) -> str | None:
    """One ``env`` entry's value; None for an optional reference that is missing."""
    namespace = pod["metadata"]["namespace"]
    source = variable.get("valueFrom")
    if source is None:
        return expand(variable.get("value", ""), env)
    if "fieldRef" in source:
        return _field_value(pod, source["fieldRef"]["fieldPath"])
    if "secretKeyRef" in source:
        return _key_ref("Secret", source["secretKeyRef"], namespace, secrets)
    if "configMapKeyRef" in source:
        return _key_ref("ConfigMap", source["configMapKeyRef"], namespace, config_maps)
    raise UnsupportedPod(
        f"env {variable['name']!r}: the local node supports literal, fieldRef, "
        "secretKeyRef and configMapKeyRef values"
    )


def command_line(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args, expanded against the environment."""
    return [expand(part, env) for part in [*container["command"], *(container.get("args") or [])]]


def running_status(container_name: str, pid: int, now: str) -> dict[str, Any]:
    """The pod status a kubelet reports once the container has started."""
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                {"type": condition, "status": "True", "lastTransitionTime": now}
                for condition in (
                    "PodReadyToStartContainers",
                    "Initialized",
                    "ContainersReady",
                    "Ready",
                )
            ],
            "containerStatuses": [
                {
                    "name": container_name,
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": "",
                    "imageID": "",
                    "containerID": f"host-process://{pid}",
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
    }


def exit_code_of(returncode: int) -> int:
    """A process's exit status as a container runtime reports it: killed by
    signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def terminated_status(
    container_name: str,
    pid: int,
    exit_code: int,
    message: str,
    started: str,
    finished: str,
    *,
    reason: str | None = None,
) -> dict[str, Any]:
    """The pod status once its container has ended (restartPolicy Never):
    Succeeded on exit 0, otherwise Failed, with the exit code and the
    termination message that podFailurePolicy and the operator read."""
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started,
        "finishedAt": finished,
        "containerID": f"host-process://{pid}",
    }
    if message:
        terminated["message"] = message.encode()[-TERMINATION_MESSAGE_LIMIT:].decode(
            errors="ignore"
        )
    return {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": [
                {
                    "type": condition,
                    "status": "False",
                    "reason": "PodCompleted",
                    "lastTransitionTime": finished,
                }
                for condition in ("ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": container_name,
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "image": "",
                    "imageID": "",
                    "containerID": f"host-process://{pid}",
                    "state": {"terminated": terminated},
                }
            ],
        }
    }


def failed_to_start_status(
    container_name: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    """A pod the local node cannot run at all: Failed at once, no retry loop."""
    return {
        "status": {
            "phase": "Failed",
            "reason": reason,
            "message": message,
            "containerStatuses": [
                {
                    "name": container_name,
                    "ready": False,
                    "restartCount": 0,
                    "image": "",
                    "imageID": "",
                    "state": {
                        "terminated": {
                            "exitCode": 128,
                            "reason": reason,
                            "message": message,
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
    }


def waiting_status(container_name: str, reason: str, message: str) -> dict[str, Any]:
    """A container that cannot start yet (a Secret that may still appear)."""
    return {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": container_name,
                    "ready": False,
                    "restartCount": 0,
                    "image": "",
                    "imageID": "",
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ],
        }
    }
