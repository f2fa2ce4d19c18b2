"""`make demo`: a VideoJob in, a playable MP4 out, on this machine.

Starts everything it needs in ``$VIDOP_DEMO_DIR`` (default ``.demo``) and
stops it again on the way out, however it exits: the control plane (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok), a node that
runs the stages, SeaweedFS as the S3 store, and the operator. Then it applies
``examples/videojob.yaml``, shows ``kubectl get videojobs -w`` until the job
ends, downloads the video and its thumbnail into ``<demo dir>/output`` and
prints their ffprobe summary.

The node, ``$VIDOP_DEMO_NODE``:

- ``real`` — containerd and a real kubelet: stage pods run as containers from
  the images ``hack/images.sh`` builds, with the hardened pod spec enforced;
  it needs root and Debian's containerd, runc and CNI plugins;
- ``local`` — the process-based local node: stage pods run as host
  processes, nothing of the pod spec's confinement enforced;
- ``auto`` (the default) — the real node where the host can run it, else the
  local one. The demo says which it used, and why.

The operator's configuration pins every stage to that node (kwok's nodes
would only pretend to run them) and points the stages at the S3 store, which
listens where the stages reach it (the real node's bridge address, or
loopback for host processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from vid_operator import contract
from vid_operator.api.models import STAGE_NAMES
from vidop_devcluster import ClusterError, DevCluster, localnode, localpod, realnode
from vidop_devcluster.s3 import LOOPBACK, S3Server

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "videojob.yaml"
BUCKET = "vid-operator"
SECRET = "vid-operator-s3"
NAMESPACE = "default"
LOCAL_NODE = localpod.NodeShape(name="vidop-local", gpus=1)
REAL_NODE = realnode.DEV_NODE
"""The node the stages run on, of either kind: one simulated GPU so video_gen lands there."""
TIMEOUT = 30 * 60


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _wait(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return result


def _start(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _node_ready(core: client.CoreV1Api) -> bool:
    try:
        node = core.read_node(LOCAL_NODE.name)
    except client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _ffprobe_summary(path: Path) -> str:
    probed = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    lines = [
        f"  {path.name}: {float(probed['format'].get('duration', 0)):.2f} s, "
        f"{int(probed['format']['size']) / 1e6:.2f} MB, {probed['format']['format_name']}"
    ]
    for stream in probed["streams"]:
        detail = {
            "video": lambda s: f"{s['width']}x{s['height']} {s.get('r_frame_rate')} fps",
            "audio": lambda s: f"{s['sample_rate']} Hz, {s['channels']} ch",
        }.get(stream["codec_type"], lambda s: s.get("tags", {}).get("language", ""))(stream)
        lines.append(f"    {stream['codec_type']:8} {stream['codec_name']:8} {detail}")
    return "\n".join(lines)


def _real_node_or_why_not(choice: str, bin_dir: Path) -> str | None:
    """None when the demo runs on the real node, else why it does not."""
    if choice == "local":
        return "VIDOP_DEMO_NODE=local"
    reason = realnode.unavailable_reason(bin_dir)
    if reason and choice == "real":
        raise SystemExit(f"demo: VIDOP_DEMO_NODE=real, but {reason}")
    return reason


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds the ExitStack: everything started is stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    root = Path(os.environ.get("VIDOP_DEMO_DIR", REPO / ".demo")).resolve()
    output = root / "output"
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    choice = os.environ.get("VIDOP_DEMO_NODE", "auto")
    if choice not in ("auto", "real", "local"):
        raise SystemExit(f"demo: VIDOP_DEMO_NODE is real, local or auto, not {choice!r}")
    with contextlib.ExitStack() as cleanup:
        _say("starting the control plane")
        cluster = DevCluster(root / "cluster", detach=False)
        cleanup.callback(cluster.down)
        cluster.up()
        why_not_real = _real_node_or_why_not(choice, cluster.bin_dir)
        if why_not_real is None:
            _say(
                f"starting the real node {REAL_NODE.name}: containerd and a kubelet, the stage "
                f"images built by hack/images.sh ({REAL_NODE.gpus} simulated GPU; stages run "
                "on the CPU)"
            )
            try:
                cluster.start_node(REAL_NODE)
            except ClusterError as error:
                if choice == "real":
                    raise SystemExit(f"demo: the real node did not start: {error}") from None
                why_not_real = f"it did not start: {error}"
        if why_not_real is None:
            running = cluster.running_node()
            assert running is not None
            s3_host, logs_hint = running[1].gateway, "kubectl logs <pod>"
            ran_on = f"the real node {REAL_NODE.name} (containers, containerd + kubelet)"
        else:
            s3_host, logs_hint = LOOPBACK, str(root / "local-node" / "logs")
            ran_on = f"the local node {LOCAL_NODE.name} (host processes)"
        kubeconfig = str(cluster.kubeconfig)
        kubectl = [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}"]
        api = cluster.api_client()
        cleanup.callback(api.close)
        core = client.CoreV1Api(api)

        _say("starting the S3 store (SeaweedFS)")
        s3 = S3Server(root / "s3", host=s3_host)
        cleanup.callback(s3.stop)
        s3.start()
        s3.create_bucket(BUCKET)
        credentials = s3.environment()
        core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": SECRET},
                "stringData": {
                    key: credentials[key]
                    for key in (contract.ENV_S3_ACCESS_KEY, contract.ENV_S3_SECRET_KEY)
                },
            },
        )

        if why_not_real is None:
            # Small requests so the stages run side by side on a small
            # machine; the limits are enforced in the node's cgroups.
            on_the_node = {
                **realnode.placement(REAL_NODE),
                "resources": realnode.DEV_STAGE_RESOURCES,
            }
        else:
            _say(
                f"starting the local node {LOCAL_NODE.name}, which runs stage pods as host "
                f"processes ({LOCAL_NODE.gpus} simulated GPU; no real node: {why_not_real})"
            )
            node = _start(
                [
                    sys.executable,
                    "-m",
                    "vidop_devcluster.localnode",
                    f"--kubeconfig={kubeconfig}",
                    f"--root={root / 'local-node'}",
                    *localnode.shape_flags(LOCAL_NODE),
                ],
                root / "logs" / "local-node.log",
            )
            cleanup.callback(_stop, node)
            _wait("the local node", lambda: _node_ready(core), 30)
            # A CPU stage must tolerate the simulated GPU's taint to land there too.
            on_the_node = localpod.placement(LOCAL_NODE)

        _say("installing the CRDs and starting the operator")
        subprocess.run(
            [*kubectl, "apply", "--server-side", "-f", str(REPO / "crds")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                *kubectl,
                "wait",
                "--for=condition=Established",
                "crd/videojobs.vidop.io",
                "crd/videopipelines.vidop.io",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        config_file = root / "operator-config.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "s3": {
                        "endpointUrl": s3.endpoint_url,
                        "bucket": BUCKET,
                        "credentialsSecret": SECRET,
                    },
                    "stages": {stage: on_the_node for stage in STAGE_NAMES},
                    "priorityClasses": {"high": None, "low": None},
                }
            )
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            liveness = f"http://127.0.0.1:{probe.getsockname()[1]}/healthz"
        operator = _start(
            # No metrics port: nothing scrapes the demo, and a fixed one may be taken.
            [
                sys.executable,
                "-m",
                "vid_operator",
                f"--liveness={liveness}",
                "--metrics-bind-address=0",
            ],
            root / "logs" / "operator.log",
            env={**os.environ, "KUBECONFIG": kubeconfig, "VIDOP_CONFIG": str(config_file)},
        )
        cleanup.callback(_stop, operator)
        _wait("the operator", lambda: _healthy(liveness), 30)

        videojob = yaml.safe_load(EXAMPLE.read_text())
        name = videojob["metadata"]["name"]
        _say(f"kubectl apply -f {EXAMPLE.relative_to(REPO)}; kubectl get videojobs -w")
        subprocess.run([*kubectl, "apply", "-f", str(EXAMPLE)], check=True)
        watcher = subprocess.Popen([*kubectl, "get", "videojobs", "-w"])
        cleanup.callback(_stop, watcher)
        objects = client.CustomObjectsApi(api)

        def finished() -> dict[str, Any] | None:
            found = objects.get_namespaced_custom_object(
                "vidop.io", "v1alpha1", NAMESPACE, "videojobs", name
            )
            status: dict[str, Any] = found.get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status = _wait(f"videojob/{name}", finished, TIMEOUT, 1)
        time.sleep(0.5)  # let the watcher print the last line
        _stop(watcher)
        print()
        for stage in status.get("stages", []):
            print(
                f"  {stage['name']:12} {stage['phase']:10} attempts={stage.get('attempts')} "
                f"{stage.get('startTime', '')} -> {stage.get('completionTime', '')}"
            )
        if status["phase"] != "Succeeded":
            print(json.dumps(status, indent=2))
            _say(f"the VideoJob failed; the stages' logs: {logs_hint}")
            return 1

        outputs = status["outputs"]
        files = []
        for key, filename in (("videoUri", f"{name}.mp4"), ("thumbnailUri", f"{name}.jpg")):
            bucket, _, object_key = outputs[key].removeprefix("s3://").partition("/")
            target = output / filename
            s3.client().download_file(bucket, object_key, str(target))
            files.append(target)
        _say(
            f"done in {time.monotonic() - started:.0f} s on {ran_on}; the video and its thumbnail:"
        )
        for path in files:
            print(f"  {path}")
        print(_ffprobe_summary(files[0]))
        print(_ffprobe_summary(files[1]))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started is stopped", file=sys.stderr)
        raise SystemExit(130) from None
