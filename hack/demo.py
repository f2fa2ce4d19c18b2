"""`make demo`: a VideoJob in, a playable MP4 out, on this machine.

The Makefile's ``demo``, ``fetch`` and ``demo-down`` targets call its three
commands; everything lives in ``$VIDOP_DEMO_DIR`` (default ``.demo``).

``run`` (``make demo``) starts the control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok), a node that runs the stages,
SeaweedFS as the S3 store, and the operator. Then it creates the VideoJob of
``examples/videojob.yaml``, with the prompt, duration, resolution and name
the tenant gave in their stead (``--prompt``, ...: built as data and sent to
kubectl as JSON, so the prompt arrives as typed), shows ``kubectl get
videojobs -w`` until the job ends, downloads the video and its thumbnail into
``<demo dir>/output`` and prints their ffprobe summary. The API server judges
the VideoJob before anything else starts (a server-side dry run right after
the control plane), and what it refuses is shown as kubectl says it.
Everything it started is stopped on the way out, however it exits; with
``--keep`` (``KEEP=1``) everything stays up instead, and it prints how to use
it. While a kept demo runs, ``run`` creates its VideoJob there.

``fetch NAME`` (``make fetch VJ=NAME``) downloads a Succeeded VideoJob's video
and thumbnail from the demo's S3 store into ``<demo dir>/output``, and says
so when the VideoJob has not succeeded. ``down`` (``make demo-down``) stops
whatever a demo started in the folder, kept or left behind by a crash.

``<demo dir>/demo.json``, readable by its owner only (it holds the S3 keys),
records who started the demo and whether it stays up, the kubeconfig and
kubectl, the S3 endpoint and keys, and the processes to stop: one demo per
folder at a time.

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

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import yaml
from botocore.config import Config
from kubernetes import client, config

from vid_operator import contract
from vid_operator.api.models import STAGE_NAMES
from vidop_devcluster import ClusterError, DevCluster, localnode, localpod, processes, realnode
from vidop_devcluster.s3 import LOOPBACK, S3Server, S3ServerError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "videojob.yaml"
BUCKET = "vid-operator"
SECRET = "vid-operator-s3"
NAMESPACE = "default"
LOCAL_NODE = localpod.NodeShape(name="vidop-local", gpus=1)
REAL_NODE = realnode.DEV_NODE
"""The node the stages run on, of either kind: one simulated GPU so video_gen lands there."""
TIMEOUT = 30 * 60
STATE_FILE = "demo.json"
OWNER_STOP_SECONDS = 120.0
"""How long `down` gives a running `make demo` to stop what it started (the
real node's clean-up included) before it is killed and `down` does it."""


class DemoError(Exception):
    """What the user must be told, and what to do about it; no traceback."""


# -- the VideoJob: the example's, with what the tenant asked for -------------


def videojob_manifest(
    prompt: str | None = None,
    duration: int | None = None,
    resolution: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """``examples/videojob.yaml`` with each field given replaced. A new
    prompt without a name gets a name of its own (:func:`name_for`)."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec = manifest["spec"]
    for key, value in (
        ("prompt", prompt),
        ("durationSeconds", duration),
        ("resolution", resolution),
    ):
        if value is not None:
            spec[key] = value
    if name is not None:
        manifest["metadata"]["name"] = name
    elif prompt is not None:
        manifest["metadata"]["name"] = name_for(prompt)
    return manifest


def name_for(prompt: str) -> str:
    """A VideoJob name that recalls the prompt: its first ASCII words, then a
    hash of the whole prompt so that prompts which start alike get apart
    names (``demo-<hash>`` when it has no ASCII word, a CJK prompt say)."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())[:6]
    head = "-".join(words)[:40].strip("-") or "demo"
    return f"{head}-{hashlib.sha256(prompt.encode()).hexdigest()[:5]}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """The bucket and key of ``s3://bucket/key``."""
    scheme, separator, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme != "s3" or not separator or not bucket or not key:
        raise DemoError(f"not an s3://bucket/key address: {uri!r}")
    return bucket, key


def submit(kubectl: list[str], manifest: dict[str, Any], *, dry_run: bool = False) -> None:
    """``kubectl create`` of the VideoJob, in JSON on stdin; DemoError with
    the API server's answer when it refuses it."""
    result = subprocess.run(
        [*kubectl, "create", *(["--dry-run=server"] if dry_run else []), "-f", "-"],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"the API server refused the VideoJob:\n  {result.stderr.strip()}")


# -- the state file --------------------------------------------------------


@dataclass
class S3Access:
    """Where the demo's S3 store is, and its keys."""

    endpoint_url: str
    region: str
    access_key: str
    secret_key: str
    bucket: str

    def client(self) -> S3Client:
        s3: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=30),
        )
        return s3


