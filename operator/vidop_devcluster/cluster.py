"""A real Kubernetes control plane on loopback, for the tests and the demo.

Used by ``python -m vidop_devcluster`` (``make cluster-up`` /
``make cluster-down``) and by the pytest fixtures in ``tests/conftest.py``.

It runs the real components, built by ``hack/tools.sh``: etcd (data on tmpfs
when there is one), kube-apiserver (TLS, RBAC, a generated admin client
certificate), kube-controller-manager (every default controller: Job, garbage
collector, TTL-after-finished, pod GC, namespace, service account,
node lifecycle, ...), kube-scheduler, and kwok, which plays the kubelet for
the nodes labelled for it, following ``kwok.yaml`` beside this module.
Optionally Kueue's manager too (``kueue=True``, or :meth:`DevCluster.start_kueue`
on a running cluster; :mod:`vidop_devcluster.kueue` says how it is set up), and
a real node: containerd and a real kubelet running stage pods as containers
(``real_node=NodeShape(...)``, or :meth:`DevCluster.start_node`;
:mod:`vidop_devcluster.realnode` says what it needs and changes on the host).
The API server authorises kubelets as a real cluster does (the Node authorizer
and the NodeRestriction admission plugin) and calls them with a client
certificate of its own for logs and exec.

Everything the cluster owns lives in one folder: ``kubeconfig`` (admin),
``pki/``, ``logs/<component>.log`` and ``state.json`` (ports and the PIDs to
stop). Only loopback addresses are bound, each on a free port, so several
clusters can run side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from vidop_devcluster import kueue, nodes, pki, processes, realnode

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"  # only allocated to Service objects, never routed
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KUEUE = "kueue"
"""The optional component: Kueue's manager."""
NODE_COMPONENTS = ("containerd", "kubelet")
"""The processes of the optional real node, in start order."""
_REPO_ROOT = Path(__file__).resolve().parents[2]


class ClusterError(RuntimeError):
    """The control plane could not be started; the message names the log to read."""


def tools_bin_dir() -> Path:
    """The folder holding the control-plane binaries: ``$VIDOP_TOOLS_BIN`` if
    set, else whatever ``hack/tools.sh`` builds or finds in its cache."""
    if env := os.environ.get("VIDOP_TOOLS_BIN"):
        return Path(env)
    script = _REPO_ROOT / "hack" / "tools.sh"
    if not script.exists():
        raise ClusterError(f"set VIDOP_TOOLS_BIN: {script} is not there to build the binaries")
    # pip runs under this interpreter, which has it, whatever python3 on PATH lacks.
    result = subprocess.run(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if result.returncode != 0:
        raise ClusterError(f"{script} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def _free_ports(names: list[str]) -> dict[str, int]:
    """Distinct free loopback ports. Every socket stays bound until all are
    chosen: closing each at once would let the kernel hand the same port out
    twice (etcd's client and peer ports once collided that way)."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for name in names:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports[name] = int(sock.getsockname()[1])
        return ports


@dataclass
class State:
    """What ``state.json`` records about a running cluster."""

    ports: dict[str, int]
    etcd_data_dir: str
    processes: list[processes.Started] = field(default_factory=list)
    kueue: bool = False
    """Whether Kueue's manager belongs to this cluster (is_up() expects it)."""
    node: dict[str, Any] | None = None
    """The real node's shape, suffix and network, while it belongs to the
    cluster (is_up() expects its processes)."""

    def save(self, path: Path) -> None:
        # Whole or not at all: a reader never sees half a file.
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=2))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> State:
        raw = json.loads(path.read_text())
        raw["processes"] = [processes.Started(**p) for p in raw["processes"]]
        return cls(**raw)


# Each component gets its own identity, as in a real cluster, so the bootstrap
# RBAC roles the API server creates are what authorises them.
_CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("vidop-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    # kwok writes the status of every pod and node it manages, as many kubelets would.
    "kwok": ("kwok", "system:masters"),
}
# Kueue's manager is bound to Kueue's own roles (vidop_devcluster.kueue.rbac);
# its pair is issued when Kueue starts, from the same CA.
_KUEUE_USER = "vidop-kueue-manager"


