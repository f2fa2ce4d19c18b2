"""Derive a VideoJob's status, and what to do next, from what exists.

The reconciler calls :func:`plan` with the VideoJob, its resolved pipeline and
the Jobs and pods it owns (as the watch delivered them); it gets back the
status to write, the stages to start, the Jobs whose ``suspend`` must flip and
the transitions worth an Event; :func:`pipeline_status` does the same for a
VideoPipeline's Ready condition. Nothing is remembered between calls: the
status is a function of the cluster's objects, so a restarted operator picks
up where the last one stopped. Pure.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from vid_operator import contract, naming, pipeline, queueing
from vid_operator.api.common import Condition, Resources, quantity_value
from vid_operator.api.models import (
    MAX_STAGE_HISTORY,
    Phase,
    PipelineSnapshot,
    StageRun,
    StageStatus,
    VideoJobSpec,
    VideoJobStatus,
    VideoOutputs,
)
from vid_operator.api.pipelines import VideoPipelineSpec, VideoPipelineStatus
from vid_operator.pipeline import Stage

FINAL_STAGE_OUTPUTS = ("videoUri", "thumbnailUri", "durationSeconds")

# A failed stage's last words, kept short: status stays small.
MAX_FAILURE_CHARS = 256
# Why a spec cannot run (it may quote the API server, which may quote the Job).
MAX_INVALID_CHARS = 2048

# Why a Job failed, in words, by the reason on its Failed condition.
_FAILURE_WORDS = {
    "BackoffLimitExceeded": "failed on every retry (backoffLimit reached)",
    "MaxFailedIndexesExceeded": "an item failed on every retry (backoffLimitPerIndex reached)",
    "PodFailurePolicy": "exited with code 2 (invalid input); not retried",
    "DeadlineExceeded": "ran past activeDeadlineSeconds",
}
# A failed stage's reason, by the reason on its Job's Failed condition.
_FAILURE_REASONS = {
    "PodFailurePolicy": "InvalidInput",
    # One word for "out of retries", whether one Job or one of its items ran out.
    "MaxFailedIndexesExceeded": "BackoffLimitExceeded",
}


@dataclass(frozen=True)
class ObservedJob:
    """What the reconciler needs of one stage Job (see :func:`observe_job`)."""

    name: str
    created: str
    suspended: bool
    failed: int = 0
    finished: str | None = None
    """Complete or Failed, once the Job controller has decided."""
    reason: str | None = None
    message: str | None = None
    finished_at: str | None = None
    run: int = 0
    """Which of its stage's Jobs it is (see ``naming.stage_job_name``)."""
    backoff_limit: int = 0
    memory_limit: str | None = None
    """Its stage container's memory limit."""
    ended: str | None = None
    """Why the operator ended it (``Reason: words``), if it did."""
    queue_name: str | None = None
    """The Kueue LocalQueue that admits it (Kueue resumes it), if any."""
    items: int | None = None
    """A fanned-out stage's item count (its Indexed Job's completions)."""
    succeeded: int = 0
    active: int = 0
    cache_key: str | None = None
    """The stage's cache key, as its Job's pods get it."""


@dataclass(frozen=True)
class ObservedWorkload:
    """What the status needs of the Kueue Workload of a stage Job (see
    :func:`observe_workload`)."""

    name: str
    active: bool = True
    """spec.active: false stops the Job (the operator's way to suspend it)."""
    admitted: bool = False
    message: str | None = None
    """Why it is not admitted, in Kueue's words (its QuotaReserved or
    Evicted condition)."""


@dataclass(frozen=True)
class ObservedPod:
    """What the reconciler needs of a stage's newest pod (see :func:`observe_pod`)."""

    unschedulable: str | None = None
    finished: bool = False
    """Its container has terminated (the summary, if any, is known)."""
    summary: dict[str, Any] | None = None
    summary_refused: str | None = None
    """Why a clean exit's termination message was not taken as its summary."""
    failure: str | None = None
    """Why its container failed: out of memory at its limit, or its exit
    code and last words (the termination message's last line)."""
    cause: str | None = None
    """One CamelCase word for the stage's reason: OOMKilled for a failure
    (over the Job's reason), the waiting reason of a container that cannot
    start."""
    waiting: str | None = None
    """Why its container cannot start: an image that cannot be pulled, a
    missing Secret or ConfigMap."""
    progress: contract.Progress | None = None
    """What the stage last reported of its progress (its pod's annotation)."""
    # The clocks of the stage's limits. Not compared: a pod that only starts
    # (its clock stops) needs no reconcile, and one whose limit runs has a
    # timer of its VideoJob's (Outcome.recheck_at) or the resync for that.
    pending_since: str | None = field(default=None, compare=False)
    """When it was created, while it has not started (phase Pending)."""
    pull_failing_since: str | None = field(default=None, compare=False)
    """When it was scheduled, while its image cannot be pulled."""


# Why a container waits, when waiting means it cannot start until someone
# fixes something (the kubelet retries with a back-off meanwhile).
_STUCK_WAITING = {
    "ErrImagePull": "cannot pull image {image}",
    "ImagePullBackOff": "cannot pull image {image}",
    "InvalidImageName": "cannot pull image {image}: the name is not valid",
    "ErrImageNeverPull": "image {image} is not on the node and its pull policy is Never",
    "CreateContainerConfigError": "cannot start the container",
    "CreateContainerError": "cannot start the container",
}
# The waiting reasons that imagePullTimeoutSeconds ends.
_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
OOM_KILLED = "OOMKilled"
PENDING_TIMEOUT = "PendingTimeout"
REFUSED = "PodCreationRefused"
WORKLOAD_DEACTIVATED = "WorkloadDeactivated"


@dataclass(frozen=True)
class StageStart:
    """A stage Job to create: which of the stage's Jobs it is, and the stage
    as that Job runs it (more memory after an OOM kill)."""

    stage: Stage
    run: int = 0


