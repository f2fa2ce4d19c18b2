"""Run a chaos plan against the real control plane and the operator process.

Called by ``test_chaos_short.py`` (``make test``) and ``chaos_full.py``
(``make chaos``) with a :class:`ChaosPlan`. While the workload of
:mod:`tests.chaos.workload` is applied, a second thread kills the operator
with SIGKILL at the plan's moments and starts it again (timing how soon its
liveness endpoint answers), and restarts kube-apiserver once (etcd keeps the
data). Under a plan with ``leader_election``, two operators run with
``--leader-elect`` and each kill hits the one that leads; the killed one
comes back as a standby, as its Deployment would start it, and one of the
two must lead again within the lease duration (timed), never both at once.
Watches record every Job and VideoJob event throughout; at the end
:mod:`tests.chaos.invariants` judges the record. The result is a
:class:`ChaosReport`: the violations (none, if all is well) and a summary.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from tests.benchmarks.rawapi import ApiError, RawApi, Seen, Watcher
from tests.chaos import invariants, workload
from tests.support import Cluster, Operator
from vid_operator import config, leader, naming, pipeline
from vid_operator.api.models import VideoJobSpec
from vidop_devcluster import DevCluster, nodes

VIDEOJOBS = "/apis/vidop.io/v1alpha1/namespaces/{namespace}/videojobs"
JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
PIPELINES = "/apis/vidop.io/v1alpha1/namespaces/{namespace}/videopipelines"
# No S3 here: kwok does not run the stages.
OPERATOR_CONFIG: dict[str, Any] = {
    # The hostile VideoJobs ask for the most the schema allows: this platform allows it.
    "s3": {
        "credentialsSecret": None,
        "bucket": "videos",
        "allowedBuckets": [workload.LONGEST_BUCKET],
    },
    "stages": {
        "video_gen": {"maxGpus": 8},
        "voice_gen": {"onOOM": {"memoryFactor": 1.5, "maxMemory": "4Gi"}},
    },
    # The workload's images that cannot be pulled fail within the run.
    "stageDefaults": {"imagePullTimeoutSeconds": 4},
}


@dataclass(frozen=True)
class ChaosPlan:
    """How much work, and how much trouble, for how long."""

    ok: int
    retried: int
    invalid: int
    disrupted: int
    cycles: int
    hostile_rounds: int
    submit_seconds: float
    """The workload is applied evenly over this long."""
    kills: int
    kill_window: tuple[float, float]
    """Kills happen at random moments in this window (seconds from the start)."""
    down_seconds: tuple[float, float]
    """How long the operator stays dead before it is started again."""
    apiserver_restart_at: float | None
    settle_timeout: float
    """How long every VideoJob may take to finish once the chaos is over."""
    oom: int = 0
    """VideoJobs whose voice_gen is killed as out of memory once (then gets
    more), and as many killed at every size up to the maximum."""
    pull: int = 0
    """VideoJobs with an image that cannot be pulled."""
    ready_seconds: float = 10.0
    """How soon a restarted operator must answer on its liveness endpoint."""
    seed: int = 6
    leader_election: leader.Timings | None = None
    """Two operators electing a leader on these timings, not one alone."""
    max_running: int | None = None
    """The operator's cap on VideoJobs running at once (queueing.maxRunning)."""
    kueue_queue: str | None = None
    """The Kueue LocalQueue that admits every stage Job (the test makes it)."""


@dataclass
class ChaosReport:
    violations: list[str]
    summary: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"{key}: {value}" for key, value in self.summary.items()]
        lines += [f"VIOLATION: {v}" for v in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"... and {len(self.violations) - 50} more")
        return "\n".join(lines)


def _transient(error: BaseException) -> bool:
    """An error that says the API server is away, not that it refused."""
    if isinstance(error, ApiError):
        return error.status in (429, 500, 502, 503, 504)
    return isinstance(error, (urllib3.exceptions.HTTPError, OSError))


