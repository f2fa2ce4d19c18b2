"""The local node: a Node of the development cluster whose pods run as host processes.

Started by ``make demo`` and by the end-to-end tests (``python -m
vidop_devcluster.localnode``), next to kwok's simulated nodes. It does
the part of a kubelet that stage pods need, so the real scheduler, Job
controller and operator drive real stage programs:

- registers its Node and keeps it alive (a Lease renewed every 10 s);
- watches the pods bound to it, and runs each one's container command with
  its environment (literal values, Secret/ConfigMap keys, the downward API,
  and the API server's address as KUBERNETES_SERVICE_HOST and _PORT) in a
  sandbox folder: emptyDir and projected mounts and the termination-message
  file are host paths there, and environment values and arguments naming
  those container paths are rewritten to them;
- projects the projected volumes' serviceAccountToken sources (a token
  bound to the pod, from the TokenRequest API, replaced at 80 % of its
  lifetime) and configMap sources (the progress token and the cluster's CA,
  ``vid_operator.contract``) into their folders there;
- reports Running, then Succeeded/Failed with the exit code and the
  termination message, as a kubelet would, so podFailurePolicy works;
- kills the process when the pod is deleted (SIGTERM, then SIGKILL after the
  grace period) and completes the deletion.

What it does not do: pull images (the command must be installed on the host:
the stage console scripts come with this project), enforce resources, user
IDs or a read-only root filesystem, restart containers, or run pods with
more than one container. Its GPUs, if told to advertise any, are simulated.
The pod's output goes to ``<root>/logs/<namespace>_<pod>.log``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from vidop_devcluster import localpod
from vidop_devcluster.localpod import NodeShape, PodConfigError, UnsupportedPod
from vidop_devcluster.processes import die_with_parent

log = structlog.get_logger("vidop.localnode")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
RENEW_EVERY = 10.0
CONFIG_RETRY_EVERY = 2.0
# A kubelet's default; pods asking for longer wait no longer than this here.
MAX_GRACE_SECONDS = 30


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _RunningPod:
    """One pod this node has taken on."""

    namespace: str
    name: str
    uid: str
    container: str
    process: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    deleting: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    """Its process has ended."""
    grace_seconds: int = MAX_GRACE_SECONDS
    ended: bool = False
    """Its final status is reported: a deletion now only needs completing."""


class LocalNode:
    """Registers ``shape`` in the cluster ``api`` points at and runs its pods
    under ``root``."""

    def __init__(self, api: client.ApiClient, shape: NodeShape, root: Path) -> None:
        self.api = api
        self.shape = shape
        self.root = root
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self.pods: dict[str, _RunningPod] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # The stage programs are console scripts of this environment.
        self.path = os.pathsep.join(
            [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        )

    # --- the Node -----------------------------------------------------------------

    def register(self) -> None:
        manifest = localpod.node_manifest(self.shape)
        try:
            self.core.create_node(manifest)  # type: ignore[arg-type]  # dicts work too
        except ApiException as error:
            if error.status != 409:
                raise
            # A restarted node takes its object over, labels and taints included.
            self.core.patch_node(self.shape.name, manifest)
        self._report_node(ready=True)
        self._renew_lease()
        log.info("node registered", node=self.shape.name, gpus=self.shape.gpus)

    def _report_node(self, *, ready: bool) -> None:
        self.core.patch_node_status(
            self.shape.name, localpod.node_status(self.shape, _now(), ready=ready)
        )

    def _renew_lease(self) -> None:
        body = {
            "metadata": {"name": self.shape.name, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": self.shape.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _micro_now(),
            },
        }
        try:
            self.leases.patch_namespaced_lease(self.shape.name, LEASE_NAMESPACE, body)
        except ApiException as error:
            if error.status != 404:
                raise
            self.leases.create_namespaced_lease(LEASE_NAMESPACE, body)  # type: ignore[arg-type]

    def _heartbeat(self) -> None:
        while not self.stopping.wait(RENEW_EVERY):
            try:
                self._renew_lease()
            except Exception as error:  # the next beat tries again
                log.warning("lease renewal failed", error=str(error))

    # --- pods ---------------------------------------------------------------------

    def serve(self) -> None:
        """Run until :meth:`stop`: heartbeat, and every pod bound to this node."""
        self.register()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        selector = f"spec.nodeName={self.shape.name}"
        resource_version = None
        while not self.stopping.is_set():
            try:
                if resource_version is None:
                    listed = self.core.list_pod_for_all_namespaces(field_selector=selector)
                    resource_version = self._plain(listed)["metadata"]["resourceVersion"]
                    for pod in listed.items:
                        self._on_pod(self._plain(pod), initial=True)
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=resource_version,
                    timeout_seconds=60,
                    _request_timeout=90,
                )
                for event in stream:
                    changed = self._plain(event["object"])
                    resource_version = changed["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        self._forget(changed)
                    else:
                        self._on_pod(changed, initial=False)
                    if self.stopping.is_set():
                        break
            except ApiException as error:
                if error.status == 410:  # too old: list again
                    resource_version = None
                    continue
                log.warning("pod watch failed", error=str(error))
                self.stopping.wait(1)
            except Exception as error:  # the API server restarting, for example
                log.warning("pod watch failed", error=str(error))
                self.stopping.wait(1)

    def _plain(self, obj: object) -> dict[str, Any]:
        """A client model as the API's JSON (camelCase keys, strings for times)."""
        plain: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return plain

    def stop(self) -> None:
        """Kill every pod process and mark the Node not ready."""
        self.stopping.set()
        with self.lock:
            running = list(self.pods.values())
        for pod in running:
            pod.grace_seconds = 2
            self._kill(pod)
        with contextlib.suppress(Exception):
            self._report_node(ready=False)

    def _on_pod(self, pod: dict[str, Any], *, initial: bool) -> None:
        metadata, status = pod["metadata"], pod.get("status") or {}
        uid = metadata["uid"]
        with self.lock:
            known = self.pods.get(uid)
        if metadata.get("deletionTimestamp"):
            if known:
                known.grace_seconds = min(
                    metadata.get("deletionGracePeriodSeconds") or 0, MAX_GRACE_SECONDS
                )
                self._kill(known)
            else:
                self._finish_deletion(metadata["namespace"], metadata["name"], uid)
            return
        if known or status.get("phase") in ("Succeeded", "Failed"):
            return
        if initial and status.get("containerStatuses"):
            # It ran under an earlier local node process, which took it down.
            self._patch_status(
                pod,
                localpod.failed_to_start_status(
                    pod["spec"]["containers"][0]["name"],
                    "NodeRestarted",
                    "the local node restarted while the pod ran",
                    _now(),
                ),
            )
            return
        running = _RunningPod(
            metadata["namespace"], metadata["name"], uid, pod["spec"]["containers"][0]["name"]
        )
        with self.lock:
            self.pods[uid] = running
        threading.Thread(
            target=self._run, args=(pod, running), name=f"pod-{metadata['name']}", daemon=True
        ).start()

    def _forget(self, pod: dict[str, Any]) -> None:
        with self.lock:
            running = self.pods.pop(pod["metadata"]["uid"], None)
        if running:
            self._kill(running)
        shutil.rmtree(self._sandbox(pod["metadata"]["uid"]), ignore_errors=True)

    def _sandbox(self, uid: str) -> Path:
        return self.root / "pods" / uid

    def _lookup(self, kind: str) -> localpod.Lookup:
        def read(namespace: str, name: str) -> Mapping[str, str] | None:
            try:
                if kind == "Secret":
                    secret = self.core.read_namespaced_secret(name, namespace)
                    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
                return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
            except ApiException as error:
                if error.status == 404:
                    return None
                raise

        return read

    def _tokens(self, pod: dict[str, Any]) -> localpod.TokenSource:
        """Issues the tokens of ``pod``'s projected volumes, as its ServiceAccount."""
        account = localpod.service_account_of(pod)
        namespace = pod["metadata"]["namespace"]

        def issue(request: Mapping[str, Any]) -> str:
            try:
                answer = self.core.create_namespaced_service_account_token(
                    account,
                    namespace,
                    request,  # type: ignore[arg-type]  # dicts work too
                )
            except ApiException as error:
                # A ServiceAccount not there yet: a kubelet retries too.
                raise PodConfigError(
                    f"token of ServiceAccount {account!r}: {error.status} {error.reason}"
                ) from error
            if answer.status is None or not answer.status.token:
                raise PodConfigError(f"token of ServiceAccount {account!r}: none issued")
            return str(answer.status.token)

        return issue

    def _projected(
        self, pod: dict[str, Any], container: dict[str, Any]
    ) -> dict[str, dict[str, str]]:
        """Volume name -> its files, for each projected volume the container mounts."""
        return {
            volume["name"]: localpod.projected_files(
                pod, volume, tokens=self._tokens(pod), config_maps=self._lookup("ConfigMap")
            )
            for volume in localpod.projected_volumes(pod, container)
        }

    @staticmethod
    def _write_projected(sandbox: Path, projected: Mapping[str, Mapping[str, str]]) -> None:
        """Each file replaced whole (a reader sees the old token or the new one)."""
        for volume, files in projected.items():
            folder = localpod.volume_folder(sandbox, volume)
            for relative, content in files.items():
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                staged = target.with_name(f".{target.name}.new")
                staged.write_text(content)
                staged.chmod(0o600)
                os.replace(staged, target)

    def _refresh_projected(
        self, pod: dict[str, Any], container: dict[str, Any], running: _RunningPod
    ) -> None:
        """Replaces the pod's projected tokens before they expire, while it runs."""
        requests = [
            localpod.token_request(pod, source["serviceAccountToken"])
            for volume in localpod.projected_volumes(pod, container)
            for source in volume["projected"].get("sources") or []
            if "serviceAccountToken" in source
        ]
        if not requests:
            return
        every = min(localpod.token_refresh_seconds(request) for request in requests)
        while not running.exited.wait(every):
            try:
                self._write_projected(self._sandbox(running.uid), self._projected(pod, container))
            except Exception as error:  # the next round tries again; the token still holds
                log.warning("projected token refresh failed", pod=running.name, error=str(error))

    def _run(self, pod: dict[str, Any], running: _RunningPod) -> None:
        name = running.container
        try:
            container = localpod.container_of(pod)
            sandbox = self._sandbox(running.uid)
            paths = localpod.host_paths(pod, container, sandbox)
            while True:
                try:
                    env = localpod.environment(
                        pod,
                        container,
                        secrets=self._lookup("Secret"),
                        config_maps=self._lookup("ConfigMap"),
                    )
                    projected = self._projected(pod, container)
                    break
                except PodConfigError as error:
                    self._patch_status(
                        pod, localpod.waiting_status(name, "CreateContainerConfigError", str(error))
                    )
                    if running.deleting.wait(CONFIG_RETRY_EVERY) or self.stopping.is_set():
                        self._ended(running)
                        return
        except UnsupportedPod as error:
            self._patch_status(
                pod,
                localpod.failed_to_start_status(name, "UnsupportedByLocalNode", str(error), _now()),
            )
            self._ended(running)
            return
        env = {key: localpod.map_path(value, paths) for key, value in env.items()}
        argv = [localpod.map_path(part, paths) for part in localpod.command_line(container, env)]
        for host_path in paths.values():
            host_path.parent.mkdir(parents=True, exist_ok=True)
        for container_path, host_path in paths.items():
            if container_path != (
                container.get("terminationMessagePath") or "/dev/termination-log"
            ):
                host_path.mkdir(parents=True, exist_ok=True)
        self._write_projected(sandbox, projected)
        work = sandbox / "work"
        work.mkdir(parents=True, exist_ok=True)
        log_file = self.root / "logs" / f"{running.namespace}_{running.name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        process_env = {
            "PATH": self.path,
            "HOME": str(work),
            "TMPDIR": str(work),
            "LANG": "C.UTF-8",
            **localpod.service_environment(self.api.configuration.host),
            **env,
        }
        with self.lock:
            cancelled = running.deleting.is_set() or self.stopping.is_set()
            if not cancelled:
                with log_file.open("ab") as output:
                    try:
                        running.process = subprocess.Popen(
                            argv,
                            cwd=work,
                            env=process_env,
                            stdin=subprocess.DEVNULL,
                            stdout=output,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=die_with_parent,
                        )
                    except OSError as error:
                        start_error: OSError | None = error
                    else:
                        start_error = None
        if cancelled:
            self._ended(running)
            return
        if start_error is not None:
            self._patch_status(
                pod,
                localpod.failed_to_start_status(
                    name, "StartError", f"{argv[0]}: {start_error.strerror}", _now()
                ),
            )
            self._ended(running)
            return
        assert running.process is not None
        running.started_at = _now()
        log.info(
            "pod started",
            pod=f"{running.namespace}/{running.name}",
            pid=running.process.pid,
            command=argv[0],
            log=str(log_file),
        )
        self._patch_status(
            pod, localpod.running_status(name, running.process.pid, running.started_at)
        )
        threading.Thread(
            target=self._refresh_projected,
            args=(pod, container, running),
            name=f"tokens-{running.name}",
            daemon=True,
        ).start()
        returncode = running.process.wait()
        running.exited.set()
        message_file = paths[container.get("terminationMessagePath") or "/dev/termination-log"]
        message = message_file.read_text(errors="replace") if message_file.is_file() else ""
        exit_code = localpod.exit_code_of(returncode)
        self._patch_status(
            pod,
            localpod.terminated_status(
                name, running.process.pid, exit_code, message, running.started_at, _now()
            ),
        )
        log.info("pod ended", pod=f"{running.namespace}/{running.name}", exit_code=exit_code)
        self._ended(running)

    def _ended(self, running: _RunningPod) -> None:
        """The runner is done with the pod; complete a deletion asked for meanwhile."""
        with self.lock:
            running.ended = True
            deleting = running.deleting.is_set()
        if deleting:
            self._finish_deletion(running.namespace, running.name, running.uid)

    def _kill(self, running: _RunningPod) -> None:
        """SIGTERM the pod's process group, SIGKILL after the grace period;
        the runner then reports the exit and completes the deletion. Exactly
        one of the two completes it: whoever sees the other's flag under the lock."""
        with self.lock:
            first = not running.deleting.is_set()
            running.deleting.set()
            process, ended = running.process, running.ended
        if ended:
            self._finish_deletion(running.namespace, running.name, running.uid)
        elif process is not None and first:
            threading.Thread(
                target=self._terminate, args=(process, running.grace_seconds), daemon=True
            ).start()

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes], grace_seconds: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def _finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        """What a kubelet does once a deleted pod's containers are gone."""
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                ),
            )

    def _patch_status(self, pod: dict[str, Any], patch: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        for attempt in range(5):
            try:
                self.core.patch_namespaced_pod_status(
                    metadata["name"], metadata["namespace"], patch
                )
                return
            except ApiException as error:
                if error.status == 404:
                    return
                log.warning("pod status update failed", pod=metadata["name"], error=str(error))
            except Exception as error:  # the API server restarting: try again
                log.warning("pod status update failed", pod=metadata["name"], error=str(error))
            time.sleep(0.5 * (attempt + 1))


def _taint(text: str) -> dict[str, str]:
    """``key=value:Effect`` or ``key:Effect``."""
    key_value, _, effect = text.rpartition(":")
    key, _, value = key_value.partition("=")
    if not key or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise argparse.ArgumentTypeError(f"taint {text!r} is not key[=value]:Effect")
    return (
        {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}
    )


def _label(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise argparse.ArgumentTypeError(f"label {text!r} is not key=value")
    return key, value


def shape_flags(shape: NodeShape) -> list[str]:
    """The command-line flags that make :func:`main` register ``shape``: the
    demo and the tests describe their node once, as a NodeShape, and derive
    both these flags and its pods' placement (:func:`localpod.placement`)."""
    taints = [
        f"{t['key']}={t['value']}:{t['effect']}" if t.get("value") else f"{t['key']}:{t['effect']}"
        for t in shape.taints
    ]
    return [
        f"--name={shape.name}",
        f"--gpus={shape.gpus}",
        f"--cpu={shape.cpu}",
        f"--memory={shape.memory}",
        *(f"--label={key}={value}" for key, value in shape.labels.items()),
        *(f"--taint={taint}" for taint in taints),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vidop_devcluster.localnode", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--root", type=Path, required=True, help="sandboxes and pod logs go here")
    parser.add_argument("--name", default=NodeShape.name)
    parser.add_argument(
        "--gpus",
        type=int,
        default=0,
        help="advertise this many (simulated) nvidia.com/gpu, with the GPU label and taint",
    )
    parser.add_argument("--cpu", default=NodeShape.cpu)
    parser.add_argument("--memory", default=NodeShape.memory)
    parser.add_argument("--label", type=_label, action="append", default=[], help="key=value")
    parser.add_argument(
        "--taint", type=_taint, action="append", default=[], help="key[=value]:Effect"
    )
    args = parser.parse_args(argv)
    structlog.configure(
        processors=[
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(),
        ]
    )
    shape = NodeShape(
        name=args.name,
        cpu=args.cpu,
        memory=args.memory,
        gpus=args.gpus,
        labels=dict(args.label),
        taints=tuple(args.taint),
    )
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig
    )
    node = LocalNode(api, shape, args.root.resolve())

    def shut_down(signum: int, _frame: object) -> None:
        node.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    node.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
