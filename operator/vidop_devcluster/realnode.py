"""The real node: containerd and a real kubelet, registered with the dev cluster.

Called by :mod:`vidop_devcluster.cluster` (``DevCluster(real_node=...)``,
:meth:`~vidop_devcluster.cluster.DevCluster.start_node`). Stage pods bound to
this node run as containers from the images ``hack/images.sh`` builds, with
everything a production node enforces: the pod's user, read-only root
filesystem, dropped capabilities, seccomp, and memory and CPU limits in real
cgroups (an allocation past the limit is OOM-killed by the kernel).
``kubectl logs`` and ``kubectl exec`` reach it through its serving
certificate.

What it needs from the host (:func:`unavailable_reason` says what is missing):
root, Debian's ``containerd``, ``runc`` and ``containernetworking-plugins``,
``ip`` from iproute2, and cgroup controllers mounted. What it changes on the
host, named after the node's own suffix so that several clusters run side by
side, and undone by :func:`release` (or, for a node whose cluster died
without it, by the :func:`sweep_stale` of the next node that starts):

- a bridge ``vidop<suffix>`` with the first address of a free 10.x.y.0/24;
  pods get the others. Nothing is routed or masqueraded (the host's
  forwarding setting is left alone): a pod reaches the host itself at that
  address, so every host service listening there or on all addresses (the
  demo's S3 server listens on exactly that one), and nothing beyond;
- one cgroup ``/vidop-<suffix>`` per controller, the kubelet's cgroup root;
- the kernel settings a kubelet insists on (:data:`KERNEL_TUNABLES`: memory
  overcommit, reboot 10 s after a panic, panic on oops, key quotas). The
  kubelet sets them when it starts; their values from before the first node
  are kept in :data:`HOST_RECORDS` and put back when the last node stops;
- a record of the node in :data:`HOST_RECORDS` (``/run``, so a reboot,
  which resets everything above too, forgets it).

Everything else lives in its folder: containerd's root (images, snapshots;
kept from one start to the next so imports are skipped) and state (sockets,
network namespaces, container root filesystems), the kubelet's root and pod
logs, the CNI configuration and its address leases.

The pure functions build the three configurations (containerd's TOML, the
kubelet's KubeletConfiguration, the CNI network list) and are unit-tested
without a host; the functions below them act on the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidop_devcluster.localpod import SIMULATED_GPU_ANNOTATION
from vidop_devcluster.nodes import GPU_PRESENT_LABEL, GPU_RESOURCE, GPU_TAINT_KEY

REAL_NODE_LABEL = "vidop.io/real-node"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
"""The sandbox image: built by ``hack/images.sh`` from the pause.c of the
``k8s.io/kubernetes`` module, never pulled."""
DEV_STAGE_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}
"""Resources for stages on a development machine's real node: requests
small enough that a VideoJob's stages run side by side on two cores (the
default pipeline's video_gen asks for 2 CPUs), limits the kernel enforces."""
CRI_NAMESPACE = "k8s.io"
"""containerd's namespace for the images and containers of the CRI."""
CNI_BIN_DIR = Path("/usr/lib/cni")
"""Where Debian's containernetworking-plugins puts the plugins."""
_CNI_PLUGINS = ("bridge", "host-local", "loopback")
_HOST_PROGRAMS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip")
_log = logging.getLogger(__name__)
HOST_RECORDS = Path("/run/vidop-nodes")
"""The host's record of the real nodes it runs (one JSON file per node) and
of the kernel settings before the first of them, under a lock file."""
_KERNEL_SETTINGS = "kernel-settings.json"
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
"""The settings a kubelet sets on the host when it starts (unless told to
refuse to start instead, which would leave no real node on a host with the
kernel's defaults); under /proc/sys."""
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class NodeShape:
    """What the real node registers as. Its CPU and memory are the host's,
    measured by the kubelet; GPUs are simulated (advertised for scheduling,
    said so by annotation) unless the host has some, which this node does
    not pass through."""

    name: str = "vidop-node"
    gpus: int = 0
    max_pods: int = 20


DEV_NODE = NodeShape(name="vidop-node", gpus=1)
"""The real node of ``make cluster-up REAL_NODE=1``, the demo and the tests:
one simulated GPU, so GPU stages land on it too."""


