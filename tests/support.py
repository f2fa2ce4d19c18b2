"""Helpers the tests share: the handle on the cluster, the operator and the
local node as processes, the images ``make images`` built, and polling with a
deadline."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, watch

from vid_operator import contract
from vid_operator.api.models import STAGE_NAMES
from vidop_devcluster import DevCluster, localnode, localpod, realnode
from vidop_devcluster.s3 import S3Server

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "vid-operator"
CRDS = ROOT / "crds"
CRD_FILE = CRDS / "videojobs.vidop.io.yaml"
PIPELINE_CRD_FILE = CRDS / "videopipelines.vidop.io.yaml"

KWOK_POLICY = {"overridePolicy": {"allowedPodAnnotations": ["kwok.vidop.io/"]}}
"""The tests' platform lets VideoJobs set the annotations kwok's stage file
reads (run time, exit code, ...) to simulate each stage; no other ones."""


@dataclass
class Cluster:
    """What a test gets: an admin API client, the kubeconfig behind it, the
    folder with kubectl, and the DevCluster when this session started one."""

    api: client.ApiClient
    kubeconfig: Path
    bin_dir: Path
    dev: DevCluster | None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def apply(
        self, manifest: dict[str, Any], namespace: str | None = None, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply`` of one manifest (extra flags in ``args``)."""
        where = ["-n", namespace] if namespace else []
        return self.kubectl(
            "apply", *where, *args, "-f", "-", input=json.dumps(manifest), check=check
        )

    def kubeconfig_of(self, namespace: str, account: str, target: Path) -> Path:
        """A kubeconfig at ``target`` that acts as the ServiceAccount
        ``account`` of ``namespace`` (a token from the TokenRequest API)."""
        token = client.CoreV1Api(self.api).create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 3600}}
        )
        kubeconfig = yaml.safe_load(self.kubeconfig.read_text())
        kubeconfig["users"] = [{"name": account, "user": {"token": token.status.token}}]
        for context in kubeconfig["contexts"]:
            context["context"]["user"] = account
        target.write_text(yaml.safe_dump(kubeconfig))
        return target

    def install_videojob_crd(self) -> None:
        """The generated CRDs (VideoJob and VideoPipeline), applied and Established."""
        for crd in (CRD_FILE, PIPELINE_CRD_FILE):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/videojobs.vidop.io",
            "crd/videopipelines.vidop.io",
            "--timeout=30s",
        )