@dataclass
class DemoState:
    """What ``demo.json`` records; each part as soon as it exists, so that
    ``down`` finds whatever a crash left."""

    keep: bool
    owner: processes.Started
    """The ``make demo`` that started it."""
    kubeconfig: str = ""
    kubectl: str = ""
    ran_on: str = ""
    """Which node runs the stages, in words."""
    logs_hint: str = ""
    """Where the stages' logs are."""
    s3: S3Access | None = None
    started: list[processes.Started] = field(default_factory=list)
    """The demo's own processes (the operator, the local node), in start order;
    the control plane and S3 record theirs in their own folders."""

    def kubectl_argv(self) -> list[str]:
        return [self.kubectl, f"--kubeconfig={self.kubeconfig}"]

    def save(self, path: Path) -> None:
        """Owner-only, whole or not at all."""
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(asdict(self), file, indent=2)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> DemoState | None:
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["owner"] = processes.Started(**raw["owner"])
        raw["started"] = [processes.Started(**p) for p in raw["started"]]
        raw["s3"] = S3Access(**raw["s3"]) if raw["s3"] else None
        return cls(**raw)


def _this_process() -> processes.Started:
    # As /proc shows it, which is what processes.is_running compares.
    argv0 = Path("/proc/self/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    return processes.Started(name="make demo", pid=os.getpid(), executable=argv0)


def _not_running(root: Path, state: DemoState) -> list[str]:
    """The parts of the demo in ``root`` that do not run."""
    missing = [] if DevCluster(root / "cluster").is_up() else ["the control plane"]
    if not S3Server(root / "s3").is_running:
        missing.append("S3")
    missing += [p.name for p in state.started if not processes.is_running(p)]
    return missing


# -- down ------------------------------------------------------------------


def down(root: Path) -> list[str]:
    """Stop whatever a demo started in ``root``, kept or left by a crash: a
    ``make demo`` still running first (it stops its own), then the demo's
    processes newest first, S3, and the control plane with its node. Safe
    when nothing runs; returns what it found running."""
    state = DemoState.load(root / STATE_FILE)
    stopped = []
    if state and state.owner.pid != os.getpid() and processes.is_running(state.owner):
        stopped.append(f"make demo (pid {state.owner.pid})")
        processes.stop(state.owner, grace_seconds=OWNER_STOP_SECONDS)
    for started in reversed(state.started if state else []):
        if processes.is_running(started):
            stopped.append(started.name)
            processes.stop(started)
    if (root / "s3" / "s3-state.json").exists():
        s3 = S3Server(root / "s3")
        if s3.is_running:
            stopped.append("S3")
        s3.stop()
    cluster = DevCluster(root / "cluster")
    if cluster.components():
        stopped.append(
            "the control plane" + (" and the real node" if cluster.running_node() else "")
        )
    cluster.down()
    (root / STATE_FILE).unlink(missing_ok=True)
    return stopped


# -- start-up --------------------------------------------------------------


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _wait(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return result


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
    conditions = node.status.conditions if node.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


def _real_node_or_why_not(choice: str, bin_dir: Path) -> str | None:
    """None when the demo runs on the real node, else why it does not."""
    if choice == "local":
        return "VIDOP_DEMO_NODE=local"
    reason = realnode.unavailable_reason(bin_dir)
    if reason and choice == "real":
        raise DemoError(f"VIDOP_DEMO_NODE=real, but {reason}")
    return reason


@contextlib.contextmanager
def _api(state: DemoState) -> Iterator[client.ApiClient]:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=state.kubeconfig
    )
    with api:
        yield api


def _start_process(
    state: DemoState, path: Path, name: str, argv: list[str], env: dict[str, str] | None = None
) -> None:
    """Start one of the demo's own processes, detached when it stays up, and
    record it at once."""
    root = path.parent
    state.started.append(
        processes.start(name, argv, root / "logs" / f"{name}.log", detach=state.keep, env=env)
    )
    state.save(path)


def bring_up(root: Path, keep: bool, node_choice: str, manifest: dict[str, Any]) -> DemoState:
    """Start the whole demo in ``root``, recording each part in ``demo.json``
    as it starts; the VideoJob is checked by the API server as soon as the
    control plane runs. The caller stops it all (:func:`down`), also when
    this fails."""
    path = root / STATE_FILE
    state = DemoState(keep=keep, owner=_this_process())
    state.save(path)

    _say("starting the control plane")
    cluster = DevCluster(root / "cluster", detach=keep)
    cluster.up()
    state.kubeconfig, state.kubectl = str(cluster.kubeconfig), str(cluster.bin_dir / "kubectl")
    state.save(path)
    kubectl = state.kubectl_argv()
    _say("installing the CRDs; the API server checks the VideoJob")
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
    submit(kubectl, manifest, dry_run=True)

    why_not_real = _real_node_or_why_not(node_choice, cluster.bin_dir)
    if why_not_real is None:
        _say(
            f"starting the real node {REAL_NODE.name}: containerd and a kubelet, the stage "
            f"images built by hack/images.sh ({REAL_NODE.gpus} simulated GPU; stages run "
            "on the CPU)"
        )
        try:
            cluster.start_node(REAL_NODE)
        except ClusterError as error:
            if node_choice == "real":
                raise DemoError(f"the real node did not start: {error}") from None
            why_not_real = f"it did not start: {error}"
    if why_not_real is None:
        running = cluster.running_node()
        assert running is not None
        s3_host, state.logs_hint = running[1].gateway, "kubectl logs <pod>"
        state.ran_on = f"the real node {REAL_NODE.name} (containers, containerd + kubelet)"
    else:
        s3_host, state.logs_hint = LOOPBACK, str(root / "local-node" / "logs")
        state.ran_on = f"the local node {LOCAL_NODE.name} (host processes)"

    with _api(state) as api:
        core = client.CoreV1Api(api)
        _say("starting the S3 store (SeaweedFS)")
        s3 = S3Server(root / "s3", host=s3_host, detach=keep)
        s3.start()
        s3.create_bucket(BUCKET)
        state.s3 = S3Access(s3.endpoint_url, s3.region, s3.access_key, s3.secret_key, BUCKET)
        state.save(path)
        core.create_namespaced_secret(
            NAMESPACE,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=SECRET),
                string_data={
                    contract.ENV_S3_ACCESS_KEY: s3.access_key,
                    contract.ENV_S3_SECRET_KEY: s3.secret_key,
                },
            ),
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
            _start_process(
                state,
                path,
                "local-node",
                [
                    sys.executable,
                    "-m",
                    "vidop_devcluster.localnode",
                    f"--kubeconfig={state.kubeconfig}",
                    f"--root={root / 'local-node'}",
                    *localnode.shape_flags(LOCAL_NODE),
                ],
            )
            _wait("the local node", lambda: _node_ready(core), 30)
            # A CPU stage must tolerate the simulated GPU's taint to land there too.
            on_the_node = localpod.placement(LOCAL_NODE)

    _say("starting the operator")
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
    _start_process(
        state,
        path,
        "operator",
        # No metrics port: nothing scrapes the demo, and a fixed one may be taken.
        [
            sys.executable,
            "-m",
            "vid_operator",
            f"--liveness={liveness}",
            "--metrics-bind-address=0",
        ],
        env={**os.environ, "KUBECONFIG": state.kubeconfig, "VIDOP_CONFIG": str(config_file)},
    )
    _wait("the operator", lambda: _healthy(liveness), 30)
    return state