@dataclass(frozen=True)
class ImageArchive:
    """What ``hack/images.sh`` leaves: one archive of the stage images, the
    operator and the pause image (for ``ctr images import``), and each
    image's ID by reference, from the listing written beside it."""

    archive: Path
    ids: dict[str, str]

    @classmethod
    def read(cls, archive: Path) -> ImageArchive:
        listing = json.loads(archive.with_suffix(".json").read_text())
        return cls(archive, {image["ref"]: image["id"] for image in listing["images"]})


@dataclass(frozen=True)
class Network:
    """The node's pod network: a bridge and a /24 on it."""

    bridge: str
    subnet: str

    @property
    def gateway(self) -> str:
        """The host's address on the bridge: what pods reach the host at."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def bridge_mac(self) -> str:
        """A fixed, locally administered MAC for the bridge. Left to itself a
        Linux bridge takes the lowest MAC of its ports, so it changes when a
        pod's veth comes or goes, and the pods that cached the gateway's old
        MAC lose the host until their ARP entry expires (seen: a stage's
        upload timing out just after a sibling stage's pod ended)."""
        digest = hashlib.sha256(self.bridge.encode()).digest()
        return ":".join(f"{byte:02x}" for byte in (0x02, *digest[:5]))


@dataclass(frozen=True)
class Layout:
    """The folders and files of one node, under ``root``."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "leases"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def imported(self) -> Path:
        """Records which image archive containerd's store holds already."""
        return self.root / "containerd" / "imported.json"


def bridge_name(suffix: str) -> str:
    """The node's bridge (an interface name has at most 15 characters)."""
    return f"vidop{suffix}"[:15]


def cgroup_root(suffix: str) -> str:
    """The kubelet's cgroup root (pods go below it), one per node."""
    return f"/vidop-{suffix}"


# -- the configurations (pure) ------------------------------------------------


def containerd_config(layout: Layout) -> str:
    """containerd's config.toml: its own root, state and socket; the CRI with
    runc on cgroupfs, the bridge network, and nothing ever pulled (the
    sandbox image is imported with the others)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        f'root = "{layout.containerd_root}"',
        f'state = "{layout.containerd_state}"',
        # Snapshotters this host cannot have would only log errors at start.
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", '
        '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.snapshotter.v1.devmapper"]',
        "[grpc]",
        f'  address = "{layout.containerd_socket}"',
        "[ttrpc]",
        f'  address = "{layout.containerd_socket}.ttrpc"',
        f"[{cri}]",
        f'  sandbox_image = "{PAUSE_IMAGE}"',
        # Lets a kubelet that is not alone on the host lower no process's OOM
        # score below the host's own (the node runs as root beside other work).
        "  restrict_oom_score_adj = true",
        # Pod network namespaces in the state folder, not the host's
        # /var/run/netns, so stopping the node finds (and removes) only its own.
        "  netns_mounts_under_state_dir = true",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        "  enable_selinux = false",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        # The kubelet drives cgroups through the file system (cgroupDriver: cgroupfs).
        "  SystemdCgroup = false",
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{layout.cni_conf_dir}"',
        "  max_conf_num = 1",
    ]
    return "\n".join(lines) + "\n"


def cni_config(layout: Layout, network: Network) -> dict[str, Any]:
    """The CNI network list: the node's bridge, addresses from its /24 with
    the leases in the node's folder, no masquerading (pods reach the host's
    bridge address and nothing else)."""
    return {
        "cniVersion": "1.0.0",
        "name": network.bridge,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                # The host's address on the bridge is set by prepare_host:
                # as a gateway the plugin would also turn on the host's
                # IP forwarding, which nothing here needs.
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_ipam_dir),
                    "ranges": [[{"subnet": network.subnet, "gateway": network.gateway}]],
                    "routes": [{"dst": network.subnet}],
                },
            }
        ],
    }


def kubelet_config(
    layout: Layout,
    *,
    shape: NodeShape,
    suffix: str,
    network: Network,
    port: int,
    healthz_port: int,
    client_ca: Path,
    serving_cert: Path,
    serving_key: Path,
) -> dict[str, Any]:
    """The KubeletConfiguration: serving on the node's address (the host's on
    the bridge: a kubelet refuses a loopback node IP) with a certificate from
    the dev CA, every request authenticated and authorised by the API server,
    cgroupfs under the node's own cgroup root, and thresholds that suit a
    shared development machine (no eviction for a nearly full disk, no image
    garbage collection: the imported images cannot be pulled again)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.gateway,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(suffix),
        # This kind of machine has cgroup v1 only; the kubelet still runs on it
        # when told to (and says it is deprecated).
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(layout.pod_logs),
        "maxPods": shape.max_pods,
        "registerNode": True,
        "registerWithTaints": (
            [{"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"}]
            if shape.gpus
            else []
        ),
        # Leave the host's iptables as they are.
        "makeIPTablesUtilChains": False,
        # Set the kernel settings a kubelet wants (KERNEL_TUNABLES, put back
        # by release()); refusing to start on the kernel's defaults would
        # leave no real node at all.
        "protectKernelDefaults": False,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "volumePluginDir": str(layout.kubelet_root / "volume-plugins"),
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
    }