class DevCluster:
    """One control plane rooted at ``root``. ``up()`` starts it (or finds it
    running), ``down()`` stops exactly the processes it started."""

    def __init__(
        self,
        root: Path,
        bin_dir: Path | None = None,
        *,
        detach: bool = True,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        kueue: bool = False,
        kueue_settings: Mapping[str, Any] | None = None,
        real_node: realnode.NodeShape | None = None,
    ) -> None:
        """``detach=False`` ties the components' lives to this process (tests).
        ``extra_args`` maps a component's name to flags appended to its
        command line (the benchmarks turn on kube-apiserver's audit log this
        way); none by default. ``kueue=True``: ``up()`` starts Kueue's manager
        as well (and adds it to a cluster that runs without it);
        ``kueue_settings`` are top-level fields laid over its Configuration
        (the queueing benchmark raises its client rate this way).
        ``real_node``: ``up()`` starts a real node of that shape too (see
        :meth:`start_node`)."""
        self.root = root
        self._bin_dir = bin_dir
        self._detach = detach
        self._kueue = kueue
        self._kueue_settings = dict(kueue_settings or {})
        self._real_node = real_node
        self._extra_args = {name: list(flags) for name, flags in (extra_args or {}).items()}
        self.kubeconfig = root / "kubeconfig"
        self.logs = root / "logs"
        self._state_file = root / "state.json"
        self._pki_dir = root / "pki"

    # -- public surface ---------------------------------------------------

    def is_up(self) -> bool:
        """Whether every component of the cluster (Kueue's manager too, when
        ``state.json`` says it belongs) was started and still runs."""
        if not self._state_file.exists():
            return False
        state = State.load(self._state_file)
        return _all_running(
            state,
            [
                *COMPONENTS,
                *([KUEUE] if state.kueue else []),
                *(NODE_COMPONENTS if state.node else []),
            ],
        )

    def kueue_running(self) -> bool:
        """Whether the cluster is up with Kueue's manager."""
        return self.is_up() and State.load(self._state_file).kueue

    @property
    def bin_dir(self) -> Path:
        """The folder of the binaries (kubectl and helm included)."""
        if self._bin_dir is None:
            self._bin_dir = tools_bin_dir()
        return self._bin_dir

    def components(self) -> list[processes.Started]:
        """The processes ``state.json`` records, in start order."""
        if not self._state_file.exists():
            return []
        return State.load(self._state_file).processes

    def up(self, timeout: float = 120.0) -> None:
        """Start the control plane and wait until every node is Ready (and,
        with ``kueue=True``, until Kueue's manager is ready)."""
        if self.is_up():
            if self._kueue:
                self.start_kueue(timeout)
            if self._real_node:
                self.start_node(self._real_node, timeout=timeout)
            return
        self.down()  # a half-started or crashed earlier run
        # Built (or found) before the clock starts: cold, it takes minutes;
        # and only where a node can run at all.
        images = self._node_images() if self._real_node else None
        bin_dir = self.bin_dir
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.logs, ignore_errors=True)
        issued = pki.generate(self._pki_dir, _CLIENTS)
        state = State(
            ports=_free_ports(
                ["etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"]
            ),
            etcd_data_dir=tempfile.mkdtemp(prefix="vidop-etcd-", dir=_tmpfs_or_none()),
        )
        state.save(self._state_file)
        deadline = time.monotonic() + timeout
        try:
            self._start_all(bin_dir, issued, state, deadline)
            if self._kueue:
                self._start_kueue(state, deadline)
            if self._real_node and images:
                with _as_cluster_error("the real node"):
                    self._start_node(state, self._real_node, images, timeout)
        except BaseException:
            self.down()
            raise

    def start_kueue(self, timeout: float = 120.0) -> None:
        """Add Kueue's manager to the running cluster and wait until it is
        ready; nothing happens when it runs already. Its CRDs and roles are
        applied (again) each time, with the webhook port of this start."""
        if self.kueue_running():
            return
        if not (
            self._state_file.exists() and _all_running(State.load(self._state_file), COMPONENTS)
        ):
            raise ClusterError(f"the cluster in {self.root} is not up: start it before Kueue")
        state = State.load(self._state_file)
        stale = [p for p in state.processes if p.name == KUEUE]
        for started in stale:  # a manager that died: what is left of it goes
            processes.stop(started)
        state.processes = [p for p in state.processes if p.name != KUEUE]
        try:
            self._start_kueue(state, time.monotonic() + timeout)
        except BaseException:
            self.stop_kueue()
            raise

    def stop_kueue(self) -> None:
        """Stop Kueue's manager; the cluster runs on without it. Its CRDs,
        and the objects of its kinds, stay."""
        if not self._state_file.exists():
            return
        state = State.load(self._state_file)
        for started in state.processes:
            if started.name == KUEUE:
                processes.stop(started)
        state.processes = [p for p in state.processes if p.name != KUEUE]
        state.kueue = False
        state.save(self._state_file)

    @property
    def node_layout(self) -> realnode.Layout:
        """The real node's folders (whether or not it runs)."""
        return realnode.Layout(self.root / "node")

    def running_node(self) -> tuple[realnode.NodeShape, realnode.Network] | None:
        """The real node's shape and pod network (pods reach the host at its
        ``gateway``) while it belongs to the cluster, else None."""
        if not self._state_file.exists() or not (node := State.load(self._state_file).node):
            return None
        if "shape" not in node:  # recorded by an earlier version of this module
            return None
        return realnode.NodeShape(**node["shape"]), realnode.Network(**node["network"])

    def start_node(
        self,
        shape: realnode.NodeShape,
        images: realnode.ImageArchive | None = None,
        timeout: float = 180.0,
    ) -> None:
        """Add a real node to the running cluster and wait until it is Ready
        (``timeout`` counts from containerd's start, after the images are
        built): containerd with ``images`` imported (:func:`built_images`
        when None), and a kubelet registered as ``shape.name``. Nothing
        happens when it runs already; a node of another shape is an error."""
        if not self._state_file.exists() or not _all_running(
            State.load(self._state_file), COMPONENTS
        ):
            raise ClusterError(f"the cluster in {self.root} is not up: start it before the node")
        state = State.load(self._state_file)
        if state.node and _all_running(state, NODE_COMPONENTS):
            if realnode.NodeShape(**state.node["shape"]) != shape:
                raise ClusterError(
                    f"the cluster in {self.root} runs a real node {state.node['shape']}: "
                    "stop it first (stop_node) to start another"
                )
            return
        with _as_cluster_error("the real node"):
            self._stop_node(state)  # what is left of one that died
        images = images or self._node_images()
        try:
            with _as_cluster_error("the real node"):
                self._start_node(state, shape, images, timeout)
        except BaseException as error:
            try:
                self._stop_node(State.load(self._state_file))
            except (OSError, RuntimeError) as cleanup_error:
                error.add_note(f"and stopping what had started failed: {cleanup_error}")
            raise

    def stop_node(self) -> None:
        """Stop the real node and remove what it left on the host (its
        containers, mounts, bridge and cgroups); its Node object stays, NotReady."""
        if self._state_file.exists():
            self._stop_node(State.load(self._state_file))

    def down(self) -> None:
        """Stop the processes recorded in ``state.json`` (newest first), clean
        up after the real node, and delete etcd's data. Safe to call when
        nothing runs."""
        if not self._state_file.exists():
            return
        state = State.load(self._state_file)
        for started in reversed(state.processes):
            processes.stop(started)
        try:
            if state.node:
                realnode.release(self.node_layout, state.node["suffix"])
        finally:  # the cluster can always be started again
            shutil.rmtree(state.etcd_data_dir, ignore_errors=True)
            self._state_file.unlink()

    def api_client(self) -> client.ApiClient:
        """A kubernetes ``ApiClient`` authenticated as the cluster admin."""
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api

    def restart_component(self, name: str, timeout: float = 60.0) -> None:
        """Stop one component and start it again with the same arguments (the
        chaos tests restart kube-apiserver; etcd keeps the data)."""
        state = State.load(self._state_file)
        old = next(p for p in state.processes if p.name == name)
        processes.stop(old)
        argv = json.loads((self.root / f"{name}.argv.json").read_text())
        new = processes.start(name, argv, self.logs / f"{name}.log", detach=self._detach)
        state.processes = [new if p.name == name else p for p in state.processes]
        state.save(self._state_file)
        if name == "kube-apiserver":
            self._wait_for(
                "kube-apiserver /readyz",
                lambda: self._https_ok(state.ports["apiserver"], "/readyz", client=True),
                time.monotonic() + timeout,
                new,
            )

    # -- start-up -----------------------------------------------------------

    def _start_all(
        self, bin_dir: Path, issued: pki.ClusterPKI, state: State, deadline: float
    ) -> None:
        ports = state.ports
        api_url = f"https://{LOOPBACK}:{ports['apiserver']}"
        for stem in issued.clients:
            target = self.kubeconfig if stem == "admin" else self.root / f"{stem}.kubeconfig"
            _write_kubeconfig(target, api_url, issued.ca.cert, issued.clients[stem])

        # etcd speaks TLS only and wants a client certificate from our CA:
        # plain HTTP on loopback would let any local user past RBAC.
        client_url = f"https://{LOOPBACK}:{ports['etcd-client']}"
        peer_url = f"https://{LOOPBACK}:{ports['etcd-peer']}"
        etcd = self._launch(
            state,
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=vidop-dev",
                f"--data-dir={state.etcd_data_dir}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=vidop-dev={peer_url}",
                f"--cert-file={issued.etcd.cert}",
                f"--key-file={issued.etcd.key}",
                f"--trusted-ca-file={issued.ca.cert}",
                "--client-cert-auth",
                f"--peer-cert-file={issued.etcd.cert}",
                f"--peer-key-file={issued.etcd.key}",
                f"--peer-trusted-ca-file={issued.ca.cert}",
                "--peer-client-cert-auth",
                # A throwaway cluster: don't fsync every write, keep the log short.
                "--unsafe-no-fsync",
                "--snapshot-count=10000",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        self._wait_for(
            "etcd /health",
            lambda: _http_ok(
                f"{client_url}/health", self._tls_context(issued.ca.cert, issued.etcd_client)
            ),
            deadline,
            etcd,
        )

        apiserver = self._launch(
            state,
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={client_url}",
                f"--etcd-cafile={issued.ca.cert}",
                f"--etcd-certfile={issued.etcd_client.cert}",
                f"--etcd-keyfile={issued.etcd_client.key}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={issued.apiserver.cert}",
                f"--tls-private-key-file={issued.apiserver.key}",
                f"--client-ca-file={issued.ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={issued.kubelet_client.cert}",
                f"--kubelet-client-key={issued.kubelet_client.key}",
                f"--kubelet-certificate-authority={issued.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--service-account-key-file={issued.service_account_pub}",
                f"--service-account-signing-key-file={issued.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait_for(
            "kube-apiserver /readyz",
            lambda: self._https_ok(ports["apiserver"], "/readyz", client=True),
            deadline,
            apiserver,
        )
        with contextlib.closing(self.api_client()) as api:
            client.RbacAuthorizationV1Api(api).create_cluster_role_binding(
                {  # type: ignore[arg-type]  # the client takes dicts too
                    "metadata": {"name": "vidop-devcluster:apiserver-kubelet-client"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "system:kubelet-api-admin",
                    },
                    "subjects": [
                        {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "User",
                            "name": pki.KUBELET_CLIENT_USER,
                        }
                    ],
                }
            )

        def component(name: str, port: int) -> list[str]:
            # What kube-controller-manager and kube-scheduler share: their own
            # identity for everything, loopback serving, one replica.
            kubeconfig = self.root / f"{name}.kubeconfig"
            return [
                str(bin_dir / name),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=1",
            ]

        controller_manager = self._launch(
            state,
            "kube-controller-manager",
            [
                *component("kube-controller-manager", ports["controller-manager"]),
                # Every default controller, each with its own service account.
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={issued.service_account_key}",
                f"--root-ca-file={issued.ca.cert}",
            ],
        )
        scheduler = self._launch(
            state, "kube-scheduler", component("kube-scheduler", ports["scheduler"])
        )
        kwok_config = self.root / "kwok.yaml"
        kwok_config.write_bytes(
            resources.files("vidop_devcluster").joinpath("kwok.yaml").read_bytes()
        )
        kwok = self._launch(
            state,
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--config={kwok_config}",
                f"--kubeconfig={self.root / 'kwok.kubeconfig'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-label-selector={nodes.KWOK_NODE_LABEL}=true",
                f"--server-address={LOOPBACK}:{ports['kwok']}",
                # Node and pod addresses are only strings in status; keep them on
                # loopback so nothing ever tries to reach a private range.
                f"--node-ip={LOOPBACK}",
                "--cidr=127.16.0.0/16",
            ],
        )
        self._wait_for(
            "kube-controller-manager /healthz",
            lambda: self._https_ok(ports["controller-manager"], "/healthz"),
            deadline,
            controller_manager,
        )
        self._wait_for(
            "kube-scheduler /healthz",
            lambda: self._https_ok(ports["scheduler"], "/healthz"),
            deadline,
            scheduler,
        )
        self._create_nodes_and_wait(deadline, kwok)

    def _start_kueue(self, state: State, deadline: float) -> None:
        binary = self.bin_dir / KUEUE
        manifests = self.bin_dir / "kueue-manifests"
        if not (binary.exists() and manifests.is_dir()):
            raise ClusterError(
                f"{self.bin_dir} has no kueue or kueue-manifests: hack/tools.sh builds them"
            )
        state.ports.update(_free_ports(["kueue-health", "kueue-metrics", "kueue-webhook"]))
        state.kueue = True
        state.save(self._state_file)
        client_pair = pki.add_client(self._pki_dir, KUEUE, _KUEUE_USER, None)
        kubeconfig = self.root / f"{KUEUE}.kubeconfig"
        _write_kubeconfig(
            kubeconfig,
            f"https://{LOOPBACK}:{state.ports['apiserver']}",
            self._pki_dir / "ca.crt",
            client_pair,
        )
        # What a pod would have mounted from the Secret: the same pair.
        cert_dir = self.root / "kueue" / "webhook-certs"
        webhook = pki.generate_kueue_webhook(cert_dir, kueue.WEBHOOK_SERVICE_DNS_NAME)
        self._apply_kueue_objects(manifests, webhook, state.ports["kueue-webhook"])
        config_file = self.root / "kueue" / "config.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    **kueue.configuration(
                        health_port=state.ports["kueue-health"],
                        metrics_port=state.ports["kueue-metrics"],
                        webhook_port=state.ports["kueue-webhook"],
                        cert_dir=cert_dir,
                    ),
                    **self._kueue_settings,
                }
            )
        )
        manager = self._launch(
            state,
            KUEUE,
            [str(binary), f"--config={config_file}", f"--kubeconfig={kubeconfig}"],
        )
        self._wait_for(
            "kueue /readyz",
            lambda: _http_ok(f"http://{LOOPBACK}:{state.ports['kueue-health']}/readyz"),
            deadline,
            manager,
        )

    def _node_images(self) -> realnode.ImageArchive:
        """The images, once the host is known to run a node at all (a host
        without root or containerd is told so before minutes of building)."""
        if reason := realnode.unavailable_reason(self.bin_dir):
            raise ClusterError(f"no real node on this host: {reason}")
        return built_images()

    def _start_node(
        self,
        state: State,
        shape: realnode.NodeShape,
        images: realnode.ImageArchive,
        timeout: float,
    ) -> None:
        # One suffix per cluster folder: its bridge, cgroups and shims are
        # told apart from another cluster's by it.
        suffix = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]
        layout = self.node_layout
        with realnode.host_lock():
            # Nodes whose clusters died without releasing them (this one's
            # own earlier node included) go first, and their networks with them.
            realnode.sweep_stale()
            network = realnode.choose_network(suffix, realnode.host_networks())
            state.ports.update(_free_ports(["kubelet", "kubelet-healthz"]))
            state.node = {"shape": asdict(shape), "suffix": suffix, "network": asdict(network)}
            state.save(self._state_file)
            realnode.register(layout, suffix)
            realnode.prepare_host(layout, network, suffix)

        identity = (f"system:node:{shape.name}", "system:nodes")
        client_pair = pki.add_client(self._pki_dir, "kubelet", *identity)
        serving = pki.add_serving(
            self._pki_dir, "kubelet-serving", *identity, [network.gateway, shape.name]
        )
        kubeconfig = self.root / "kubelet.kubeconfig"
        _write_kubeconfig(
            kubeconfig,
            f"https://{LOOPBACK}:{state.ports['apiserver']}",
            self._pki_dir / "ca.crt",
            client_pair,
        )
        containerd = self._launch(
            state, "containerd", ["containerd", f"--config={layout.containerd_config}"]
        )
        ctr = ["ctr", f"--address={layout.containerd_socket}"]
        self._wait_for(
            "containerd's socket",
            lambda: subprocess.run([*ctr, "version"], capture_output=True).returncode == 0,
            time.monotonic() + timeout,
            containerd,
        )
        realnode.import_images(layout, images)  # 1.2 GB cold: its own time, then the clock
        deadline = time.monotonic() + timeout
        layout.kubelet_config.write_text(
            yaml.safe_dump(
                realnode.kubelet_config(
                    layout,
                    shape=shape,
                    suffix=suffix,
                    network=network,
                    port=state.ports["kubelet"],
                    healthz_port=state.ports["kubelet-healthz"],
                    client_ca=self._pki_dir / "ca.crt",
                    serving_cert=serving.cert,
                    serving_key=serving.key,
                )
            )
        )
        labels = ",".join(f"{k}={v}" for k, v in realnode.node_labels(shape).items())
        kubelet = self._launch(
            state,
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={layout.kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={layout.kubelet_root}",
                f"--hostname-override={shape.name}",
                f"--node-ip={network.gateway}",
                f"--node-labels={labels}",
                "--v=1",
            ],
        )
        with contextlib.closing(self.api_client()) as api:
            core = client.CoreV1Api(api)

            def ready() -> bool:
                try:
                    return _is_ready(core.read_node(shape.name))
                except client.ApiException:
                    return False

            self._wait_for(f"node {shape.name} Ready", ready, deadline, kubelet)
            if shape.gpus:
                core.patch_node(shape.name, realnode.simulated_gpu_annotation(shape))
                core.patch_node_status(shape.name, realnode.simulated_gpu_patch(shape))

    def _stop_node(self, state: State) -> None:
        for started in reversed(state.processes):
            if started.name in NODE_COMPONENTS:
                processes.stop(started)
        if state.node:
            realnode.release(self.node_layout, state.node["suffix"])
        state.processes = [p for p in state.processes if p.name not in NODE_COMPONENTS]
        for port in ("kubelet", "kubelet-healthz"):
            state.ports.pop(port, None)
        state.node = None
        state.save(self._state_file)

    def _apply_kueue_objects(self, manifests: Path, webhook: pki.WebhookPKI, port: int) -> None:
        """Kueue's namespace, its webhook Secret, its roles and its CRDs."""
        secret = kueue.webhook_secret(
            ca_cert=webhook.ca.cert.read_bytes(),
            ca_key=webhook.ca.key.read_bytes(),
            cert=webhook.serving.cert.read_bytes(),
            key=webhook.serving.key.read_bytes(),
        )
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kueue.NAMESPACE}}
        crds = kueue.crds(
            manifests / "crds", webhook_port=port, ca_pem=webhook.ca.cert.read_bytes()
        )
        for batch in (
            [namespace],
            [secret, *kueue.rbac(manifests / "rbac", _KUEUE_USER), *crds],
        ):
            # Server-side: the Workload CRD is too large for the last-applied annotation.
            self._kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=vidop-devcluster",
                "-f",
                "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": batch}),
            )
        self._kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{crd['metadata']['name']}" for crd in crds),
        )

    def _kubectl(self, *args: str, input: str | None = None) -> None:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise ClusterError(f"kubectl {args[0]} failed: {result.stderr.strip()}")

    def _launch(self, state: State, name: str, argv: list[str]) -> processes.Started:
        argv = [*argv, *self._extra_args.get(name, [])]
        (self.root / f"{name}.argv.json").write_text(json.dumps(argv))
        started = processes.start(name, argv, self.logs / f"{name}.log", detach=self._detach)
        state.processes.append(started)
        state.save(self._state_file)
        return started

    def _wait_for(
        self, what: str, check: Callable[[], bool], deadline: float, started: processes.Started
    ) -> None:
        while time.monotonic() < deadline:
            if not processes.is_running(started):
                raise ClusterError(
                    f"{started.name} exited (code {processes.exit_code(started)}) "
                    f"while waiting for {what}; "
                    f"see {self.logs / (started.name + '.log')}"
                )
            if check():
                return
            time.sleep(0.1)
        raise ClusterError(
            f"timed out waiting for {what}; see {self.logs / (started.name + '.log')}"
        )

    @staticmethod
    def _tls_context(ca: Path, client_pair: pki.KeyPair) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(client_pair.cert, client_pair.key)
        return context

    def _https_ok(self, port: int, path: str, client: bool = False) -> bool:
        if client:
            context = self._tls_context(
                self._pki_dir / "ca.crt",
                pki.KeyPair(self._pki_dir / "admin.crt", self._pki_dir / "admin.key"),
            )
        else:
            # controller-manager and scheduler serve a self-signed certificate.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return _http_ok(f"https://{LOOPBACK}:{port}{path}", context)

    def _create_nodes_and_wait(self, deadline: float, kwok: processes.Started) -> None:
        with contextlib.closing(self.api_client()) as api:
            core = client.CoreV1Api(api)
            wanted = nodes.default_nodes()
            for manifest in wanted:
                core.create_node(manifest)  # type: ignore[arg-type]  # the client takes dicts too
            names = {m["metadata"]["name"] for m in wanted}

            def all_ready() -> bool:
                listed = core.list_node(label_selector=f"{nodes.KWOK_NODE_LABEL}=true")
                ready = {n.metadata.name for n in listed.items if n.metadata and _is_ready(n)}
                return names <= ready

            self._wait_for("all nodes Ready", all_ready, deadline, kwok)