def _running_demo(root: Path) -> DemoState | None:
    """The kept demo in ``root`` when all of it runs, else None after
    clearing what an earlier demo left; DemoError when another ``make demo``
    runs there or a kept one lacks a part."""
    state = DemoState.load(root / STATE_FILE)
    if state and not state.keep and processes.is_running(state.owner):
        raise DemoError(
            f"another `make demo` (pid {state.owner.pid}) runs in {root}: wait for it, "
            "or stop it (`make demo-down`)"
        )
    if state and state.keep:
        if missing := _not_running(root, state):
            raise DemoError(
                f"the demo kept in {root} is not whole ({', '.join(missing)} not running): "
                "`make demo-down`, then `make demo` again"
            )
        return state
    if left := down(root):
        _say(f"stopped what an earlier demo left running: {', '.join(left)}")
    return None


# -- the VideoJob's run and its result ---------------------------------------


def _videojob(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "vidop.io", "v1alpha1", namespace, "videojobs", name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found if isinstance(found, dict) else None


def fetch(state: DemoState, name: str, namespace: str, output: Path) -> list[Path]:
    """Download a Succeeded VideoJob's video (and thumbnail) into ``output``;
    DemoError when it is not there or has not succeeded."""
    assert state.s3 is not None
    with _api(state) as api:
        videojob = _videojob(api, namespace, name)
    if videojob is None:
        raise DemoError(
            f"there is no videojob/{name} in namespace {namespace} "
            "(`kubectl get videojobs -A` lists them)"
        )
    status = videojob.get("status") or {}
    phase = status.get("phase")
    if phase != "Succeeded":
        then = (
            f"`kubectl describe videojob {name}` says why"
            if phase == "Failed"
            else f"`kubectl get videojob {name} -w` shows when it ends"
        )
        raise DemoError(
            f"videojob/{name} has not succeeded: it is {phase or 'not started yet'}; {then}"
        )
    outputs = status.get("outputs") or {}
    if not outputs.get("videoUri"):
        raise DemoError(f"videojob/{name} succeeded without status.outputs.videoUri")
    output.mkdir(parents=True, exist_ok=True)
    stem = name if namespace == NAMESPACE else f"{namespace}.{name}"
    s3 = state.s3.client()
    files = []
    for key, suffix in (("videoUri", ".mp4"), ("thumbnailUri", ".jpg")):
        if uri := outputs.get(key):
            bucket, object_key = parse_s3_uri(uri)
            target = output / f"{stem}{suffix}"
            s3.download_file(bucket, object_key, str(target))
            files.append(target)
    return files


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


def _show(files: list[Path]) -> None:
    for path in files:
        print(f"  {path}")
    for path in files:
        print(_ffprobe_summary(path))


def render(state: DemoState, manifest: dict[str, Any], output: Path) -> bool:
    """Create the VideoJob, show ``kubectl get videojobs -w`` until it ends,
    then its stages and, when it succeeded, its video; whether it did."""
    name = manifest["metadata"]["name"]
    kubectl = state.kubectl_argv()
    with _api(state) as api:
        if found := _videojob(api, NAMESPACE, name):
            phase = (found.get("status") or {}).get("phase", "not started")
            raise DemoError(
                f"videojob/{name} exists already in this demo ({phase}): `make fetch VJ={name}` "
                "fetches its video; `make demo VJ=<another name> ...` makes another"
            )
        spec = manifest["spec"]
        _say(
            f"creating videojob/{name} ({spec['durationSeconds']} s, {spec['resolution']}): "
            f"{spec['prompt']!r}"
        )
        submit(kubectl, manifest)
        _say("kubectl get videojobs -w")
        watcher = subprocess.Popen([*kubectl, "get", "videojobs", "-w"])
        try:

            def finished() -> dict[str, Any] | None:
                status: dict[str, Any] = (_videojob(api, NAMESPACE, name) or {}).get("status") or {}
                return status if status.get("phase") in ("Succeeded", "Failed") else None

            status = _wait(f"videojob/{name}", finished, TIMEOUT, 1)
            time.sleep(0.5)  # let the watcher print the last line
        finally:
            watcher.terminate()
            watcher.wait()
    print()
    for stage in status.get("stages", []):
        print(
            f"  {stage['name']:12} {stage['phase']:10} attempts={stage.get('attempts')} "
            f"{stage.get('startTime', '')} -> {stage.get('completionTime', '')}"
        )
    if status["phase"] != "Succeeded":
        print(json.dumps(status, indent=2))
        _say(f"the VideoJob failed; the stages' logs: {state.logs_hint}")
        return False
    files = fetch(state, name, NAMESPACE, output)
    _say(f"videojob/{name} succeeded on {state.ran_on}; the video and its thumbnail:")
    _show(files)
    return True


def _shown(path: Path | str) -> str:
    """A path as the user types it: relative to the repository when inside."""
    path = Path(path)
    return shlex.quote(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path))