def _retrying(call: Callable[[], Any], timeout: float = 120) -> Any:
    """``call()``, again while the API server is restarting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Exception as error:
            if not _transient(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class ChaosRun:
    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        folder: Path,
        plan: ChaosPlan,
        dev: DevCluster | None,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.plan = plan
        self.dev = dev
        self.raw = RawApi(cluster.api)
        self.rng = random.Random(plan.seed)
        self.items = workload.mix(
            self.rng,
            ok_count=plan.ok,
            retried_count=plan.retried,
            invalid_count=plan.invalid,
            disrupted_count=plan.disrupted,
            cycle_count=plan.cycles,
            hostile_rounds=plan.hostile_rounds,
            oom_count=plan.oom,
            pull_count=plan.pull,
        )
        kueue = {"enabled": True, "defaultQueueName": plan.kueue_queue} if plan.kueue_queue else {}
        self.configuration = {
            **OPERATOR_CONFIG,
            "queueing": {"maxRunning": plan.max_running, "kueue": kueue},
        }
        self.operators = [
            Operator(cluster, folder, self.configuration)
            if plan.leader_election is None
            else _replica(
                cluster, folder / name, namespace, plan.leader_election, self.configuration
            )
            for name in (["operator"] if plan.leader_election is None else ["a", "b"])
        ]
        self.failovers: list[float] = []
        """Seconds from killing the leader to another replica leading."""
        self.lost_leases = 0
        """Leaders that exited on their own, having lost the Lease (restarted)."""
        self.record = invariants.Record()
        self.violations: list[str] = []
        self.summary: dict[str, Any] = {}
        self.readiness: list[float] = []
        self.refused: list[tuple[str, int]] = []
        """(kind, HTTP status) of every body the API server refused."""
        self._lock = threading.Lock()

    # -- recording ---------------------------------------------------------------

    def _on_job(self, seen: Seen) -> None:
        with self._lock:
            self.record.jobs.append(seen)

    def _on_videojob(self, seen: Seen) -> None:
        with self._lock:
            self.record.videojobs.append(seen)

    # -- the two threads of trouble -------------------------------------------------

    def _submit_all(self, started: float) -> None:
        spacing = self.plan.submit_seconds / max(1, len(self.items))
        for index, item in enumerate(self.items):
            time.sleep(max(0.0, started + index * spacing - time.monotonic()))
            try:
                self._create(item)
            except ApiError as error:
                if item.expected is not None:
                    self.violations.append(f"{item.kind} {item.name[:60]} refused: {error}")
                else:
                    self.refused.append((item.kind, error.status))
                continue
            if item.expected is None:
                self.violations.append(
                    f"{item.kind} {item.name[:60]} was accepted; must be refused"
                )

    def _create(self, item: workload.Item, timeout: float = 120) -> None:
        """Apply one item, again while the API server restarts. A 409 after
        such a retry means the first try got through."""
        path = VIDEOJOBS.format(namespace=self.namespace)
        deadline = time.monotonic() + timeout
        retried = False
        while True:
            try:
                self.raw.request("POST", path, body=item.manifest, query=item.query)
                return
            except ApiError as error:
                if retried and error.status == 409:
                    return
                if not _transient(error) or time.monotonic() > deadline:
                    raise
            except (urllib3.exceptions.HTTPError, OSError):
                if time.monotonic() > deadline:
                    raise
            retried = True
            time.sleep(0.5)

    def _make_trouble(self, started: float) -> None:
        moments: list[tuple[float, str]] = [
            (self.rng.uniform(*self.plan.kill_window), "kill") for _ in range(self.plan.kills)
        ]
        if self.plan.apiserver_restart_at is not None:
            moments.append((self.plan.apiserver_restart_at, "apiserver"))
        for at, what in sorted(moments):
            time.sleep(max(0.0, started + at - time.monotonic()))
            if what == "kill":
                self._kill_and_restart()
            else:
                self._restart_apiserver()

    def _kill_and_restart(self) -> None:
        self._check_running("before a kill")
        timings = self.plan.leader_election
        victim = self.operators[0] if timings is None else self._leader()
        victim.kill()
        killed = time.monotonic()
        restart_at = killed + self.rng.uniform(*self.plan.down_seconds)
        took_over: float | None = None
        # Under leader election the survivor may take over while the victim
        # is down (polled every 0.2 s), or later, with the victim back as a
        # new candidate.
        while timings is not None and took_over is None and time.monotonic() < restart_at:
            if self._leading():
                took_over = time.monotonic()
            time.sleep(0.2)
        time.sleep(max(0.0, restart_at - time.monotonic()))
        begun = time.monotonic()
        victim.start()
        self.readiness.append(round(time.monotonic() - begun, 2))
        if timings is not None:
            if took_over is None:
                self._leader()
                took_over = time.monotonic()
            self.failovers.append(round(took_over - killed, 1))

    def _check_running(self, when: str) -> None:
        """Every operator still runs; under leader election, one that exited
        on a lost Lease is started again (as a Deployment would) and counted."""
        for operator in self.operators:
            if operator.process is not None and operator.process.poll() is None:
                continue
            if (
                self.plan.leader_election is not None
                and operator.process is not None
                and operator.process.returncode == 1
                and "leadership lost" in operator.log.read_text(errors="replace")
            ):
                self.lost_leases += 1
                operator.start()
                continue
            self.violations.append(f"an operator had exited on its own {when}")

    def _leader(self) -> Operator:
        """The one replica that leads, once one does (polled every 0.2 s)."""
        timings = self.plan.leader_election
        assert timings is not None
        deadline = time.monotonic() + timings.lease_duration + 2 * timings.retry_period + 5
        while not (leading := self._leading()):
            if time.monotonic() > deadline:
                raise TimeoutError("no replica took the Lease within the lease duration")
            time.sleep(0.2)
        return leading[0]

    def _leading(self) -> list[Operator]:
        """The replicas that say they lead: one at most, or it is a violation."""
        leading = [o for o in self.operators if _leads(o)]
        if len(leading) > 1 and "two replicas led at once" not in self.violations:
            self.violations.append("two replicas led at once")
        return leading

    def _restart_apiserver(self) -> None:
        if self.dev is None:
            self.summary["apiserver restart"] = "skipped: this session did not start the cluster"
            return
        begun = time.monotonic()
        self.dev.restart_component("kube-apiserver")
        self.summary["apiserver restart seconds"] = round(time.monotonic() - begun, 1)

    # -- the run --------------------------------------------------------------------

    def _finished(self) -> bool:
        listed = _retrying(
            lambda: self.raw.request("GET", VIDEOJOBS.format(namespace=self.namespace))
        )
        phases = {
            item["metadata"]["name"]: (item.get("status") or {}).get("phase")
            for item in listed.get("items", [])
        }
        return all(
            phases.get(item.name) in invariants.FINISHED
            for item in self.items
            if item.expected is not None
        )

    def run(self) -> ChaosReport:
        begun = time.monotonic()
        for manifest in workload.PIPELINES:
            self.raw.request("POST", PIPELINES.format(namespace=self.namespace), body=manifest)
        watchers = [
            Watcher(
                self.raw,
                JOBS.format(namespace=self.namespace),
                self._on_job,
                f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}",
            ),
            Watcher(self.raw, VIDEOJOBS.format(namespace=self.namespace), self._on_videojob),
        ]
        for watcher in watchers:
            watcher.start()
        for operator in self.operators:
            operator.start()
        self.readiness.append(round(time.monotonic() - begun, 2))
        submitter = threading.Thread(target=self._guarded(self._submit_all), args=(begun,))
        submitter.start()
        # Trouble comes from this thread, not another: a restarted component
        # dies with the thread that started it (the dev cluster starts test
        # components with PR_SET_PDEATHSIG, which follows the parent thread).
        self._guarded(self._make_trouble)(begun)
        submitter.join()
        chaos_over = time.monotonic()
        deadline = chaos_over + self.plan.settle_timeout
        while not self._finished() and time.monotonic() < deadline:
            time.sleep(1)
        self.summary["seconds to finish after the chaos"] = round(time.monotonic() - chaos_over, 1)
        # One last look, so nothing the watches may have missed goes unjudged.
        final_jobs = self._list_into(JOBS, self._on_job)
        final_videojobs = self._list_into(VIDEOJOBS, self._on_videojob)
        for watcher in watchers:
            watcher.stop()
        self._check_running("by the end")
        for operator in self.operators:
            operator.stop()
        self._judge(final_videojobs)
        self.summary.update(
            {
                "seconds": round(time.monotonic() - begun, 1),
                "videojobs accepted": sum(1 for i in self.items if i.expected is not None),
                "refused at apply time (by HTTP status)": dict(
                    Counter(status for _, status in self.refused)
                ),
                "kinds": dict(Counter(i.kind for i in self.items if i.expected is not None)),
                "jobs": len(final_jobs),
                "job events seen": len(self.record.jobs),
                "videojob events seen": len(self.record.videojobs),
                "operator readiness seconds (start, then each restart)": self.readiness,
                **(
                    {
                        "failover seconds (leader killed to another leading)": self.failovers,
                        "leaders that exited on a lost Lease": self.lost_leases,
                    }
                    if self.plan.leader_election
                    else {}
                ),
                "watch reconnects": sum(w.reconnects for w in watchers),
            }
        )
        return ChaosReport(self.violations, self.summary)

    def _guarded(self, target: Callable[[float], None]) -> Callable[[float], None]:
        def run(started: float) -> None:
            try:
                target(started)
            except BaseException as error:  # pytest.fail raises a BaseException
                self.violations.append(f"{target.__name__} failed: {error!r}")

        return run

    def _list_into(self, template: str, deliver: Callable[[Seen], None]) -> list[dict[str, Any]]:
        listed = _retrying(
            lambda: self.raw.request("GET", template.format(namespace=self.namespace))
        )
        items: list[dict[str, Any]] = listed.get("items", [])
        for item in items:
            deliver(Seen("LISTED", item, time.time(), 1 << 62))
        return items

    # -- judging ------------------------------------------------------------------------

    def _judge(self, final_videojobs: list[dict[str, Any]]) -> None:
        by_name = {v["metadata"]["name"]: v for v in final_videojobs}
        settings = config.from_mapping(self.configuration)
        dependencies: dict[str, dict[str, list[str]]] = {}
        for item in self.items:
            if item.expected is None:
                if item.name in by_name:
                    self.violations.append(f"{item.kind} {item.name[:60]} exists; it was refused")
                continue
            found = by_name.get(item.name)
            if found is None:
                self.violations.append(f"{item.kind} {item.name[:60]} is gone")
                continue
            self.violations += invariants.outcome(item.name, found.get("status"), item.expected)
            try:
                stages = pipeline.resolve(VideoJobSpec.model_validate(found["spec"]), settings)
            except ValueError:
                continue  # the cycle, a refused override: no Job may exist (one_job_per_stage)
            dependencies[found["metadata"]["uid"]] = {s.name: s.depends_on for s in stages}
        self.violations += invariants.one_job_per_stage(self.record)
        self.violations += invariants.dependencies_first(self.record, dependencies)
        self.violations += invariants.status_never_backwards(self.record)
        if self.plan.max_running is not None:
            self.violations += invariants.cap_never_exceeded(self.record, self.plan.max_running)
            most, _ = invariants.most_running(self.record)
            self.summary["most videojobs running at once"] = f"{most} (cap {self.plan.max_running})"
        if self.plan.kueue_queue is not None:
            self.violations += invariants.kueue_started_every_job(self.record)
        for seconds in self.readiness[1:]:
            if seconds > self.plan.ready_seconds:
                self.violations.append(
                    f"the operator answered on its liveness endpoint {seconds} s after a restart"
                )
        timings = self.plan.leader_election
        for seconds in self.failovers if timings else []:
            if seconds > timings.lease_duration + 2 * timings.retry_period + 2:
                self.violations.append(f"a standby took over {seconds} s after the leader died")
        for operator in self.operators:
            self.violations += unhandled_errors(operator.log)
        self.violations += healthy(self.raw)


def _replica(
    cluster: Cluster,
    folder: Path,
    namespace: str,
    timings: leader.Timings,
    configuration: dict[str, Any],
) -> Operator:
    """One of two operators electing a leader on a Lease in ``namespace``."""
    folder.mkdir(parents=True)
    return Operator(
        cluster,
        folder,
        configuration,
        (
            "--leader-elect",
            f"--leader-elect-namespace={namespace}",
            f"--leader-elect-lease-duration={timings.lease_duration}",
            f"--leader-elect-renew-deadline={timings.renew_deadline}",
            f"--leader-elect-retry-period={timings.retry_period}",
        ),
    )


def _leads(operator: Operator) -> bool:
    """What the operator's health endpoint says: it holds the Lease."""
    if operator.process is None or operator.process.poll() is not None:
        return False
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{operator.port}/healthz", timeout=2
        ) as answer:
            return bool(json.load(answer)["leading"])
    except OSError:
        return False


