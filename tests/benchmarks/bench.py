"""The benchmark: the operator against the control plane's own floor.

``make bench`` runs ``python -m tests.benchmarks.bench`` (``--quick`` for a
short run; ``--help`` for every knob). It starts its own development control
plane with an audit log (:mod:`tests.benchmarks.audit`), and runs each
scenario twice, side by side in the same run: once through the operator
(VideoJobs in), once through the oracle (:mod:`tests.benchmarks.oracle`,
stage Jobs created directly). Every figure of the operator is reported next
to the oracle's and as a ratio, with the target it should meet. Results go to
``bench-results/<time>/`` (``results.json``, ``results.md``) and are copied to
``bench-results/latest.*``. See ``docs/benchmarks.md`` for how to read them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.benchmarks import audit, report
from tests.benchmarks.arrivals import (
    SUBMIT_WORKERS,
    Arrival,
    Completions,
    drive,
    max_pipeline_spec,
    pipeline_spec,
)
from tests.benchmarks.rawapi import ApiError, RawApi, Seen, Watcher
from vid_operator import config, naming, pipeline
from vid_operator.api.models import VideoJobSpec
from vidop_devcluster import DevCluster

REPO = Path(__file__).resolve().parents[2]
BENCH_NAMESPACE = "vidop-bench"
OPERATOR_ACCOUNT = "vid-operator"
ORACLE_ACCOUNT = "vid-bench-oracle"
OPERATOR_USER = f"system:serviceaccount:{BENCH_NAMESPACE}:{OPERATOR_ACCOUNT}"
ORACLE_USER = f"system:serviceaccount:{BENCH_NAMESPACE}:{ORACLE_ACCOUNT}"
# No S3 in the benchmark: kwok does not run the stages.
OPERATOR_CONFIG: dict[str, Any] = {"s3": {"credentialsSecret": None, "bucket": "videos"}}
# The oracle runs one plain Job per stage; so does the operator here (its
# default pipeline fans video_gen out over the scenes, which `make
# bench-fanout` measures). Written only where the configuration knows it.
if "fan_out" in config.StageConfig.model_fields:
    OPERATOR_CONFIG["stages"] = {"video_gen": {"fanOut": None}}
# The bench's VideoJobs set kwok's run time (and, at the largest size, a
# command, args and a filler annotation): a platform that allows them. Written
# only where the configuration knows the key, as finishedJobs below.
if "override_policy" in config.OperatorConfig.model_fields:
    OPERATOR_CONFIG["overridePolicy"] = {
        "allowedFields": [*map(str, config.DEFAULT_OVERRIDABLE), "command", "args"],
        "allowedPodAnnotations": ["kwok.vidop.io/", "bench.vidop.io/"],
    }
# retained-jobs: the operator's stage Jobs get no ttlSecondsAfterFinished, so
# they and their pods stay once done. An operator without the finishedJobs
# key refuses it as unknown, and sets no TTL anyway: the key is written only
# where the configuration knows it (set this to True or False to force it).
FINISHED_JOBS_KEY_KNOWN = "finished_jobs" in config.OperatorConfig.model_fields
FINISHED_JOBS_KEPT: dict[str, Any] = {
    "finishedJobs": {"succeededTtlSeconds": None, "failedTtlSeconds": None}
}
# retained-jobs submits its VideoJobs in bursts of this many, each run to the
# end before the next: the Job controller's queue stays as deep as a burst's.
RETAINED_JOBS_WAVE = 1000
# How long a measured start-up may take to go idle before it is recorded as
# not having settled.
START_SETTLE_TIMEOUT = 1800.0
VIDEOJOBS = "/apis/vidop.io/v1alpha1/namespaces/{namespace}/videojobs"
JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
PODS = "/api/v1/namespaces/{namespace}/pods"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What --scenarios selects from, in the order they run.
FAMILIES = ("sequential", "burst", "steady", "retained", "retained-max", "retained-jobs")


@dataclass(frozen=True)
class Scenario:
    """One workload, run once by each driver."""

    name: str
    arrival: Arrival
    count: int
    run_time: str


@dataclass
class Run:
    """What one driver's run of a scenario left behind, before the audit log
    is read."""

    driver: str
    namespace: str
    names: list[str]
    job_names: dict[str, dict[str, str]]
    started: float
    ended: float
    cpu_seconds: float
    kopf_floor_cpu_seconds: float | None = None
    """The oracle's run only: CPU of a do-nothing kopf operator watching its Jobs and pods."""
    phases: dict[str, str] = field(default_factory=dict)
    rss_mib: float | None = None
    peak_rss_mib: float | None = None
    error: str | None = None