def _launch(
    module_and_args: list[str], log_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m <module> <args>`` with its output appended to ``log_file``."""
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", *module_and_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL if it is still there after 15 s."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Operator:
    """The operator as its own process, as it runs in a pod; its override
    policy is :data:`KWOK_POLICY` unless ``configuration`` has one, and
    ``flags`` are added to its command line (e.g. ``--leader-elect``)."""

    def __init__(
        self,
        cluster: Cluster,
        folder: Path,
        configuration: dict[str, Any],
        flags: tuple[str, ...] = (),
    ) -> None:
        self.cluster = cluster
        self.folder = folder
        self.flags = flags
        self.log = folder / "operator.log"
        self.config = folder / "config.yaml"
        self.config.write_text(yaml.safe_dump({**KWOK_POLICY, **configuration}))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_port = 0

    def start(self) -> None:
        with socket_port() as port, socket_port() as metrics_port:
            self.port, self.metrics_port = port, metrics_port
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "VIDOP_CONFIG": str(self.config),
        }
        self.process = _launch(
            [
                "vid_operator",
                f"--liveness=http://127.0.0.1:{self.port}/healthz",
                f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                *self.flags,
            ],
            self.log,
            env,
        )
        wait_until("the operator's liveness endpoint", self.alive, timeout=30)

    def alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the operator exited; see {self.log}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/healthz", timeout=1
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        """What its metrics endpoint serves now (the Prometheus text format)."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        _stop(self.process)


@contextlib.contextmanager
def running_operator(
    cluster: Cluster, folder: Path, configuration: dict[str, Any]
) -> Iterator[Operator]:
    """The CRDs installed and the operator running with ``configuration``
    (which names no PriorityClasses: none exist), stopped afterwards."""
    cluster.install_videojob_crd()
    running = Operator(
        cluster, folder, {"priorityClasses": {"high": None, "low": None}, **configuration}
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


class socket_port:
    """A free loopback port, chosen by binding port 0."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *_: object) -> None:
        self.sock.close()


class LocalNodeProcess:
    """``python -m vidop_devcluster.localnode``: the Node that runs its
    pods as host processes. Tainted, so only pods that ask for it land there."""

    NAME = "vidop-local"
    TAINT = "vidop.io/local-node"

    def __init__(self, cluster: Cluster, folder: Path, gpus: int = 1) -> None:
        self.cluster = cluster
        self.folder = folder
        self.log = folder / "local-node.log"
        self.shape = localpod.NodeShape(
            name=self.NAME,
            gpus=gpus,
            taints=({"key": self.TAINT, "value": "true", "effect": "NoSchedule"},),
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = _launch(
            [
                "vidop_devcluster.localnode",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--root={self.folder}",
                *localnode.shape_flags(self.shape),
            ],
            self.log,
        )
        core = client.CoreV1Api(self.cluster.api)
        wait_until("the local node to be Ready", self.ready, timeout=30)
        assert core.read_node(self.NAME).metadata.labels["vidop.io/local-node"] == "true"

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the local node exited; see {self.log}")
        try:
            node = client.CoreV1Api(self.cluster.api).read_node(self.NAME)
        except client.ApiException:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def placement(self) -> dict[str, Any]:
        """What a pod (or a stage override) needs to run here."""
        return localpod.placement(self.shape)

    def stop(self) -> None:
        _stop(self.process)


@dataclass(frozen=True)
class RealNode:
    """The session's real node (containerd and a kubelet, see
    :mod:`vidop_devcluster.realnode`): its shape, and the host's address on
    its bridge, where pods reach the host's servers."""

    shape: realnode.NodeShape
    gateway: str

    def placement(self) -> dict[str, Any]:
        """What a pod (or a stage override) needs to run here."""
        return realnode.placement(self.shape)


def stages_on(placement: dict[str, Any], s3: S3Server, bucket: str, secret: str) -> dict[str, Any]:
    """An operator configuration whose default pipeline runs every stage with
    ``placement`` (a node's, e.g. the local node's: real processes), against
    ``s3``'s ``bucket`` with the credentials in the Secret ``secret``."""
    return {
        "s3": {"endpointUrl": s3.endpoint_url, "bucket": bucket, "credentialsSecret": secret},
        "stages": {stage: placement for stage in STAGE_NAMES},
    }


def create_s3_secret(cluster: Cluster, namespace: str, s3: S3Server, name: str) -> None:
    """The Secret stage pods read the S3 server's keys from (by reference)."""
    environment = s3.environment()
    client.CoreV1Api(cluster.api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": name},
            "stringData": {
                key: environment[key]
                for key in (contract.ENV_S3_ACCESS_KEY, contract.ENV_S3_SECRET_KEY)
            },
        },
    )


def render_chart(
    bin_dir: Path,
    *sets: str,
    release: str = "vidop",
    namespace: str = "vid-operator",
    values: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The chart's manifests as ``helm template`` renders them, with
    ``--set`` for each of ``sets`` and ``values`` as a values file."""
    args = [str(bin_dir / "helm"), "template", release, str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    if values is not None:
        args += ["--values", "-"]
    result = subprocess.run(
        args,
        input=None if values is None else yaml.safe_dump(values),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"helm template failed ({result.returncode}):\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class ProgressInstall:
    """The chart's progress objects for one release, in force in one namespace."""

    namespace: str
    account: str
    policy: str


@contextlib.contextmanager
def stage_progress_installed(cluster: Cluster, namespace: str) -> Iterator[ProgressInstall]:
    """The chart's objects for in-stage progress (``stageProgress.enabled``,
    in ``namespace``) applied: the ClusterRole, the ServiceAccount, its
    RoleBinding and the admission policy with its binding; the cluster-scoped
    ones removed afterwards. The ServiceAccount's name is the namespace's
    own: the policy matches that name in every namespace, and another test's
    policy may still be going away."""
    release = f"g{namespace[-6:]}"
    account = f"progress-{namespace[-6:]}"
    name = f"{release}-vid-operator-stage-progress"
    documents = render_chart(
        cluster.bin_dir,
        release=release,
        namespace="vid-operator",
        values={
            "stageProgress": {
                "enabled": True,
                "serviceAccountName": account,
                "namespaces": [namespace],
            }
        },
    )
    kinds = {
        "ClusterRole",
        "ServiceAccount",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    wanted = [
        d for d in documents if d["kind"] in kinds and d["metadata"]["name"] in (name, account)
    ]
    assert len(wanted) == 5, [(d["kind"], d["metadata"]["name"]) for d in documents]
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": wanted}, None, "--server-side")
    try:
        yield ProgressInstall(namespace, account, name)
    finally:
        cluster.kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy,clusterrole",
            "-l",
            f"app.kubernetes.io/instance={release}",
            "--wait=false",
        )


def videojob_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A VideoJob to apply: a prompt, and ``spec``'s fields."""
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {"prompt": "a cat surfing", **spec},
    }


