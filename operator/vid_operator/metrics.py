"""The operator's Prometheus metrics: one registry of its own and the calls that move them.

Called by :mod:`vid_operator.runtime.controller` (watch events handled, each
reconcile's time and failure, each status written: stage ends, tries and
failures are read off the change it makes), by :mod:`vid_operator.kube`
(every request it sends: :class:`~vid_operator.kube.CountedApiClient`) and by
:mod:`vid_operator.main`, which serves :data:`REGISTRY` on a port of its own
(``--metrics-bind-address``) apart from the liveness endpoint. docs/operator.md
lists every metric.

Label values are bounded: no VideoJob names or prompts. Stage names come from
pipelines, which may be many, so a stage label takes the default pipeline's
names and at most :data:`MAX_STAGE_LABELS` others (first seen, first kept),
then ``other``; failure reasons are the known ones or ``Other``; namespaces
are as many as the cluster has.

Everything here is called on the event loop's thread, except the scrape, which
runs in the HTTP server's thread and only reads (see :class:`_VideoJobsCollector`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vid_operator.api.models import FINISHED_PHASES, STAGE_NAMES, Phase

# No <name>_created series beside each counter and histogram: twice the
# series for a start time that process_start_time_seconds already gives.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
"""The operator's metrics, and only those (not prometheus_client's global
registry, which any imported library may add to)."""
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, memory, open fds
PlatformCollector(registry=REGISTRY)  # python_info

MAX_STAGE_LABELS = 64
"""Distinct stage label values beside the default pipeline's stages."""
OTHER_STAGE = "other"
FAILURE_REASONS = frozenset(
    {
        # The Job controller's reasons on a failed Job.
        "BackoffLimitExceeded",
        "DeadlineExceeded",
        "FailedIndexes",
        "MaxFailedIndexesExceeded",
        # The operator's own (vid_operator.status).
        "InvalidInput",
        "OOMKilled",
        "PendingTimeout",
        "PodCreationRefused",
        # A container that never started (imagePullTimeoutSeconds).
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "Failed",
    }
)
"""Failure reasons kept as label values; any other counts as ``Other``."""
OTHER_REASON = "Other"