# -- the cluster and the identities ------------------------------------------


def _token_kubeconfig(raw: RawApi, admin_kubeconfig: Path, account: str, target: Path) -> None:
    """A kubeconfig for a ServiceAccount of the bench namespace (bound to
    cluster-admin): the audit log tells its requests apart by user."""
    for body in (
        {"metadata": {"name": account}},
        {
            "metadata": {"name": f"{BENCH_NAMESPACE}-{account}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": BENCH_NAMESPACE}],
        },
    ):
        path = (
            f"/api/v1/namespaces/{BENCH_NAMESPACE}/serviceaccounts"
            if "roleRef" not in body
            else "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        )
        raw.request("POST", path, body=body)
    token = raw.request(
        "POST",
        f"/api/v1/namespaces/{BENCH_NAMESPACE}/serviceaccounts/{account}/token",
        body={"spec": {"expirationSeconds": 86400}},
    )["status"]["token"]
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    admin["users"] = [{"name": account, "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = account
    target.write_text(yaml.safe_dump(admin))
    target.chmod(0o600)


def _wait(what: str, check: Any, timeout: float = 120, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def _namespace(raw: RawApi, name: str) -> None:
    """A fresh namespace with its default ServiceAccount (pods need it)."""
    raw.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})

    def has_default_account() -> bool:
        try:
            raw.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
        except ApiError:
            return False
        return True

    _wait(f"the default ServiceAccount in {name}", has_default_account)


def _delete_namespace(raw: RawApi, name: str, timeout: float = 900) -> None:
    """Delete a namespace and wait until it is gone: what the garbage
    collector still has to do must not slow down the next run."""
    with contextlib.suppress(ApiError):
        raw.request("DELETE", f"/api/v1/namespaces/{name}")

    def gone() -> bool:
        try:
            raw.request("GET", f"/api/v1/namespaces/{name}")
        except ApiError as error:
            return error.status == 404
        return False

    _wait(f"namespace {name} to be deleted", gone, timeout=timeout, interval=1)


def _client_rate_flags(qps: int) -> list[str]:
    """kube-controller-manager's client rate. Its default (20 requests/s,
    bursts of 30) caps the Job controller at about 4 stages/s, a floor so low
    that nothing above it is measured; clusters that run batch work raise it."""
    return [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * qps}"] if qps else []


# retained-jobs keeps 4 finished pods per VideoJob; kube-controller-manager's
# pod garbage collector deletes terminated pods beyond 12,500 by default, so
# from 3,125 VideoJobs on it would take some. The other scenarios delete
# their namespace before the next and never keep that many.
KEEP_TERMINATED_PODS = ["--terminated-pod-gc-threshold=0"]


# -- the operator as a process -----------------------------------------------


class OperatorProcess:
    """``python -m vid_operator`` under its own ServiceAccount (or, with
    ``program``, another kopf operator such as :mod:`tests.benchmarks.kopf_floor`)."""

    def __init__(
        self,
        kubeconfig: Path,
        config_file: Path,
        log: Path,
        profile: Path | None = None,
        program: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.config_file = config_file
        self.log = log
        self.program = program or ["-m", "vid_operator"]
        self.profile = profile
        """Where py-spy writes the process's collapsed stacks, if anywhere."""
        self.process: subprocess.Popen[bytes] | None = None
        self._profiler: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with socket.socket() as sock, socket.socket() as metrics_sock:
            sock.bind(("127.0.0.1", 0))
            metrics_sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            # The operator serves its metrics, as deployed (none are scraped):
            # on a free port, so that runs side by side do not collide.
            metrics = (
                [f"--metrics-bind-address=127.0.0.1:{metrics_sock.getsockname()[1]}"]
                if self.program == ["-m", "vid_operator"]
                else []
            )
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "VIDOP_CONFIG": str(self.config_file),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *self.program,
                    f"--liveness=http://127.0.0.1:{port}/healthz",
                    *metrics,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

        def alive() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        _wait("the operator's liveness endpoint", alive, timeout=60)

    def start_profiling(self) -> None:
        """Sample the operator's stacks with py-spy until :meth:`stop`."""
        if self.profile is None:
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self._profiler = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                "200",
                # Only the thread holding the GIL: where the CPU goes, not
                # where threads wait.
                "--gil",
                "--output",
                str(self.profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process, all its threads, so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def memory_mib(self) -> tuple[float, float]:
        """(resident now, resident at its peak) in MiB."""
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines()
        )
        return tuple(int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))  # type: ignore[return-value]

    def settle(self, quiet_share: float = 0.02, timeout: float = 120) -> bool:
        """Wait until the process is (nearly) idle for a second: done with
        the events its last work caused. False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(1.0)
            if self.cpu_seconds() - before <= quiet_share:
                return True
        return False

    def stop(self) -> None:
        if self._profiler is not None:
            self._profiler.send_signal(signal.SIGINT)
            self._profiler.wait(timeout=60)
            self._profiler = None
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the benchmark ----------------------------------------------------------------


class Bench:
    """One benchmark run: a control plane, the two drivers, the scenarios."""

    def __init__(
        self, out: Path, bin_dir: Path | None, controller_qps: int, profile: bool = False
    ) -> None:
        self.profile = profile
        self.out = out
        self.audit_log = out / "audit" / "audit.log"
        self.audit_log.parent.mkdir(parents=True)
        policy_file = out / "audit-policy.yaml"
        policy_file.write_text(audit.policy(OPERATOR_USER, ORACLE_USER))
        self.cluster = DevCluster(
            out / "cluster",
            bin_dir,
            detach=False,
            extra_args={
                "kube-apiserver": audit.apiserver_flags(policy_file, self.audit_log),
                "kube-controller-manager": [
                    *_client_rate_flags(controller_qps),
                    *KEEP_TERMINATED_PODS,
                ],
            },
        )
        self.config_file = out / "operator-config.yaml"
        self.config_file.write_text(yaml.safe_dump(OPERATOR_CONFIG))
        self.jobs_kept_config_file = out / "operator-config-jobs-kept.yaml"
        self.jobs_kept_config_file.write_text(
            yaml.safe_dump(
                {**OPERATOR_CONFIG, **(FINISHED_JOBS_KEPT if FINISHED_JOBS_KEY_KNOWN else {})}
            )
        )
        self.settings = config.load(self.config_file)
        self.runs: dict[str, dict[str, Run]] = {}
        self.extra: dict[str, Any] = {}

    def up(self) -> None:
        started = time.monotonic()
        self.cluster.up()
        print(f"control plane up in {time.monotonic() - started:.1f} s ({self.cluster.root})")
        self.raw = RawApi(self.cluster.api_client())
        for path in sorted((REPO / "crds").glob("*.vidop.io.yaml")):
            self.raw.request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                body=yaml.safe_load(path.read_text()),
            )
        _wait("the VideoJob CRD to be served", self._crd_served)
        _namespace(self.raw, BENCH_NAMESPACE)
        self.operator_kubeconfig = self.out / "operator.kubeconfig"
        self.oracle_kubeconfig = self.out / "oracle.kubeconfig"
        _token_kubeconfig(
            self.raw, self.cluster.kubeconfig, OPERATOR_ACCOUNT, self.operator_kubeconfig
        )
        _token_kubeconfig(self.raw, self.cluster.kubeconfig, ORACLE_ACCOUNT, self.oracle_kubeconfig)

    def _crd_served(self) -> bool:
        try:
            self.raw.request("GET", VIDEOJOBS.format(namespace="default"))
        except ApiError:
            return False
        return True

    def down(self) -> None:
        self.cluster.down()

    def _job_names(self, names: list[str]) -> dict[str, dict[str, str]]:
        stages = pipeline.resolve(VideoJobSpec.model_validate(pipeline_spec("0s")), self.settings)
        return {n: {s.name: naming.stage_job_name(n, s.name) for s in stages} for n in names}

    @staticmethod
    def _timeout(scenario: Scenario) -> float:
        seconds = 600 + scenario.count * 3.0
        if scenario.arrival.kind == "steady":
            seconds += scenario.count / scenario.arrival.rate
        return seconds

    def run_oracle(self, scenario: Scenario, namespace: str) -> Run:
        result_file = self.out / f"{namespace}.json"
        names = [f"p-{index:05d}" for index in range(scenario.count)]
        floor = OperatorProcess(
            self.operator_kubeconfig,
            self.config_file,
            self.out / f"{namespace}-kopf-floor.log",
            program=[
                "-m",
                "kopf",
                "run",
                "--standalone",
                "--all-namespaces",
                "--quiet",
                "-m",
                "tests.benchmarks.kopf_floor",
            ],
        )
        floor.start()
        floor.settle()
        floor_before = floor.cpu_seconds()
        started = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.benchmarks.oracle",
                f"--kubeconfig={self.oracle_kubeconfig}",
                f"--namespace={namespace}",
                f"--config={self.config_file}",
                f"--arrival={scenario.arrival.kind}",
                f"--rate={scenario.arrival.rate}",
                f"--count={scenario.count}",
                f"--run-time={scenario.run_time}",
                "--prefix=p",
                f"--timeout={self._timeout(scenario)}",
                f"--result={result_file}",
            ],
            check=True,
            cwd=REPO,
        )
        floor.settle()
        floor_cpu = floor.cpu_seconds() - floor_before
        floor.stop()
        result = json.loads(result_file.read_text())
        return Run(
            driver="oracle",
            namespace=namespace,
            names=names,
            job_names=result["job_names"],
            started=started,
            ended=time.time(),
            cpu_seconds=result["cpu_seconds"],
            kopf_floor_cpu_seconds=floor_cpu,
            phases={name: ended[0] for name, ended in result["ended"].items()},
        )

    def run_operator(self, scenario: Scenario, namespace: str) -> Run:
        names = [f"vj-{index:05d}" for index in range(scenario.count)]
        operator = OperatorProcess(
            self.operator_kubeconfig,
            self.config_file,
            self.out / f"{namespace}-operator.log",
            self.out / f"{namespace}-operator.stacks" if self.profile else None,
        )
        path = VIDEOJOBS.format(namespace=namespace)
        submit = self._submitter(path, pipeline_spec(scenario.run_time))
        completions, watcher = self._completions(path)
        started = time.time()
        operator.start()
        operator.settle()
        cpu_before = operator.cpu_seconds()
        operator.start_profiling()
        try:
            drive(scenario.arrival, names, submit, completions, self._timeout(scenario))
            operator.settle()
            cpu = operator.cpu_seconds() - cpu_before
            rss, peak = operator.memory_mib()
        finally:
            operator.stop()
            watcher.stop()
        return Run(
            driver="operator",
            namespace=namespace,
            names=names,
            job_names=self._job_names(names),
            started=started,
            ended=time.time(),
            cpu_seconds=cpu,
            phases={name: ended[0] for name, ended in completions.ended.items()},
            rss_mib=rss,
            peak_rss_mib=peak,
        )

    def _submitter(self, path: str, spec: dict[str, Any]) -> Callable[[str], None]:
        """What creates a VideoJob of ``spec`` by name in the collection ``path``."""

        def submit(name: str) -> None:
            body = {
                "apiVersion": "vidop.io/v1alpha1",
                "kind": "VideoJob",
                "metadata": {"name": name},
                "spec": spec,
            }
            self.raw.request("POST", path, body=body)

        return submit

    def _completions(self, path: str) -> tuple[Completions, Watcher]:
        """The VideoJobs of ``path`` that end, as a started watcher sees them
        (stop it when done)."""
        completions = Completions()

        def seen(event: Seen) -> None:
            phase = (event.object.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                completions.end(event.object["metadata"]["name"], phase)

        watcher = Watcher(self.raw, path, seen)
        watcher.start()
        return completions, watcher

    def run(self, scenario: Scenario) -> None:
        print(
            f"\n== {scenario.name}: {scenario.count} pipelines, {scenario.arrival.kind}"
            + (f" at {scenario.arrival.rate:.2f}/s" if scenario.arrival.kind == "steady" else "")
            + f", pods run {scenario.run_time}",
            flush=True,
        )
        self.runs[scenario.name] = {}
        for driver in ("oracle", "operator"):
            namespace = f"{scenario.name}-{driver}"
            _namespace(self.raw, namespace)
            started = time.monotonic()
            if driver == "oracle":
                run = self.run_oracle(scenario, namespace)
            else:
                run = self.run_operator(scenario, namespace)
            print(f"   {driver:8} done in {time.monotonic() - started:.1f} s", flush=True)
            self.runs[scenario.name][driver] = run
            _delete_namespace(self.raw, namespace)

    def retained(
        self, key: str, count: int, spec: dict[str, Any], *, with_jobs: bool = False
    ) -> None:
        """The operator's memory and start-up with ``count`` finished
        VideoJobs of ``spec`` in the cluster, recorded under ``key`` (also the
        namespace). Without ``with_jobs`` they are copies of one real run's
        VideoJob and their Jobs are gone, as a Job TTL leaves them; with it,
        each is run through the operator (its Jobs without a TTL), and its
        stage Jobs and their pods stay."""
        print(
            f"\n== {key}: {count} finished VideoJobs"
            + (", their stage Jobs and pods kept" if with_jobs else ""),
            flush=True,
        )
        namespace = key
        _namespace(self.raw, namespace)
        path = VIDEOJOBS.format(namespace=namespace)
        operator = OperatorProcess(
            self.operator_kubeconfig,
            self.jobs_kept_config_file if with_jobs else self.config_file,
            self.out / f"{key}-operator.log",
            self.out / f"{key}-operator.stacks" if self.profile else None,
        )
        # The operator started with nothing to do: the part of a start-up
        # that does not grow with the VideoJobs.
        empty = self._start_to_idle(operator, timeout=120)
        # One real run gives the status a finished VideoJob really has.
        self._submitter(path, spec)("template")
        _wait(
            "the template VideoJob to succeed",
            lambda: (
                (self.raw.request("GET", f"{path}/template").get("status") or {}).get("phase")
                == "Succeeded"
            ),
        )
        finished = self.raw.request("GET", f"{path}/template")["status"]
        # The operator with one VideoJob done: what the retained ones add is
        # measured against it.
        operator.settle()
        template_rss, _ = operator.memory_mib()
        names = [f"done-{index:05d}" for index in range(count)]
        populated = time.monotonic()
        figures: dict[str, Any] = {}
        if with_jobs:
            figures["succeeded"] = self._run_through(path, spec, names)
            operator.settle()
            figures["populating_operator_rss_mib"] = round(operator.memory_mib()[0], 1)
            operator.stop()
            figures["populate_seconds"] = round(time.monotonic() - populated, 1)
            figures |= self._kept_objects(namespace)
        else:
            operator.stop()
            self._copy_finished(path, spec, finished, names)
        print(f"   created in {time.monotonic() - populated:.1f} s", flush=True)
        started_at = time.time()
        start = self._start_to_idle(operator, timeout=START_SETTLE_TIMEOUT, profile=True)
        operator.stop()
        rss, peak = start["rss_mib"], start["peak_rss_mib"]
        per_videojob_kib = (rss - template_rss) * 1024 / count

        def per_1000(figure: str) -> float:
            return round(float(start[figure] - empty[figure]) * 1000 / count, 2)

        self.extra[key] = {
            "videojobs": count,
            "spec_json_bytes": len(json.dumps(spec)),
            **start,
            "empty_settled_seconds": empty["settled_seconds"],
            "empty_cpu_seconds_to_settle": empty["cpu_seconds_to_settle"],
            "template_rss_mib": round(template_rss, 1),
            "rss_kib_per_videojob": round(per_videojob_kib, 1),
            "peak_rss_kib_per_videojob": round((peak - template_rss) * 1024 / count, 1),
            "settled_seconds_per_1000_videojobs": per_1000("settled_seconds"),
            "cpu_seconds_per_1000_videojobs": per_1000("cpu_seconds_to_settle"),
            **figures,
            "window": (started_at, time.time()),
            "namespace": namespace,
        }
        print(
            f"   operator RSS {rss:.0f} MiB (peak {peak:.0f} MiB; {template_rss:.0f} MiB after"
            f" the template alone: {per_videojob_kib:.1f} KiB per VideoJob),"
            f" settled in {start['settled_seconds']:.1f} s"
            + ("" if start["settled"] else " (NOT idle: the timeout ran out)")
        )
        deleting = time.monotonic()
        # retained-jobs at 10,000 leaves 80,000 Jobs and pods to delete.
        _delete_namespace(self.raw, namespace, timeout=max(1800.0, count * 0.5))
        print(f"   namespace deleted in {time.monotonic() - deleting:.1f} s", flush=True)

    def _copy_finished(
        self, path: str, spec: dict[str, Any], status: dict[str, Any], names: list[str]
    ) -> None:
        """VideoJobs of ``spec`` named ``names``, each given ``status``."""
        submit = self._submitter(path, spec)

        def create(name: str) -> None:
            submit(name)
            self.raw.request(
                "PATCH",
                f"{path}/{name}/status",
                body={"status": status},
                content_type="application/merge-patch+json",
            )

        with ThreadPoolExecutor(SUBMIT_WORKERS) as pool:
            list(pool.map(create, names))

    def _run_through(self, path: str, spec: dict[str, Any], names: list[str]) -> int:
        """Submit ``names`` as VideoJobs of ``spec`` to the operator running
        on ``path``, in bursts of ``RETAINED_JOBS_WAVE``, each waited for
        until every VideoJob in it has ended. Returns how many succeeded."""
        submit = self._submitter(path, spec)
        completions, watcher = self._completions(path)
        try:
            for first in range(0, len(names), RETAINED_JOBS_WAVE):
                wave = names[first : first + RETAINED_JOBS_WAVE]
                drive(Arrival("burst"), wave, submit, completions, 600 + len(wave) * 3.0)
                print(f"   {first + len(wave)}/{len(names)} VideoJobs run", flush=True)
        finally:
            watcher.stop()
        return sum(1 for name in names if completions.ended[name][0] == "Succeeded")

    def _kept_objects(self, namespace: str) -> dict[str, Any]:
        """How many Jobs and pods ``namespace`` holds; raises if its Jobs
        have a TTL (they would not stay)."""
        counts: dict[str, Any] = {}
        for kind, path in (("jobs", JOBS), ("pods", PODS)):
            listed = self.raw.request(
                "GET", path.format(namespace=namespace), query=[("limit", "1")]
            )
            items = listed.get("items", [])
            counts[kind] = len(items) + int(listed["metadata"].get("remainingItemCount", 0))
            if kind == "jobs" and items and "ttlSecondsAfterFinished" in items[0]["spec"]:
                raise RuntimeError(
                    f"the stage Jobs of {namespace} have a ttlSecondsAfterFinished: "
                    "the operator did not take finishedJobs (FINISHED_JOBS_KEY_KNOWN)"
                )
        return counts

    @staticmethod
    def _start_to_idle(
        operator: OperatorProcess, timeout: float, profile: bool = False
    ) -> dict[str, Any]:
        """Start ``operator`` (sampled by py-spy with ``profile``, if the
        bench profiles) and wait until it is idle: how long that took, its CPU
        and its memory. It is left running."""
        started = time.monotonic()
        operator.start()
        ready = time.monotonic() - started
        if profile:
            operator.start_profiling()
        idle = operator.settle(timeout=timeout)
        settled = time.monotonic() - started
        rss, peak = operator.memory_mib()
        cpu = operator.cpu_seconds()
        return {
            "liveness_seconds": round(ready, 2),
            "settled_seconds": round(settled, 2),
            "settled": idle,
            "cpu_seconds_to_settle": round(cpu, 2),
            "rss_mib": round(rss, 1),
            "peak_rss_mib": round(peak, 1),
        }


def _scenarios(args: argparse.Namespace) -> Iterator[Scenario]:
    for run_time, count in ((run_time, args.sequential) for run_time in args.sequential_run_times):
        yield Scenario(f"sequential-{run_time}", Arrival("sequential"), count, run_time)
    for size in args.burst:
        yield Scenario(f"burst-{size}", Arrival("burst"), size, args.burst_run_time)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a run of a few minutes")
    parser.add_argument(
        "--scenarios",
        default=",".join(FAMILIES),
        help=f"which scenario families to run (comma-separated; {', '.join(FAMILIES)})",
    )
    parser.add_argument("--sequential", type=int, help="VideoJobs one after another (20; quick 5)")
    parser.add_argument(
        "--sequential-run-times", default="0s,3s", help="pod run times of the sequential scenarios"
    )
    parser.add_argument("--burst", help="burst sizes (100,500,1000; quick 100)")
    parser.add_argument("--burst-run-time", default="0s")
    parser.add_argument(
        "--steady-rate",
        type=float,
        help="VideoJobs per second (default: half the oracle's burst throughput)",
    )
    parser.add_argument("--steady-seconds", type=float, help="how long (180; quick 30)")
    parser.add_argument("--steady-run-time", default="1s")
    parser.add_argument("--retained", type=int, help="finished VideoJobs (10000; quick 1000)")
    parser.add_argument(
        "--retained-max",
        type=int,
        help="finished VideoJobs of the largest size the CRD allows (1000; quick 200)",
    )
    parser.add_argument(
        "--retained-jobs",
        type=int,
        help="finished VideoJobs run through the operator, their Jobs and pods kept"
        " (2000; quick 200; the targets are for 10000)",
    )
    parser.add_argument(
        "--controller-qps",
        type=int,
        default=200,
        help="kube-controller-manager's client rate (requests/s; 0 keeps its default of 20)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the operator with py-spy (pip install py-spy) into <run>-operator.stacks",
    )
    parser.add_argument("--keep-audit", action="store_true", help="keep the audit log")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sequential = args.sequential or (5 if quick else 20)
    args.sequential_run_times = args.sequential_run_times.split(",")
    args.burst = [int(n) for n in (args.burst or ("100" if quick else "100,500,1000")).split(",")]
    args.steady_seconds = args.steady_seconds or (30.0 if quick else 180.0)
    args.retained = args.retained or (1000 if quick else 10000)
    args.retained_max = args.retained_max or (200 if quick else 1000)
    args.retained_jobs = args.retained_jobs or (200 if quick else 2000)
    families = set(args.scenarios.split(","))
    if unknown := families - set(FAMILIES):
        parser.error(f"unknown scenario families: {', '.join(sorted(unknown))}")

    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    bench = Bench(out, None, args.controller_qps, args.profile)
    try:
        bench.up()
        scenarios = list(_scenarios(args))
        for scenario in scenarios:
            family = scenario.name.split("-")[0]
            if family in families:
                bench.run(scenario)
        if "steady" in families:
            rate = args.steady_rate or _half_oracle_rate(bench, out)
            count = max(1, round(rate * args.steady_seconds))
            bench.run(Scenario("steady", Arrival("steady", rate), count, args.steady_run_time))
        if "retained" in families:
            bench.retained("retained", args.retained, pipeline_spec("0s"))
        if "retained-max" in families:
            bench.retained("retained-max", args.retained_max, max_pipeline_spec("0s"))
        if "retained-jobs" in families:
            bench.retained("retained-jobs", args.retained_jobs, pipeline_spec("0s"), with_jobs=True)
        print("\nreading the audit log ...", flush=True)
        record = audit.read(bench.audit_log, [OPERATOR_USER, ORACLE_USER])
        results = report.results(bench.runs, bench.extra, record, OPERATOR_USER, ORACLE_USER)
        results["settings"] = {
            "quick": quick,
            "argv": sys.argv[1:] if argv is None else argv,
            "machine": {"cpus": os.cpu_count()},
            "controller_manager_qps": args.controller_qps or 20,
        }
    finally:
        bench.down()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    markdown = report.markdown(results)
    (out / "results.md").write_text(markdown)
    for name in ("results.json", "results.md"):
        shutil.copyfile(out / name, args.out / f"latest-{name}")
    if not args.keep_audit:
        shutil.rmtree(bench.audit_log.parent)
    print()
    print(markdown)
    print(f"results in {out}")
    return 0


def _half_oracle_rate(bench: Bench, out: Path) -> float:
    """Half the oracle's throughput in its largest burst, in pipelines/s."""
    bursts = sorted(
        (runs["oracle"] for name, runs in bench.runs.items() if name.startswith("burst-")),
        key=lambda run: len(run.names),
    )
    if not bursts:
        return 2.0
    record = audit.read(bench.audit_log, [ORACLE_USER])
    throughput = report.pipelines_per_second(bursts[-1], record, ORACLE_USER)
    return max(0.1, throughput / 2)


if __name__ == "__main__":
    sys.exit(main())