def kwok_videojob(name: str, run_time: str = "200ms", **spec: Any) -> dict[str, Any]:
    """A VideoJob of the default pipeline whose stages kwok runs for
    ``run_time`` each, unless ``spec``'s stages say otherwise (kwok's
    script_gen says the script has 2 scenes: see kwok.yaml)."""
    stages = spec.pop("stages", {})
    for stage in STAGE_NAMES:
        annotations = stages.setdefault(stage, {}).setdefault("podAnnotations", {})
        annotations.setdefault("kwok.vidop.io/run-time", run_time)
    return videojob_manifest(name, stages=stages, **spec)


def get_videojob(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The VideoJob as the API server has it; None once it is gone."""
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "vidop.io", "v1alpha1", namespace, "videojobs", name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return obj


def wait_for_phase(
    cluster: Cluster, namespace: str, name: str, phase: str, timeout: float = 90
) -> dict[str, Any]:
    """The VideoJob once its status says ``phase``."""

    def reached() -> dict[str, Any] | None:
        found = get_videojob(cluster, namespace, name)
        return found if found and (found.get("status") or {}).get("phase") == phase else None

    found: dict[str, Any] = wait_until(f"VideoJob {name} to be {phase}", reached, timeout=timeout)
    return found


def wait_until(what: str, check: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


_INTEGRATED = re.compile(r"Summary:.*?Integrated loudness:\s+I:\s+(-?[0-9.]+|-inf) LUFS", re.S)


def integrated_lufs(media: Path) -> float:
    """The first audio stream's integrated loudness (ITU-R BS.1770), by
    ffmpeg's ``ebur128`` filter, from its summary on stderr."""
    completed = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(media),
         "-map", "0:a:0", "-filter:a", "ebur128=framelog=verbose", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found = _INTEGRATED.findall(completed.stderr)
    assert found, completed.stderr[-2000:]
    return float(found[-1])


def videopipeline(name: str, *stages: dict[str, Any]) -> dict[str, Any]:
    """A VideoPipeline manifest with these stages."""
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoPipeline",
        "metadata": {"name": name},
        "spec": {"stages": list(stages)},
    }


KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class KueueQueues:
    """The names :func:`kueue_queues` created: a ResourceFlavor and a
    ClusterQueue (cluster-scoped, named after the test's namespace) and the
    LocalQueue in the namespace that Jobs name in :data:`QUEUE_NAME_LABEL`."""

    flavor: str
    cluster_queue: str
    local_queue: str