@contextlib.contextmanager
def _as_cluster_error(what: str) -> Iterator[None]:
    """The host's refusals (a failed ``ip`` or ``ctr``, an unwritable /run)
    as ClusterError, which callers expect when a part cannot start."""
    try:
        yield
    except ClusterError:
        raise
    except (OSError, RuntimeError) as error:
        raise ClusterError(f"{what}: {error}") from error


def built_images() -> realnode.ImageArchive:
    """The images for the real node: those of ``$VIDOP_IMAGES_ARCHIVE`` if
    set, else whatever ``hack/images.sh`` builds or finds in podman's layer
    cache (it prints the archive's path last). Raises ClusterError when there
    are none."""
    if env := os.environ.get("VIDOP_IMAGES_ARCHIVE"):
        archive = Path(env)
    else:
        script = _REPO_ROOT / "hack" / "images.sh"
        if not script.exists():
            raise ClusterError(f"set VIDOP_IMAGES_ARCHIVE: {script} is not there to build them")
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ClusterError(
                f"{script} failed with exit code {result.returncode}:\n{result.stderr[-4000:]}"
            )
        archive = Path(result.stdout.strip().splitlines()[-1])
    try:
        return realnode.ImageArchive.read(archive)
    except (OSError, ValueError, KeyError) as error:
        raise ClusterError(f"no image listing for {archive}: {error}") from error