@dataclass
class Plan:
    """The outcome of one reconciliation."""

    status: VideoJobStatus
    start: list[StageStart] = field(default_factory=list)
    set_suspend: dict[str, bool] = field(default_factory=dict)
    """Job name -> the value its spec.suspend must take."""
    set_active: dict[str, bool] = field(default_factory=dict)
    """Kueue Workload name -> the value its spec.active must take."""
    end: dict[str, str] = field(default_factory=dict)
    """Job name -> why the operator ends it (``Reason: words``)."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) of transitions worth an Event."""
    recheck_at: datetime.datetime | None = None
    """When a running stage's pending or image-pull time runs out, unless
    something happens before."""


def _condition_of(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _timestamp(value: Any) -> str | None:
    """RFC 3339 in UTC with a Z, as the API server writes it, whether the value
    came from a watch (a string) or from the client library (a datetime)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    utc: datetime.datetime = value.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def observe_job(job: Mapping[str, Any]) -> ObservedJob:
    """Reduce a Job (as the API returns it) to what the status needs."""
    status = job.get("status") or {}
    complete, failed = _condition_of(job, "Complete"), _condition_of(job, "Failed")
    finished = "Complete" if complete else "Failed" if failed else None
    decisive = complete or failed or {}
    meta, spec = job["metadata"], job.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    limits = (containers[0].get("resources") or {}).get("limits") or {}
    indexed = spec.get("completionMode") == "Indexed"
    cache_key = next(
        (
            str(variable.get("value"))
            for variable in containers[0].get("env") or []
            if variable.get("name") == contract.ENV_CACHE_KEY
        ),
        None,
    )
    return ObservedJob(
        name=meta["name"],
        created=_timestamp(meta.get("creationTimestamp")) or "",
        suspended=bool(spec.get("suspend")),
        failed=status.get("failed", 0) or 0,
        finished=finished,
        reason=decisive.get("reason"),
        message=decisive.get("message"),
        finished_at=_timestamp(status.get("completionTime") or decisive.get("lastTransitionTime")),
        run=_run_of(meta),
        backoff_limit=int(spec.get("backoffLimit") or 0),
        memory_limit=str(limits["memory"]) if "memory" in limits else None,
        ended=(meta.get("annotations") or {}).get(naming.ENDED_ANNOTATION),
        queue_name=(meta.get("labels") or {}).get(queueing.QUEUE_NAME_LABEL),
        items=int(spec.get("completions") or 1) if indexed else None,
        # Counted only where they are progress: elsewhere a change of them
        # alone would be a reconcile that writes nothing.
        succeeded=(status.get("succeeded", 0) or 0) if indexed else 0,
        active=(status.get("active", 0) or 0) if indexed else 0,
        cache_key=cache_key,
    )


def observe_workload(workload: Mapping[str, Any]) -> ObservedWorkload:
    """Reduce a Kueue Workload to whether it runs and why not."""
    admitted = _condition_of(workload, "Admitted") is not None
    message = None
    if not admitted:
        for condition in (workload.get("status") or {}).get("conditions") or []:
            kind, state = condition.get("type"), condition.get("status")
            if (kind == "QuotaReserved" and state == "False") or (
                kind == "Evicted" and state == "True"
            ):
                message = (condition.get("message") or "").strip() or None
                break
    return ObservedWorkload(
        name=str(workload["metadata"]["name"]),
        active=(workload.get("spec") or {}).get("active", True) is not False,
        admitted=admitted,
        message=message[:MAX_FAILURE_CHARS] if message else None,
    )


def _run_of(meta: Mapping[str, Any]) -> int:
    try:
        return int((meta.get("labels") or {}).get(naming.RUN_LABEL, 0))
    except ValueError:
        return 0


def observe_pod(pod: Mapping[str, Any]) -> ObservedPod:
    """Reduce a stage pod to its scheduling problem and its summary, if any."""
    unschedulable, scheduled = None, None
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") != "PodScheduled":
            continue
        if condition.get("status") == "True":
            scheduled = _timestamp(condition.get("lastTransitionTime"))
        elif condition.get("reason") == "Unschedulable":
            unschedulable = condition.get("message") or "no node fits the pod"
    created = _timestamp(pod.get("metadata", {}).get("creationTimestamp"))
    pending = pod.get("status", {}).get("phase", "Pending") == "Pending"
    pull_failing_since = None
    summary, refused, finished, failure, cause, waiting = None, None, False, None, None, None
    for container in pod.get("status", {}).get("containerStatuses") or []:
        state = container.get("state") or {}
        terminated = state.get("terminated") or {}
        finished = finished or bool(terminated)
        if terminated.get("exitCode") == 0:
            try:
                summary = contract.read_summary(terminated.get("message"))
            except contract.SummaryRefused as error:
                refused = f"its summary was left out: {error}"
        elif terminated:
            failure, cause = _failure(terminated, _memory_limit(pod, container.get("name")))
        elif (reason := (state.get("waiting") or {}).get("reason")) in _STUCK_WAITING:
            what = _STUCK_WAITING[reason].format(image=container.get("image", "?"))
            said = (state["waiting"].get("message") or "").strip()
            waiting = f"{reason}: {what}{': ' + said if said else ''}"[:MAX_FAILURE_CHARS]
            cause = reason
            if reason in _PULL_FAILURES:
                pull_failing_since = scheduled or created
    annotations = pod.get("metadata", {}).get("annotations") or {}
    return ObservedPod(
        progress=contract.read_progress(annotations.get(contract.PROGRESS_ANNOTATION)),
        unschedulable=unschedulable,
        finished=finished,
        summary=summary,
        summary_refused=refused,
        failure=failure,
        cause=cause,
        waiting=waiting,
        pending_since=created if pending and not finished else None,
        pull_failing_since=pull_failing_since,
    )


def refused_pod(message: str, since: str) -> ObservedPod:
    """What stands for a stage's pod when the Job controller cannot create
    one: the admission's words, as the stage's reason and message, pending
    since the operator first read them."""
    said = f"{REFUSED}: the Job controller cannot create its pod: {message}"
    return ObservedPod(waiting=said[:MAX_FAILURE_CHARS], cause=REFUSED, pending_since=since)


def _memory_limit(pod: Mapping[str, Any], container: str | None) -> str | None:
    for spec in pod.get("spec", {}).get("containers") or []:
        if spec.get("name") == container:
            return ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def _failure(terminated: Mapping[str, Any], memory_limit: str | None) -> tuple[str, str | None]:
    """A failed container's cause in words, and its one-word name if it is
    one the stage's reason should carry."""
    if terminated.get("reason") == OOM_KILLED:
        limit = f"its memory limit of {memory_limit}" if memory_limit else "no memory limit"
        return f"{OOM_KILLED}: out of memory at {limit}", OOM_KILLED
    words = f"exit code {terminated.get('exitCode')}"
    if said := (terminated.get("message") or "").strip():
        words += f": {said.splitlines()[-1]}"
    return words[:MAX_FAILURE_CHARS], None


def _current(
    job: ObservedJob | None, pod: ObservedPod | None, previous: StageStatus | None
) -> tuple[ObservedJob | None, ObservedPod | None]:
    """The stage's Job and pod, unless they belong to an earlier Job of the
    stage than its status names (its next one is yet to be created)."""
    if job is not None and previous is not None and job.run < previous.run:
        return None, None
    return job, pod


def _stage_status(
    name: str,
    job: ObservedJob | None,
    pod: ObservedPod | None,
    previous: StageStatus | None,
    *,
    memory: bool = False,
    workload: ObservedWorkload | None = None,
    gpus: int = 0,
    held: bool = True,
) -> StageStatus:
    """One stage's status from its current Job, pod and (with Kueue)
    Workload; ``memory``: show the Job's memory limit (the stage raises it
    after OOM kills); ``gpus``: how many it asks for, to say why it waits;
    ``held``: the operator holds the stage back (suspended, queued, its
    VideoJob failed), so an inactive Workload is its own doing."""
    job, pod = _current(job, pod, previous)
    run, history = (previous.run, list(previous.history)) if previous else (0, [])
    if job is None:
        if previous and previous.phase in (Phase.SUCCEEDED, Phase.FAILED):
            # A finished stage stays finished when its Job is gone (deleted by
            # hand or by a TTL): it never runs twice.
            return previous
        # Its next Job is yet to be created, at the memory it was given.
        memory_limit = previous.memory_limit if previous else None
        return StageStatus(
            name=name, phase=Phase.PENDING, run=run, history=history, memory_limit=memory_limit
        )
    if previous and previous.phase == Phase.SUCCEEDED:
        # Final, outputs and message included: were the outputs refused by
        # the API server once, reading them from the pod again would only be
        # refused again.
        return previous
    same_job = previous is not None and previous.job_name == job.name
    if job.run > run:
        # Created by a reconcile whose status write was lost: the Job the
        # status names made way for it.
        if previous is not None and previous.job_name and not same_job:
            history.append(_earlier(previous, previous.reason))
        run = job.run
    # Failed pods, plus the try that is running or succeeded; so the count
    # does not move while a pod merely starts. (Items: every pod so far.)
    attempts = job.failed + (0 if job.finished == "Failed" else 1)
    if job.items is not None:
        attempts = job.failed + job.succeeded + job.active
    # A Job that exists has had a try, and the count never drops: failures
    # the podFailurePolicy ignores (disruptions) are not in job.failed, so a
    # Job that then runs past its deadline would otherwise go from 1 to 0.
    attempts = max(attempts, 1, previous.attempts if previous and same_job else 0)
    message: str | None = None
    reason: str | None = None
    progress: str | None = None
    if job.items is not None and job.finished == "Complete":
        # Many pods, no one summary: the items and the key their results
        # are cached under, which stands for their contents.
        phase = Phase.SUCCEEDED
    elif job.finished == "Complete" and not (pod and not pod.finished):
        phase = Phase.SUCCEEDED
        message = pod.summary_refused if pod else None
    elif job.ended:
        # The operator ended it (a time limit, an OOM kill it raises memory
        # after): its reason, not the deadline the Job controller reports.
        phase = Phase.FAILED
        reason, message = job.ended.partition(":")[0], job.ended
    elif job.finished == "Failed":
        phase = Phase.FAILED
        words = _FAILURE_WORDS.get(job.reason or "", job.reason or "failed")
        message = f"{job.reason}: {words}"
        # Out of memory says more than "every retry failed", and is what to fix.
        reason = (pod.cause if pod and pod.failure else None) or _FAILURE_REASONS.get(
            job.reason or "", job.reason or "Failed"
        )
        if pod and pod.failure:
            message += f": {pod.failure}"
        if job.message:
            message += f" ({job.message})"
    elif job.suspended and job.queue_name and not (workload and not workload.active):
        # Kueue resumes it once its Workload is admitted (a preempted one
        # is suspended again and waits anew, its failures uncounted).
        phase = Phase.QUEUED
        said = workload.message if workload else None
        message = f"waiting for quota in LocalQueue {job.queue_name}: " + (
            said or "Kueue has not admitted its Workload yet"
        )
    elif job.queue_name and workload and not workload.active and not held:
        # Inactive, and not by the operator: Kueue gave up on it (its
        # requeuing limit, its maximum execution time) or an admin stopped it.
        phase, reason = Phase.FAILED, WORKLOAD_DEACTIVATED
        message = f"{reason}: its Kueue Workload {workload.name} was deactivated" + (
            f": {workload.message}" if workload.message else ""
        )
    elif job.suspended:
        phase = Phase.SUSPENDED
    elif job.finished == "Complete":
        # The Job's Complete event came before its pod's: wait for the pod,
        # which carries the stage's summary.
        phase = Phase.RUNNING
    else:
        phase = Phase.RUNNING
        if pod and pod.unschedulable:
            message = unschedulable_in_words(pod.unschedulable, gpus)
        elif pod and pod.waiting:
            message, reason = pod.waiting, pod.cause
        if job.items is not None:
            progress = f"{job.succeeded}/{job.items}"
        elif pod and pod.progress and not pod.finished:
            progress = f"{pod.progress.percent}%"
            message = message or pod.progress.message or None
    outputs: dict[str, Any] | None
    if job.items is not None:
        outputs = {"items": job.items}
        if job.cache_key:
            outputs[contract.SUMMARY_DIGEST] = job.cache_key
    else:
        outputs = pod.summary if pod and pod.summary else (previous.outputs if previous else None)
    return StageStatus(
        name=name,
        phase=phase,
        job_name=job.name,
        attempts=attempts,
        # The first start time written stays: the operator records a Job it
        # created as created then, and the API server's own stamp may differ
        # by a second.
        start_time=(previous.start_time if previous and same_job else None) or job.created or None,
        completion_time=job.finished_at if job.finished else None,
        message=message[:1024] if message else None,
        reason=reason,
        outputs=outputs if phase == Phase.SUCCEEDED else None,
        run=run,
        progress=progress,
        memory_limit=job.memory_limit if memory else None,
        history=history[-MAX_STAGE_HISTORY:],
        cached=_cached(outputs) if phase == Phase.SUCCEEDED else None,
    )


def _progress_in_words(done: int, total: int, stages: list[StageStatus]) -> str:
    """``2/4``, with what the running stages say of themselves: ``2/4
    (video_gen 5/8)``; the PROGRESS column of ``kubectl get vj``."""
    running = [f"{s.name} {s.progress}" for s in stages if s.progress]
    return f"{done}/{total}" + (f" ({', '.join(running)})" if running else "")


def unschedulable_in_words(said: str, gpus: int) -> str:
    """Why a stage's pod waits for a node, what the user needs to know first,
    then the scheduler's own words: "0/4 nodes are available: 1 Insufficient
    nvidia.com/gpu, 3 node(s) were unschedulable. preemption: ..." says that
    no node has the GPU free."""
    short = sorted(set(_INSUFFICIENT.findall(said.partition("preemption:")[0])))
    gpu = next((r for r in short if "gpu" in r.lower()), None)
    if gpu is not None:
        count = f"{gpus} free" if gpus else "a free"
        first = f"waiting for a GPU: no schedulable node has {count} {gpu}"
    elif short:
        first = f"waiting for a node: no schedulable node has enough free {', '.join(short)}"
    elif "node affinity/selector" in said:
        first = "waiting for a node: no node matches its node selector or affinity"
    elif "untolerated taint" in said:
        first = "waiting for a node: every fitting node has a taint it does not tolerate"
    else:
        first = "waiting for a node"
    return f"{first} ({said})"


# "3 Insufficient nvidia.com/gpu" in the scheduler's FailedScheduling message.
_INSUFFICIENT = re.compile(r"\d+ Insufficient ([\w./-]*\w)")


def _earlier(stage: StageStatus, reason: str | None) -> StageRun:
    """A stage's current Job as an entry of its history."""
    assert stage.job_name is not None
    return StageRun(
        job_name=stage.job_name,
        attempts=stage.attempts,
        reason=reason,
        memory_limit=stage.memory_limit,
    )


def _overdue(
    stage: Stage, job: ObservedJob, pod: ObservedPod | None, now: datetime.datetime
) -> tuple[str | None, datetime.datetime | None]:
    """Why a running stage Job is to be ended now (``Reason: words``), else
    when that may be due (None: no clock runs for it)."""
    clocks: list[tuple[str, int, str]] = []
    if pod is not None and pod.pull_failing_since and stage.image_pull_timeout_seconds:
        limit = stage.image_pull_timeout_seconds
        words = f"{pod.waiting}; not retried after imagePullTimeoutSeconds ({limit} s)"
        clocks.append((pod.pull_failing_since, limit, words))
    # A Job without a pod has a clock only once its pod is known to be
    # refused (see refused_pod): one whose pod just went (an eviction) gets
    # another, and its own start time says nothing of that.
    if stage.pending_timeout_seconds and pod is not None and pod.pending_since:
        limit = stage.pending_timeout_seconds
        words = (
            f"{PENDING_TIMEOUT}: its pod did not start within pendingTimeoutSeconds"
            f" ({limit} s): {pod.unschedulable or pod.waiting or 'it is Pending'}"
        )
        clocks.append((pod.pending_since, limit, words))
    dues = []
    for since, limit, words in clocks:
        due = datetime.datetime.fromisoformat(since) + datetime.timedelta(seconds=limit)
        if now >= due:
            return words[:MAX_FAILURE_CHARS], None
        dues.append(due)
    return None, min(dues, default=None)


def _with_more_memory(stage: Stage, job: ObservedJob) -> Stage | None:
    """The stage as its next Job runs it after an OOM kill of ``job``: memory
    raised by its onOOM factor up to the maximum, and the retries ``job`` left.
    None when neither memory nor retries are left."""
    assert stage.on_oom is not None
    retries_left = job.backoff_limit - max(job.failed, 1)
    if retries_left < 0 or job.memory_limit is None:
        return None
    limit = quantity_value(job.memory_limit)
    raised = min(
        limit * Decimal(str(stage.on_oom.memory_factor)), quantity_value(stage.on_oom.max_memory)
    )
    if raised <= limit:
        return None
    return _with_memory(stage, raised, retries_left)


def _as_planned(stage: Stage, planned: StageStatus) -> Stage:
    """The stage as its status says its next Job runs it: at the memory an
    OOM kill raised it to (a successor that was not started then: the
    VideoJob was suspended, or failed and is retried), with the retries the
    OOM kills since its last retry left."""
    if stage.on_oom is None or not planned.run or planned.memory_limit is None:
        return stage
    spent = 0
    for earlier in reversed(planned.history):
        if earlier.reason != OOM_KILLED:
            break
        spent += earlier.attempts
    return _with_memory(
        stage, quantity_value(planned.memory_limit), max(stage.backoff_limit - spent, 0)
    )


def _with_memory(stage: Stage, limit: Decimal, retries: int) -> Stage:
    """``stage`` with a memory limit of ``limit`` and its request raised as
    much since the stage's own, and ``retries`` for its Job's backoffLimit."""
    amounts = stage.resources.model_dump(exclude_none=True)
    requests, limits = dict(amounts.get("requests") or {}), dict(amounts.get("limits") or {})
    configured = quantity_value(limits.get("memory", limit))
    limits["memory"] = _mebibytes(limit)
    if "memory" in requests:
        request = quantity_value(requests["memory"]) * limit / configured
        requests["memory"] = _mebibytes(min(request, limit))
    return dataclasses.replace(
        stage,
        resources=Resources.model_construct(requests=requests or None, limits=limits),
        backoff_limit=retries,
    )


def _mebibytes(amount: Decimal) -> str:
    """Whole Mi, written as the API server writes it back (3Gi, not 3072Mi),
    so the status shows what the Job says."""
    mebibytes = int((amount / 2**20).to_integral_value(rounding=ROUND_CEILING))
    return f"{mebibytes // 1024}Gi" if mebibytes % 1024 == 0 else f"{mebibytes}Mi"


def _cached(outputs: dict[str, Any] | None) -> bool | None:
    """What the summary says of the result cache, shown on its own so that
    ``kubectl get -o yaml`` tells a reused result from a computed one."""
    cached = (outputs or {}).get(contract.SUMMARY_CACHED)
    return cached if isinstance(cached, bool) else None


def _set_condition(
    previous: list[Condition],
    kind: str,
    true: bool,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> Condition:
    status = "True" if true else "False"
    old = next((c for c in previous if c.type == kind), None)
    since = old.last_transition_time if old and old.status == status else now
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


HEALTH_CONDITIONS = ("Ready", "Reconciling", "Stalled")
"""The conditions tools read a resource's health from, with kstatus' meaning
(sigs.k8s.io/cli-utils/pkg/kstatus, what Flux and cli-utils' apply --wait
use): Reconciling=True is in progress, Stalled=True is failed, and with
neither, Ready decides (True: current; False: in progress)."""


def _health(
    previous: list[Condition],
    phase: Phase,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """Ready, Reconciling and Stalled for a VideoJob in ``phase``; ``reason``
    and ``message`` say why it is where it is. A suspended VideoJob is
    neither reconciling nor stalled, and not ready: kstatus reads it as in
    progress, as it reads a suspended Job that has not started."""
    ready = phase == Phase.SUCCEEDED
    reconciling = phase in (Phase.PENDING, Phase.QUEUED, Phase.RUNNING)
    stalled = phase == Phase.FAILED
    return [
        _set_condition(
            previous,
            "Ready",
            ready,
            "Succeeded" if ready else reason,
            "the video is made" if ready else message,
            now,
            generation,
        ),
        _set_condition(
            previous,
            "Reconciling",
            reconciling,
            reason if reconciling else phase.value,
            message if reconciling else "",
            now,
            generation,
        ),
        _set_condition(
            previous,
            "Stalled",
            stalled,
            reason if stalled else "NotStalled",
            message if stalled else "",
            now,
            generation,
        ),
    ]


def plan(
    spec: VideoJobSpec,
    generation: int | None,
    previous: VideoJobStatus,
    stages: list[Stage],
    jobs: dict[str, ObservedJob],
    pods: dict[str, ObservedPod],
    now: str,
    snapshot: PipelineSnapshot | None = None,
    *,
    workloads: Mapping[str, ObservedWorkload] | None = None,
    turn: queueing.Turn | None = None,
) -> Plan:
    """The status the VideoJob should have and the actions that lead there;
    ``snapshot`` is the VideoPipeline it runs, kept in the status;
    ``workloads`` the Kueue Workloads of its stage Jobs, by stage; ``turn``
    where it stands in the operator's queue, while it may not run."""
    workloads = workloads or {}
    moment = datetime.datetime.fromisoformat(now)
    # Held back: suspended by its spec, or waiting for the operator's cap.
    held = spec.suspend or turn is not None
    old_stages = {s.name: s for s in previous.stages}
    end: dict[str, str] = {}
    dues: list[datetime.datetime] = []
    events: list[tuple[str, str, str]] = []
    stage_statuses: list[StageStatus] = []
    successors: dict[str, StageStart] = {}
    current_jobs: dict[str, ObservedJob | None] = {}
    for stage in stages:
        old = old_stages.get(stage.name)
        job, pod = _current(jobs.get(stage.name), pods.get(stage.name), old)
        current_jobs[stage.name] = job
        if job is not None and not (job.finished or job.ended or job.suspended):
            why, due = _overdue(stage, job, pod, moment)
            if why is not None:
                end[job.name] = why
                job = dataclasses.replace(job, ended=why)
            elif due is not None:
                dues.append(due)
        found = _stage_status(
            stage.name,
            job,
            pod,
            old,
            memory=stage.on_oom is not None,
            workload=workloads.get(stage.name),
            gpus=stage.gpus,
            held=held or (old is not None and old.phase == Phase.SUSPENDED),
        )
        if stage.on_oom is not None and job is not None and _oom_killed(found, pod):
            successor = _with_more_memory(stage, job)
            if successor is not None:
                if not (job.finished or job.ended):
                    # Before the Job controller retries it at the same memory.
                    end[job.name] = (pod.failure if pod else None) or f"{OOM_KILLED}: out of memory"
                memory = successor.resources.limits["memory"] if successor.resources.limits else ""
                events.append(
                    (
                        "Warning",
                        OOM_KILLED,
                        f"stage {stage.name} ran out of memory at {job.memory_limit};"
                        f" its next Job gets {memory}",
                    )
                )
                found = StageStatus(
                    name=stage.name,
                    run=job.run + 1,
                    memory_limit=str(memory),
                    # Its tries are the failed ones: no other follows in it.
                    history=[
                        *found.history,
                        _earlier(
                            found.model_copy(update={"attempts": max(job.failed, 1)}), OOM_KILLED
                        ),
                    ][-MAX_STAGE_HISTORY:],
                )
                successors[stage.name] = StageStart(successor, job.run + 1)
        stage_statuses.append(found)
    by_name = {s.name: s for s in stage_statuses}
    failed = [s for s in stage_statuses if s.phase == Phase.FAILED]
    succeeded = [s for s in stage_statuses if s.phase == Phase.SUCCEEDED]
    done = len(succeeded) == len(stages)

    start: list[StageStart] = []
    set_suspend: dict[str, bool] = {}
    set_active: dict[str, bool] = {}
    if failed:
        # The VideoJob has failed: stop the stages still running (GPU hours);
        # the Jobs being ended finish on their own.
        set_suspend, set_active = _stopped(jobs, workloads, end)
    elif not done:
        for stage in stages:
            job = current_jobs[stage.name]
            if held:
                pass
            elif stage.name in successors:
                start.append(successors[stage.name])
                continue
            elif (
                job is None
                and by_name[stage.name].phase == Phase.PENDING
                and all(by_name[d].phase == Phase.SUCCEEDED for d in stage.depends_on)
            ):
                planned = by_name[stage.name]
                start.append(StageStart(_as_planned(stage, planned), planned.run))
                continue
            if job is None or job.finished:
                continue
            workload = workloads.get(stage.name)
            if job.queue_name is None and job.suspended != held:
                set_suspend[job.name] = held
            elif job.queue_name is not None and workload and workload.active == held:
                # Kueue owns spec.suspend of its Jobs: they stop and wait
                # again through their Workload (one the operator stopped: a
                # stage that Kueue stopped has failed above).
                set_active[workload.name] = not held
                if not held:
                    index = stage_statuses.index(by_name[stage.name])
                    stage_statuses[index] = by_name[stage.name] = by_name[stage.name].model_copy(
                        update={
                            "phase": Phase.QUEUED,
                            "message": f"waiting for quota in LocalQueue {job.queue_name}:"
                            " resumed, Kueue has not admitted its Workload again yet",
                        }
                    )

    if failed:
        phase, current = Phase.FAILED, failed[0].name
    elif done:
        phase, current = Phase.SUCCEEDED, None
    elif spec.suspend:
        phase, current = Phase.SUSPENDED, None
    elif turn is not None:
        phase, current = Phase.QUEUED, None
    else:
        running = [s.name for s in stage_statuses if s.phase == Phase.RUNNING]
        running += [s.stage.name for s in start]
        queued = [s.name for s in stage_statuses if s.phase == Phase.QUEUED]
        if running:
            phase = Phase.RUNNING
        elif queued:
            phase = Phase.QUEUED
        else:
            phase = Phase.RUNNING if jobs else Phase.PENDING
        current = ",".join(running or queued) or None

    waiting = [
        s
        for s in stage_statuses
        if s.phase == Phase.RUNNING and s.message and s.message.startswith("waiting")
    ]
    waiting_for_quota = [s for s in stage_statuses if s.phase == Phase.QUEUED]
    queued_reason, queued_message = "NotQueued", ""
    if phase == Phase.QUEUED and turn is not None:
        queued_reason, queued_message = "ConcurrencyLimit", turn.message
    elif phase == Phase.QUEUED:
        first = waiting_for_quota[0]
        queued_reason, queued_message = "WaitingForQuota", f"stage {first.name}: {first.message}"
    conditions = [
        _set_condition(
            previous.conditions,
            "Succeeded",
            done,
            "AllStagesSucceeded" if done else "InProgress",
            "every stage succeeded" if done else "",
            now,
            generation,
        ),
        _set_condition(
            previous.conditions,
            "Failed",
            bool(failed),
            (failed[0].reason or "StageFailed") if failed else "NoFailure",
            f"stage {failed[0].name}: {failed[0].message}" if failed else "",
            now,
            generation,
        ),
        _set_condition(
            previous.conditions,
            "Suspended",
            spec.suspend and not (failed or done),
            "SuspendedBySpec" if spec.suspend else "NotSuspended",
            "",
            now,
            generation,
        ),
        _set_condition(
            previous.conditions,
            "Unschedulable",
            bool(waiting),
            "PodUnschedulable" if waiting else "Scheduled",
            f"stage {waiting[0].name}: {waiting[0].message}" if waiting else "",
            now,
            generation,
        ),
        _set_condition(
            previous.conditions,
            "Queued",
            phase == Phase.QUEUED,
            queued_reason,
            queued_message,
            now,
            generation,
        ),
        *_health(
            previous.conditions,
            phase,
            *(
                (queued_reason, queued_message)
                if phase == Phase.QUEUED
                else _health_reason(phase, current, failed[0] if failed else None, waiting)
            ),
            now,
            generation,
        ),
    ]

    outputs = previous.outputs
    # The video is the last stage's, in DAG order, that names one: a stage
    # after compositing (captions burnt in, say) replaces it.
    final = next(
        (s for s in reversed(stage_statuses) if s.outputs and "videoUri" in s.outputs), None
    )
    if done and final and final.outputs:
        outputs = _video_outputs(final.outputs)

    created = sorted(j.created for j in jobs.values() if j.created)
    status = VideoJobStatus(
        phase=phase,
        stage=current,
        progress=_progress_in_words(len(succeeded), len(stages), stage_statuses),
        stages=stage_statuses,
        conditions=conditions,
        observed_generation=generation,
        outputs=outputs,
        start_time=previous.start_time or (created[0] if created else (now if start else None)),
        completion_time=previous.completion_time or (now if failed or done else None),
        pipeline=snapshot,
        # A raise of spec.retry before a failure has nothing to retry.
        retries=previous.retries if failed else max(previous.retries, spec.retry),
        queue_position=turn.position if turn is not None and phase == Phase.QUEUED else None,
    )
    return Plan(
        status=status,
        start=start,
        set_suspend=set_suspend,
        set_active=set_active,
        end=end,
        events=events + _transitions(previous, status),
        recheck_at=min(dues, default=None) if not failed else None,
    )


def _health_reason(
    phase: Phase, current: str | None, failed: StageStatus | None, waiting: list[StageStatus]
) -> tuple[str, str]:
    """The reason and message of the health conditions of a VideoJob in
    ``phase`` that runs the pipeline."""
    if failed is not None:
        return failed.reason or "StageFailed", f"stage {failed.name}: {failed.message}"
    if waiting:
        return "PodUnschedulable", f"stage {waiting[0].name}: {waiting[0].message}"
    if phase == Phase.RUNNING:
        return "StageRunning", f"running {current}" if current else "starting its next stage"
    if phase == Phase.SUSPENDED:
        return "Suspended", "spec.suspend is true"
    if phase == Phase.PENDING:
        return "Pending", "no stage has started yet"
    return "Succeeded", ""


def _oom_killed(stage: StageStatus, pod: ObservedPod | None) -> bool:
    """The stage's last try ran out of memory: its Job failed that way, or
    its pod did and the Job has yet to retry it."""
    if stage.phase == Phase.FAILED:
        return stage.reason == OOM_KILLED
    return stage.phase == Phase.RUNNING and pod is not None and pod.cause == OOM_KILLED


def _video_outputs(summary: dict[str, Any]) -> VideoOutputs:
    """The final stage's summary as outputs; a key of the wrong type is left
    out rather than failing the whole status."""
    kept: dict[str, Any] = {}
    for key in FINAL_STAGE_OUTPUTS:
        if key in summary:
            try:
                VideoOutputs.model_validate({key: summary[key]})
            except ValueError:
                continue
            kept[key] = summary[key]
    return VideoOutputs.model_validate(kept)


def _transitions(previous: VideoJobStatus, current: VideoJobStatus) -> list[tuple[str, str, str]]:
    """The Events ``kubectl describe`` shows for what changed between two
    statuses: the VideoJob started, each stage's Job started (a new Job after
    an OOM kill or a retry too) and succeeded, the VideoJob succeeded
    (Normal); a stage failed and the VideoJob failed (Warning). Derived from
    the statuses, not from what the operator did, so an Event whose status
    write was held back comes with that write, and a restarted operator posts
    none twice for what its status already says."""
    events = []
    if current.start_time and not previous.start_time:
        events.append(("Normal", "Started", "VideoJob started"))
    before = {s.name: s for s in previous.stages}
    for stage in current.stages:
        old = before.get(stage.name)
        if stage.job_name and stage.job_name != (old.job_name if old else None):
            memory = f" with {stage.memory_limit} of memory" if stage.memory_limit else ""
            events.append(
                (
                    "Normal",
                    "StageStarted",
                    f"stage {stage.name} started: Job {stage.job_name}{memory}",
                )
            )
        if stage.phase == (old.phase if old else None):
            continue
        if stage.phase == Phase.SUCCEEDED:
            took = _seconds_between(stage.start_time, stage.completion_time)
            cached = " (result from the cache)" if stage.cached else ""
            events.append(
                ("Normal", "StageSucceeded", f"stage {stage.name} succeeded{took}{cached}")
            )
        elif stage.phase == Phase.FAILED:
            detail = f": {stage.message}" if stage.message else ""
            events.append(("Warning", "StageFailed", f"stage {stage.name} is Failed{detail}"))
    if current.phase != previous.phase:
        if current.phase == Phase.SUCCEEDED:
            took = _seconds_between(current.start_time, current.completion_time)
            video = current.outputs.video_uri if current.outputs else None
            where = f": {video}" if video else ""
            events.append(("Normal", "Succeeded", f"VideoJob succeeded{took}{where}"))
        elif current.phase == Phase.FAILED:
            events.append(("Warning", "Failed", "VideoJob is Failed"))
    return events


def _seconds_between(start: str | None, end: str | None) -> str:
    """' in 12 s' between two RFC 3339 times, or nothing when one is unknown."""
    if not (start and end):
        return ""
    took = datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)
    return f" in {took.total_seconds():.0f} s"


def invalid(
    previous: VideoJobStatus, generation: int | None, message: str, now: str
) -> VideoJobStatus:
    """The status of a VideoJob whose spec cannot be run at all. Final: the
    start time it sets makes the spec immutable, so a fix means a new VideoJob."""
    reason = "InvalidSpec"
    message = message[:MAX_INVALID_CHARS]
    return VideoJobStatus(
        phase=Phase.FAILED,
        stage=None,
        progress=previous.progress,
        stages=previous.stages,
        observed_generation=generation,
        conditions=[
            _set_condition(previous.conditions, "Succeeded", False, reason, "", now, generation),
            _set_condition(previous.conditions, "Failed", True, reason, message, now, generation),
            *_health(previous.conditions, Phase.FAILED, reason, message, now, generation),
        ],
        start_time=previous.start_time or now,
        completion_time=previous.completion_time or now,
        pipeline=previous.pipeline,
        retries=previous.retries,
    )


def waiting_for_pipeline(
    previous: VideoJobStatus, generation: int | None, message: str, now: str, *, suspended: bool
) -> Plan:
    """The status of a VideoJob whose VideoPipeline does not exist (yet: a
    GitOps tool may apply it after the VideoJob), with a Warning the first time."""
    reason = "PipelineNotFound"
    phase = Phase.SUSPENDED if suspended else Phase.PENDING
    status = VideoJobStatus(
        phase=phase,
        observed_generation=generation,
        conditions=[
            _set_condition(
                previous.conditions, "Succeeded", False, reason, message, now, generation
            ),
            *_health(previous.conditions, phase, reason, message, now, generation),
        ],
    )
    already = any(c.reason == reason for c in previous.conditions)
    return Plan(status=status, events=[] if already else [("Warning", reason, message)])


def pipeline_status(
    spec: VideoPipelineSpec | str, generation: int | None, previous: VideoPipelineStatus, now: str
) -> VideoPipelineStatus:
    """A VideoPipeline's status: Ready when VideoJobs can run on it. ``spec``
    is its parsed spec, or why it does not parse."""
    if isinstance(spec, str):
        problem: str | None = spec
    else:
        try:
            pipeline.check(spec)
            problem = None
        except pipeline.InvalidSpec as error:
            problem = str(error)
    ready = problem is None
    reason = "Valid" if ready else "InvalidSpec"
    message = "VideoJobs can run on it" if ready else (problem or "")[:MAX_INVALID_CHARS]
    return VideoPipelineStatus(
        conditions=[
            _set_condition(previous.conditions, "Ready", ready, reason, message, now, generation),
            _set_condition(
                previous.conditions,
                "Stalled",
                not ready,
                reason,
                "" if ready else message,
                now,
                generation,
            ),
        ],
        observed_generation=generation,
        stage_count=None if isinstance(spec, str) else len(spec.stages),
    )


def settle(
    previous: VideoJobStatus,
    generation: int | None,
    jobs: dict[str, ObservedJob],
    pods: dict[str, ObservedPod],
    now: str,
    workloads: Mapping[str, ObservedWorkload] | None = None,
) -> Plan:
    """The plan for a VideoJob that has finished. Its phase, progress, outputs
    and times are final; only stages still running when another one failed
    move on (to Suspended, or to an end of their own), and whatever still runs
    is suspended. It needs no spec: the operator does not keep the spec of a
    finished VideoJob in memory. The health conditions are made again from
    the phase, for VideoJobs that finished before the operator wrote them."""
    stage_statuses = [
        _stage_status(
            old.name,
            jobs.get(old.name),
            pods.get(old.name),
            old,
            memory=old.memory_limit is not None,
            workload=(workloads or {}).get(old.name),
        )
        for old in previous.stages
    ]
    set_suspend: dict[str, bool] = {}
    set_active: dict[str, bool] = {}
    if previous.phase == Phase.FAILED:
        set_suspend, set_active = _stopped(jobs, workloads or {}, {})
    failure = next((c for c in previous.conditions if c.type == "Failed"), None)
    reason, message = (
        (failure.reason, failure.message)
        if previous.phase == Phase.FAILED and failure
        else (previous.phase.value, "")
    )
    status = previous.model_copy(
        update={
            "stages": stage_statuses,
            "conditions": [
                *(
                    c.model_copy(update={"observed_generation": generation})
                    for c in previous.conditions
                    if c.type not in HEALTH_CONDITIONS
                ),
                *_health(previous.conditions, previous.phase, reason, message, now, generation),
            ],
            "observed_generation": generation,
        }
    )
    return Plan(
        status=status,
        set_suspend=set_suspend,
        set_active=set_active,
        events=_transitions(previous, status),
    )


def _stopped(
    jobs: Mapping[str, ObservedJob],
    workloads: Mapping[str, ObservedWorkload],
    end: Mapping[str, str],
) -> tuple[dict[str, bool], dict[str, bool]]:
    """What stops the stage Jobs of a failed VideoJob that still run (GPU
    hours): suspend for the operator's own, an inactive Workload for those
    Kueue admits (it would resume a Job suspended behind its back). Jobs
    being ended (``end``) finish on their own."""
    suspend, active = {}, {}
    for stage, job in jobs.items():
        if job.finished or job.ended or job.name in end:
            continue
        workload = workloads.get(stage)
        if job.queue_name is None and not job.suspended:
            suspend[job.name] = True
        elif job.queue_name is not None and workload is not None and workload.active:
            active[workload.name] = False
    return suspend, active


def retried(previous: VideoJobStatus, retries: int) -> Plan:
    """The status a Failed VideoJob runs on from when its spec.retry is
    raised to ``retries``: each failed stage back to Pending, on to its next
    Job, with the one that failed in its history; the stages that succeeded
    keep their outputs, and what waited for the failed ones runs after them.
    When no stage failed (InvalidSpec: the same spec fails the same way), it
    stays Failed, with the retry acted on and a Warning that says why."""
    failed = [s.name for s in previous.stages if s.phase == Phase.FAILED and s.job_name]
    if not failed:
        words = f"retry {retries}: no stage failed, so nothing can run again; a new VideoJob can"
        return Plan(
            status=previous.model_copy(update={"retries": retries}),
            events=[("Warning", "NothingToRetry", words)],
        )
    stages = [
        StageStatus(
            name=s.name,
            run=s.run + 1,
            history=[*s.history, _earlier(s, s.reason)][-MAX_STAGE_HISTORY:],
        )
        if s.phase == Phase.FAILED and s.job_name
        else s
        for s in previous.stages
    ]
    status = previous.model_copy(
        update={
            "phase": Phase.RUNNING,
            "stages": stages,
            "completion_time": None,
            "outputs": None,
            "retries": retries,
        }
    )
    words = f"retry {retries}: running {', '.join(failed)} again"
    return Plan(status=status, events=[("Normal", "Retrying", words)])


def without_outputs(current: VideoJobStatus, why: str) -> VideoJobStatus:
    """The status with every stage's outputs (and the video's) left out, and a
    message that says so on each stage that had some: what to write when the
    API server refused a status for what a stage's summary held."""
    stages = [
        s.model_copy(
            update={
                "outputs": None,
                "message": f"{s.message + '; ' if s.message else ''}outputs left out: {why}"[:1024],
            }
        )
        if s.outputs is not None
        else s
        for s in current.stages
    ]
    return current.model_copy(update={"stages": stages, "outputs": None})