@contextlib.contextmanager
def kueue_queues(
    cluster: Cluster,
    namespace: str,
    gpus: int = 4,
    *,
    cpu: str = "1000",
    memory: str = "10Ti",
    flavor_spec: dict[str, Any] | None = None,
    strategy: str = "BestEffortFIFO",
) -> Iterator[KueueQueues]:
    """A ResourceFlavor, a ClusterQueue that admits only ``namespace``'s
    workloads with a quota of ``gpus`` ``nvidia.com/gpu`` (and ``cpu`` and
    ``memory``, generous by default), and a LocalQueue ``gpu`` in
    ``namespace`` pointing at it; waits until the ClusterQueue is Active.
    The cluster-scoped objects are deleted afterwards (the namespace takes
    the LocalQueue with it). ``flavor_spec`` is the ResourceFlavor's spec
    (node labels, tolerations), empty by default; ``strategy`` the
    ClusterQueue's queueingStrategy."""
    custom = client.CustomObjectsApi(cluster.api)
    names = KueueQueues(flavor=namespace, cluster_queue=namespace, local_queue="gpu")
    custom.create_cluster_custom_object(
        KUEUE_GROUP,
        KUEUE_VERSION,
        "resourceflavors",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "ResourceFlavor",
            "metadata": {"name": names.flavor},
            "spec": flavor_spec or {},
        },
    )
    try:
        custom.create_cluster_custom_object(
            KUEUE_GROUP,
            KUEUE_VERSION,
            "clusterqueues",
            {
                "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
                "kind": "ClusterQueue",
                "metadata": {"name": names.cluster_queue},
                "spec": {
                    "queueingStrategy": strategy,
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                            "flavors": [
                                {
                                    "name": names.flavor,
                                    "resources": [
                                        {"name": "cpu", "nominalQuota": cpu},
                                        {"name": "memory", "nominalQuota": memory},
                                        {"name": "nvidia.com/gpu", "nominalQuota": gpus},
                                    ],
                                }
                            ],
                        }
                    ],
                },
            },
        )
        custom.create_namespaced_custom_object(
            KUEUE_GROUP,
            KUEUE_VERSION,
            namespace,
            "localqueues",
            {
                "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
                "kind": "LocalQueue",
                "metadata": {"name": names.local_queue},
                "spec": {"clusterQueue": names.cluster_queue},
            },
        )

        def active() -> bool:
            queue = custom.get_cluster_custom_object(
                KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", names.cluster_queue
            )
            return condition_of(queue, "Active") == "True"

        wait_until(f"ClusterQueue {names.cluster_queue} to be Active", active, timeout=30)
        yield names
    finally:
        for plural, name in (
            ("clusterqueues", names.cluster_queue),
            ("resourceflavors", names.flavor),
        ):
            with contextlib.suppress(client.ApiException):
                custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, name)


def condition_of(obj: dict[str, Any], kind: str) -> str | None:
    """The status (``"True"``/``"False"``) of ``obj``'s condition ``kind``,
    None when it has none."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == kind:
            return str(condition["status"])
    return None


def workload_of(cluster: Cluster, namespace: str, job_uid: str) -> dict[str, Any] | None:
    """The Kueue Workload that owns the admission of the Job with ``job_uid``
    (Kueue names it after the Job plus a hash and sets the Job as its
    controller owner); None while there is none."""
    listed = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        KUEUE_GROUP, KUEUE_VERSION, namespace, "workloads"
    )
    for workload in listed["items"]:
        owners = workload["metadata"].get("ownerReferences") or []
        if any(owner["uid"] == job_uid for owner in owners):
            found: dict[str, Any] = workload
            return found
    return None


class WatchThread:
    """A watch of one collection, in a thread from ``with`` to its end: each
    event's object goes to ``seen`` with its type and the monotonic time it
    arrived (the objects' own timestamps have one-second resolution).
    ``lister`` and its arguments are what ``kubernetes.watch`` streams."""

    def __init__(
        self,
        seen: Callable[[str, Any, float], None],
        lister: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self._seen = seen
        self._lister, self._args, self._kwargs = lister, args, kwargs
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WatchThread:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._watch.stop()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        stream = self._watch.stream(self._lister, *self._args, timeout_seconds=3600, **self._kwargs)
        with contextlib.suppress(urllib3.exceptions.ProtocolError):  # stopped
            for event in stream:
                self._seen(event["type"], event["object"], time.monotonic())


CONTAINERS_CONF = ROOT / "hack" / "images" / "containers.conf"
"""The podman settings hack/images.sh builds with; running the images needs them too."""


def _podman_environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs podman with the project's settings (not /etc's alone); the caller
    checks the return code."""
    return subprocess.run(
        ["podman", *args],
        env=_podman_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def podman_start(*args: str) -> subprocess.Popen[str]:
    """Starts podman with the project's settings; its stderr is piped."""
    return subprocess.Popen(
        ["podman", *args],
        env=_podman_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