def _is_ready(node: client.V1Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _all_running(state: State, names: Sequence[str]) -> bool:
    """Whether ``state`` records each of ``names`` once, and each still runs."""
    recorded = [p for p in state.processes if p.name in names]
    return sorted(p.name for p in recorded) == sorted(names) and all(
        processes.is_running(p) for p in recorded
    )


_TMPFS_MIN_FREE_BYTES = 1 << 30  # etcd preallocates 2 x 64 MB of WAL up front


def _tmpfs_or_none() -> str | None:
    # etcd on tmpfs: no disk latency, and nothing left behind after a reboot.
    # Containers often give /dev/shm only 64 MiB, where etcd could not start.
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return None
    stats = os.statvfs(shm)
    return str(shm) if stats.f_bavail * stats.f_frsize >= _TMPFS_MIN_FREE_BYTES else None


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    # Loopback never goes through a proxy, whatever http(s)_proxy says.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return False


def _write_kubeconfig(path: Path, server: str, ca: Path, client_pair: pki.KeyPair) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "vidop-dev", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": "vidop-dev",
                "user": {
                    "client-certificate": str(client_pair.cert),
                    "client-key": str(client_pair.key),
                },
            }
        ],
        "contexts": [
            {
                "name": "vidop-dev",
                "context": {"cluster": "vidop-dev", "user": "vidop-dev", "namespace": "default"},
            }
        ],
        "current-context": "vidop-dev",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