STAGE_DURATION = Histogram(
    "vidop_stage_duration_seconds",
    "How long a stage Job ran, from its creation to its end, by stage and outcome.",
    ["stage", "outcome"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800),
    registry=REGISTRY,
)
STAGE_ATTEMPTS = Counter(
    "vidop_stage_attempts",
    "Pods started for stage Jobs (first tries and retries), by stage.",
    ["stage"],
    registry=REGISTRY,
)
STAGE_FAILURES = Counter(
    "vidop_stage_failures",
    "Stage Jobs that failed, by stage and reason (an OOM-killed Job that a"
    " Job with more memory replaces counts, as OOMKilled).",
    ["stage", "reason"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "vidop_reconcile_duration_seconds",
    "How long one VideoJob's reconcile took, its API requests included.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "vidop_reconcile_errors",
    "Reconciles that stopped short (the resync tries again): the API server"
    " failed or was away (api), or the operator itself failed (internal).",
    ["error"],
    registry=REGISTRY,
)
for _error in ("api", "internal"):
    RECONCILE_ERRORS.labels(_error)  # shown as 0 until the first, so rate() has a series
API_REQUESTS = Counter(
    "vidop_api_requests",
    "Requests the operator sent to the Kubernetes API (not kopf's watches),"
    " by verb, resource and HTTP status code (<error>: no answer).",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
WATCH_EVENTS = Counter(
    "vidop_watch_events",
    "Watch events handled, by resource and type; LISTED: an object kopf listed"
    " (at start-up, and again whenever it restarts a watch with a new listing).",
    ["resource", "type"],
    registry=REGISTRY,
)
_EVENT_KINDS: dict[str | None, str] = {
    None: "LISTED",
    "ADDED": "ADDED",
    "MODIFIED": "MODIFIED",
    "DELETED": "DELETED",
}


def watch_event(resource: str, event_type: str | None) -> None:
    """A watch event of ``resource`` reached a handler (kopf hands listed
    objects over with no type)."""
    WATCH_EVENTS.labels(resource, _EVENT_KINDS.get(event_type, "other")).inc()


def reconciled(seconds: float, error: str | None) -> None:
    """One reconcile's time; ``error``: ``api`` or ``internal`` if it stopped short."""
    RECONCILE_DURATION.observe(seconds)
    if error is not None:
        RECONCILE_ERRORS.labels(error).inc()


def api_request(verb: str, resource: str, code: str) -> None:
    API_REQUESTS.labels(verb, resource, code).inc()


_stage_labels: set[str] = set(STAGE_NAMES)


def stage_label(name: str) -> str:
    """The stage label value for a stage name (see the module docstring)."""
    if name in _stage_labels:
        return name
    if len(_stage_labels) < len(STAGE_NAMES) + MAX_STAGE_LABELS:
        _stage_labels.add(name)
        return name
    return OTHER_STAGE


def reason_label(reason: str | None) -> str:
    reason = reason or "Failed"
    return reason if reason in FAILURE_REASONS else OTHER_REASON


@dataclass(frozen=True)
class StageEnd:
    """A stage Job that ended, as a status change shows it."""

    stage: str
    job_name: str
    succeeded: bool
    reason: str | None
    seconds: float | None
    """From the Job's creation to its completion (or to ``now`` when the
    status has no completion time yet: the operator ended it); None when
    the status never said when it started."""


def _seconds(start: Any, end: Any, now: datetime.datetime) -> float | None:
    if not isinstance(start, str):
        return None
    try:
        began = datetime.datetime.fromisoformat(start)
        ended = datetime.datetime.fromisoformat(end) if isinstance(end, str) else now
    except ValueError:
        return None
    return max((ended - began).total_seconds(), 0.0)


def _stages(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    stages = status.get("stages")
    if not isinstance(stages, list):
        return {}
    return {str(s["name"]): s for s in stages if isinstance(s, Mapping) and "name" in s}


def stage_ends(
    previous: Mapping[str, Any], current: Mapping[str, Any], now: datetime.datetime
) -> list[StageEnd]:
    """The stage Jobs that ``current`` shows ended and ``previous`` did not:
    a stage's current Job Succeeded or Failed, or an earlier Job in its
    history (one that made way for a Job with more memory). A Job that
    ``previous`` shows ended already (a failed stage moved to its history
    when the VideoJob is retried) is not counted twice."""
    before = _stages(previous)
    ends: list[StageEnd] = []
    for name, stage in _stages(current).items():
        old = before.get(name) or {}
        ended_before = {h.get("jobName") for h in old.get("history") or []}
        if old.get("phase") in FINISHED_PHASES:
            ended_before.add(old.get("jobName"))
        for earlier in stage.get("history") or []:
            job = earlier.get("jobName")
            if job and job not in ended_before:
                # Only the status that last named it current knows its start.
                start = old.get("startTime") if old.get("jobName") == job else None
                ends.append(
                    StageEnd(name, job, False, earlier.get("reason"), _seconds(start, None, now))
                )
        job = stage.get("jobName")
        if stage.get("phase") in FINISHED_PHASES and job and job not in ended_before:
            succeeded = stage.get("phase") == Phase.SUCCEEDED
            ends.append(
                StageEnd(
                    name,
                    job,
                    succeeded,
                    None if succeeded else stage.get("reason"),
                    _seconds(stage.get("startTime"), stage.get("completionTime"), now),
                )
            )
    return ends


def attempts_started(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, int]:
    """Stage -> the tries (pods) ``current`` shows started since ``previous``:
    the rise of its current Job's count, or all of a new Job's."""
    before = _stages(previous)
    started: dict[str, int] = {}
    for name, stage in _stages(current).items():
        old = before.get(name) or {}
        now_count = stage.get("attempts") or 0
        was = (old.get("attempts") or 0) if old.get("jobName") == stage.get("jobName") else 0
        if isinstance(now_count, int) and isinstance(was, int) and now_count > was:
            started[name] = now_count - was
    return started


def status_written(
    previous: Mapping[str, Any],
    current: Mapping[str, Any],
    now: datetime.datetime,
    counted: set[str],
) -> None:
    """A VideoJob's status went from ``previous`` to ``current`` on the API
    server: count the tries it shows started and the stage Jobs it shows ended.
    Only written statuses count, so a retried write counts nothing twice, and
    a restarted operator starts from the status the last one wrote.
    ``counted`` holds the Jobs whose end this process counted already for the
    VideoJob (and gains those counted now): a write built on a status older
    than the last one written never counts an end twice."""
    for name, count in attempts_started(previous, current).items():
        STAGE_ATTEMPTS.labels(stage_label(name)).inc(count)
    for end in stage_ends(previous, current, now):
        if end.job_name in counted:
            continue
        counted.add(end.job_name)
        stage = stage_label(end.stage)
        outcome = "succeeded" if end.succeeded else "failed"
        if end.seconds is not None:
            STAGE_DURATION.labels(stage, outcome).observe(end.seconds)
        if not end.succeeded:
            STAGE_FAILURES.labels(stage, reason_label(end.reason)).inc()


PhaseCounts = Callable[[], Mapping[tuple[str, str], int]]
"""(namespace, phase) -> how many VideoJobs there are."""


class _VideoJobsCollector(Collector):
    """``vidop_videojobs``, counted at scrape time from what the controller
    remembers (a gauge moved by hand would drift from it). The count runs in
    the HTTP server's thread; the controller's source copies its records in
    one step before it reads them, so a change on the loop meanwhile cannot
    break the iteration."""

    def __init__(self) -> None:
        self.source: PhaseCounts | None = None

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        counts = dict(self.source()) if self.source is not None else {}
        for namespace in sorted({namespace for namespace, _ in counts}):
            # Every phase, zeros too: a series that vanishes is not a zero.
            for phase in Phase:
                family.add_metric([namespace, phase.value], counts.get((namespace, phase), 0))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "vidop_videojobs",
            "VideoJobs the operator knows, by namespace and phase.",
            labels=["namespace", "phase"],
        )


_videojobs = _VideoJobsCollector()
REGISTRY.register(_videojobs)


def count_videojobs_with(source: PhaseCounts | None) -> None:
    """Where ``vidop_videojobs`` comes from (the running controller; None: none)."""
    _videojobs.source = source


def bind_address(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` or ``:PORT`` (all addresses) of ``--metrics-bind-address``;
    None for ``0`` or empty (no metrics served)."""
    if value in ("", "0"):
        return None
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(host: str, port: int) -> None:
    """Serve :data:`REGISTRY` at http://HOST:PORT/metrics from a daemon thread."""
    start_http_server(port, addr=host, registry=REGISTRY)