# What an exception that escaped the operator's own handling leaves in its log.
UNHANDLED = ("Traceback", "exception was never retrieved", "failed with an exception")


def unhandled_errors(log: Path) -> list[str]:
    """Lines of the operator's log that show an exception it did not handle:
    kopf swallows them (and never retries an event handler), so a lost
    reconcile shows only here."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [
        f"the operator logged an unhandled error: {line[:300]}"
        for line in lines
        if any(marker in line for marker in UNHANDLED)
    ][:10]


def prepare(cluster: Cluster) -> None:
    """What the Helm chart would have installed: the CRD and the
    PriorityClasses of the default configuration (a stage pod naming a
    missing PriorityClass is refused by admission, and its Job never runs)."""
    cluster.install_videojob_crd()
    for name, value in (("vid-operator-high", 1000), ("vid-operator-low", -10)):
        cluster.apply(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
            }
        )


def healthy(raw: RawApi) -> list[str]:
    """The cluster is fit for whatever runs next: the API answers and every
    kwok node is Ready."""
    try:
        listed = _retrying(
            lambda: raw.request(
                "GET", "/api/v1/nodes", query=[("labelSelector", f"{nodes.KWOK_NODE_LABEL}=true")]
            )
        )
    except Exception as error:
        return [f"the API server does not answer: {error!r}"]
    problems = []
    for node in listed.get("items", []):
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )
        if not ready:
            problems.append(f"node {node['metadata']['name']} is not Ready")
    return problems