def node_labels(shape: NodeShape) -> dict[str, str]:
    """The labels the kubelet registers its Node with (``--node-labels``):
    only ones NodeRestriction lets a kubelet set on itself."""
    labels = {REAL_NODE_LABEL: "true"}
    if shape.gpus:
        labels[GPU_PRESENT_LABEL] = "true"
    return labels


def simulated_gpu_patch(shape: NodeShape) -> dict[str, Any]:
    """The Node status patch an administrator (not the kubelet) applies to
    advertise simulated GPUs, as one advertises any extended resource."""
    gpus = str(shape.gpus)
    return {"status": {"capacity": {GPU_RESOURCE: gpus}, "allocatable": {GPU_RESOURCE: gpus}}}


def simulated_gpu_annotation(shape: NodeShape) -> dict[str, Any]:
    """The Node patch that says its GPUs are simulated."""
    return {
        "metadata": {
            "annotations": {
                SIMULATED_GPU_ANNOTATION: (
                    f"{shape.gpus} advertised for scheduling only; "
                    "stages run on the host's CPU unless it has a GPU"
                )
            }
        }
    }


def placement(shape: NodeShape) -> dict[str, Any]:
    """The pod spec fields that put a stage pod on this node and nowhere
    else (the demo's operator configuration gives them to every stage)."""
    tolerations = (
        [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}] if shape.gpus else []
    )
    return {"nodeSelector": {"kubernetes.io/hostname": shape.name}, "tolerations": tolerations}


# -- the host ------------------------------------------------------------------


def unavailable_reason(bin_dir: Path) -> str | None:
    """Why a real node cannot run on this host, or None when it can."""
    if os.geteuid() != 0:
        return "it needs root (containerd, cgroups, network namespaces)"
    missing = [name for name in _HOST_PROGRAMS if shutil.which(name) is None]
    missing += [
        f"{CNI_BIN_DIR}/{name}" for name in _CNI_PLUGINS if not (CNI_BIN_DIR / name).exists()
    ]
    if not (bin_dir / "kubelet").exists():
        missing.append(f"{bin_dir}/kubelet (hack/tools.sh builds it)")
    if missing:
        return f"missing {', '.join(missing)} (hack/system-deps.sh installs the packages)"
    if (
        not (_CGROUP_ROOT / "memory").is_dir()
        and not (_CGROUP_ROOT / "cgroup.controllers").exists()
    ):
        return f"no memory cgroup controller under {_CGROUP_ROOT}"
    return None