def next_steps(state: DemoState, root: Path) -> str:
    """What to type to use the kept demo."""
    env = "" if root == REPO / ".demo" else f"VIDOP_DEMO_DIR={shlex.quote(str(root))} "
    kubectl_dir = shlex.quote(str(Path(state.kubectl).parent))
    return "\n".join(
        [
            f"The demo stays up, on {state.ran_on}. In any shell:",
            f"  export KUBECONFIG={shlex.quote(state.kubeconfig)} PATH={kubectl_dir}:$PATH",
            "  kubectl get videojobs",
            "  kubectl apply -f examples/videojob.yaml     # or a copy: your own name and prompt",
            "  kubectl get vj -w",
            f"  {env}make fetch VJ=<name> [NS=<namespace>]  # its MP4 and JPEG into "
            f"{_shown(root / 'output')}",
            f'  {env}make demo PROMPT="..." [DURATION=<s>]  # another VideoJob here, fetched',
            f"  {env}make demo-down                         # stops all of it",
            f"Logs: {_shown(root / 'logs')} (operator), {_shown(root / 'cluster' / 'logs')}, "
            f"the stages: {state.logs_hint}",
        ]
    )


# -- the commands ----------------------------------------------------------


def run(root: Path, manifest: dict[str, Any], keep: bool, node_choice: str) -> int:
    began = time.monotonic()
    output = root / "output"
    state = _running_demo(root)
    with contextlib.ExitStack() as cleanup:
        if state is not None:
            _say(f"using the demo kept in {_shown(root)} ({state.ran_on})")
        else:
            root.mkdir(parents=True, exist_ok=True)
            cleanup.callback(down, root)
            state = bring_up(root, keep, node_choice, manifest)
            _say(f"up in {time.monotonic() - began:.0f} s")
            if keep:
                cleanup.pop_all()
        try:
            succeeded = render(state, manifest, output)
        except KeyboardInterrupt:
            if not state.keep:
                raise
            print("\ndemo: interrupted", file=sys.stderr)
            succeeded = False
        _say(f"{'done' if succeeded else 'ended'} in {time.monotonic() - began:.0f} s")
        if state.keep:
            print(next_steps(state, root))
    return 0 if succeeded else 1


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds the ExitStack: everything started is stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/demo.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="make demo")
    run_parser.add_argument("--prompt", help="the VideoJob's prompt (default: the example's)")
    run_parser.add_argument("--duration", type=int, help="its durationSeconds")
    run_parser.add_argument("--resolution", help="its resolution, WIDTHxHEIGHT")
    run_parser.add_argument("--name", help="its name (default: from the prompt)")
    run_parser.add_argument("--keep", action="store_true", help="leave everything running")
    fetch_parser = commands.add_parser("fetch", help="make fetch VJ=NAME")
    fetch_parser.add_argument("name", help="the VideoJob")
    fetch_parser.add_argument("--namespace", default=NAMESPACE)
    commands.add_parser("down", help="make demo-down")
    args = parser.parse_args(argv)
    root = Path(os.environ.get("VIDOP_DEMO_DIR", REPO / ".demo")).resolve()

    if args.command == "run":
        choice = os.environ.get("VIDOP_DEMO_NODE", "auto")
        if choice not in ("auto", "real", "local"):
            raise DemoError(f"VIDOP_DEMO_NODE is real, local or auto, not {choice!r}")
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        manifest = videojob_manifest(args.prompt, args.duration, args.resolution, args.name)
        return run(root, manifest, args.keep, choice)
    if args.command == "fetch":
        state = DemoState.load(root / STATE_FILE)
        if state is None or state.s3 is None or not DevCluster(root / "cluster").is_up():
            raise DemoError(f"no demo runs in {_shown(root)}: `make demo KEEP=1` starts one")
        files = fetch(state, args.name, args.namespace, root / "output")
        _show(files)
        return 0
    stopped = down(root)
    print(f"stopped {', '.join(stopped)}" if stopped else f"no demo was running in {_shown(root)}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (DemoError, ClusterError, S3ServerError) as error:
        print(f"demo: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started is stopped", file=sys.stderr)
        raise SystemExit(130) from None