def choose_network(
    suffix: str, taken: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> Network:
    """A bridge named after ``suffix`` and a 10.x.y.0/24 that overlaps none
    of ``taken`` (:func:`host_networks`). The search starts at a place
    derived from ``suffix``, so a restarted node tends to get its own back."""
    start = int(suffix, 16)
    for offset in range(50 * 256):
        step = (start + offset) % (50 * 256)
        candidate = ipaddress.ip_network(f"10.{200 + step // 256}.{step % 256}.0/24")
        if not any(candidate.overlaps(other) for other in taken):
            return Network(bridge=bridge_name(suffix), subnet=str(candidate))
    raise RuntimeError("no free 10.x.y.0/24 for the node's pod network")


def host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The IPv4 networks of the host's routes and addresses."""
    taken = [
        ipaddress.ip_network(entry["dst"], strict=False)
        for entry in json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all"))
        if entry.get("dst", "default") != "default"
    ]
    for entry in json.loads(_run("ip", "-j", "-4", "addr")):
        for address in entry.get("addr_info", []):
            taken.append(
                ipaddress.ip_network(f"{address['local']}/{address['prefixlen']}", strict=False)
            )
    return taken


def prepare_host(layout: Layout, network: Network, suffix: str) -> None:
    """Folders, configurations, the bridge with its gateway address, and the
    kubelet's cgroup root in every controller."""
    for folder in (
        layout.containerd_root,
        layout.containerd_state,
        layout.cni_conf_dir,
        layout.cni_ipam_dir,
        layout.kubelet_root,
        layout.pod_logs,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.write_text(containerd_config(layout))
    (layout.cni_conf_dir / "10-vidop.conflist").write_text(
        json.dumps(cni_config(layout, network), indent=2)
    )
    if subprocess.run(["ip", "link", "show", network.bridge], capture_output=True).returncode:
        _run("ip", "link", "add", network.bridge, "type", "bridge")
    _run("ip", "link", "set", network.bridge, "address", network.bridge_mac)
    prefix = ipaddress.ip_network(network.subnet).prefixlen
    with contextlib.suppress(RuntimeError):  # there already
        _run("ip", "addr", "add", f"{network.gateway}/{prefix}", "dev", network.bridge)
    _run("ip", "link", "set", network.bridge, "up")
    for path in _cgroup_dirs(suffix):
        path.mkdir(exist_ok=True)


def import_images(layout: Layout, images: ImageArchive) -> bool:
    """Import the archive into containerd's CRI namespace unless the store
    holds exactly these images already. Returns whether it imported."""
    if layout.imported.exists() and json.loads(layout.imported.read_text()) == images.ids:
        return False
    _run(
        "ctr",
        f"--address={layout.containerd_socket}",
        f"--namespace={CRI_NAMESPACE}",
        "images",
        "import",
        str(images.archive),
    )
    layout.imported.write_text(json.dumps(images.ids, indent=2))
    return True


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Held while a node is chosen a network and registered, or released:
    two clusters starting nodes at once get different networks, and the
    kernel settings are saved and restored once."""
    HOST_RECORDS.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (HOST_RECORDS / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def register(layout: Layout, suffix: str) -> None:
    """Record the node on the host (under :func:`host_lock`); the first one
    also records the kernel settings the kubelet is about to change."""
    saved = HOST_RECORDS / _KERNEL_SETTINGS
    if not saved.exists():
        _write_whole(saved, json.dumps({name: _sysctl(name) for name in KERNEL_TUNABLES}))
    # The process that registers it too: until its containerd runs, the node
    # is not stale while that process lives (another cluster's sweep must not
    # take a node that is still starting).
    record = {
        "root": str(layout.root),
        "owner": os.getpid(),
        "ownerStart": _start_time(os.getpid()),
    }
    _write_whole(HOST_RECORDS / f"{suffix}.json", json.dumps(record))


def sweep_stale() -> list[str]:
    """Release the nodes recorded on the host whose containerd and kubelet no
    longer run, nor the process that started them: their cluster was stopped
    or killed without releasing them (a killed test session). Under
    :func:`host_lock`. A record that cannot be read (half written by a
    killed process) still has its bridge and cgroups removed; a node that
    cannot be released is reported and left for the next sweep, never in the
    way of the node being started. Returns the suffixes released."""
    swept = []
    for path in sorted(HOST_RECORDS.glob("*.json")):
        if path.name == _KERNEL_SETTINGS:
            continue
        try:
            record = json.loads(path.read_text())
            layout: Layout | None = Layout(Path(record["root"]))
        except (OSError, ValueError, KeyError):
            record, layout = {}, None
        owner_lives = record.get("owner") is not None and (
            _start_time(record["owner"]) == record.get("ownerStart")
        )
        if owner_lives or (layout is not None and _node_runs(layout)):
            continue
        try:
            _release(layout, path.stem)
        except (OSError, RuntimeError) as error:
            _log.warning("could not release the stale node %s: %s", path.stem, error)
            continue
        swept.append(path.stem)
    return swept


def release(layout: Layout, suffix: str) -> None:
    """Undo what a node left on the host once its kubelet and containerd are
    stopped (see :func:`clean_host`) and forget it; the last node to go puts
    the kernel settings back as they were before the first."""
    with host_lock():
        _release(layout, suffix)


def _release(layout: Layout | None, suffix: str) -> None:
    clean_host(layout, suffix)
    (HOST_RECORDS / f"{suffix}.json").unlink(missing_ok=True)
    saved = HOST_RECORDS / _KERNEL_SETTINGS
    others = [r for r in HOST_RECORDS.glob("*.json") if r.name != _KERNEL_SETTINGS]
    if others or not saved.exists():
        return
    before = json.loads(saved.read_text())
    saved.unlink()
    failed = []
    for name, value in before.items():
        try:
            if _sysctl(name) != value:
                (Path("/proc/sys") / name).write_text(value)
        except OSError as error:
            failed.append(f"{name}={value} ({error})")
    if failed:
        raise RuntimeError(f"could not put back the kernel settings {', '.join(failed)}")


def clean_host(layout: Layout | None, suffix: str) -> None:
    """Kill every process still in the node's cgroups (its containers) and
    every shim of its containerd (they outlive containerd), detach the
    mounts under its folder, delete its bridge and cgroups and its runtime
    state. Safe to call more than once; containerd's image store stays.
    Without ``layout`` (its record was unreadable) only what is named after
    ``suffix`` goes: the cgroups' processes, the bridge and the cgroups."""
    for _ in range(3):
        pids = [pid for path in _cgroup_dirs(suffix) for pid in _pids_below(path)]
        pids += _shims_of(layout.containerd_socket) if layout else []
        if not pids:
            break
        for pid in set(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids)
    for mount_point in _mounts_below(layout.root) if layout else []:
        subprocess.run(["umount", "--lazy", mount_point], capture_output=True, check=False)
    if layout and (left := _mounts_below(layout.root)):
        # Never delete through a mount: it may be a host folder bound in.
        raise RuntimeError(f"could not unmount {', '.join(left)}")
    subprocess.run(["ip", "link", "del", bridge_name(suffix)], capture_output=True, check=False)
    for path in _cgroup_dirs(suffix):
        for folder in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()
    if layout:
        shutil.rmtree(layout.containerd_state, ignore_errors=True)
        shutil.rmtree(layout.kubelet_root, ignore_errors=True)
        shutil.rmtree(layout.cni_ipam_dir, ignore_errors=True)


def _node_runs(layout: Layout) -> bool:
    """Whether the node's containerd or kubelet runs (either alone still
    uses its folder, bridge and cgroups)."""
    wanted = {
        os.fsencode(f"--config={layout.containerd_config}"),
        os.fsencode(f"--config={layout.kubelet_config}"),
    }
    return any(wanted & set(argv) for _, argv in _command_lines())


def _command_lines() -> Iterator[tuple[int, list[bytes]]]:
    """Every process's PID and argv (those that end meanwhile are skipped)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                yield int(proc.name), (proc / "cmdline").read_bytes().split(b"\0")


def _write_whole(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (the partial file never matches
    the ``*.json`` a sweep reads)."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), or None when it is
    gone: with the PID it names one process, never a recycled PID."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] == "Z" else fields[19]


def _sysctl(name: str) -> str:
    return (Path("/proc/sys") / name).read_text().strip()


def _cgroup_dirs(suffix: str) -> list[Path]:
    relative = cgroup_root(suffix).lstrip("/")
    if (_CGROUP_ROOT / "cgroup.controllers").exists():  # cgroup v2: one hierarchy
        return [_CGROUP_ROOT / relative]
    # cgroup v1: every mounted hierarchy (the kubelet checks them all,
    # systemd's named one included).
    return sorted(
        hierarchy / relative
        for hierarchy in _CGROUP_ROOT.iterdir()
        if (hierarchy / "cgroup.procs").exists() and not hierarchy.is_symlink()
    )


def _pids_below(path: Path) -> Iterator[int]:
    if not path.is_dir():
        return
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            yield from (int(line) for line in procs.read_text().split())


def _shims_of(socket: Path) -> list[int]:
    """containerd's shims started for ``socket`` (they outlive containerd)."""
    address = os.fsencode(str(socket))
    return [
        pid
        for pid, argv in _command_lines()
        if argv[0].endswith(b"containerd-shim-runc-v2") and address in argv
    ]


def _wait_gone(pids: Sequence[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)


def _mounts_below(root: Path) -> list[str]:
    """Mount points under ``root``, deepest first."""
    prefix = os.fsencode(root.resolve()) + b"/"
    points = []
    for line in Path("/proc/self/mountinfo").read_bytes().splitlines():
        # The kernel writes space, tab, newline and backslash as \ooo.
        point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line.split()[4])
        if point.startswith(prefix):
            points.append(os.fsdecode(point))
    return sorted(points, key=len, reverse=True)


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout
