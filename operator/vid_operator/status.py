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

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vid_operator import contract, pipeline
from vid_operator.api.common import Condition
from vid_operator.api.models import (
    Phase,
    PipelineSnapshot,
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
    "PodFailurePolicy": "exited with code 2 (invalid input); not retried",
    "DeadlineExceeded": "ran past activeDeadlineSeconds",
}
# A failed stage's reason, by the reason on its Job's Failed condition.
_FAILURE_REASONS = {"PodFailurePolicy": "InvalidInput"}


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


@dataclass
class Plan:
    """The outcome of one reconciliation."""

    status: VideoJobStatus
    start: list[Stage] = field(default_factory=list)
    set_suspend: dict[str, bool] = field(default_factory=dict)
    """Job name -> the value its spec.suspend must take."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) of transitions worth an Event."""


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
    return ObservedJob(
        name=job["metadata"]["name"],
        created=_timestamp(job["metadata"].get("creationTimestamp")) or "",
        suspended=bool(job.get("spec", {}).get("suspend")),
        failed=status.get("failed", 0) or 0,
        finished=finished,
        reason=decisive.get("reason"),
        message=decisive.get("message"),
        finished_at=_timestamp(status.get("completionTime") or decisive.get("lastTransitionTime")),
    )


def observe_pod(pod: Mapping[str, Any]) -> ObservedPod:
    """Reduce a stage pod to its scheduling problem and its summary, if any."""
    unschedulable = None
    for condition in pod.get("status", {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            unschedulable = condition.get("message") or "no node fits the pod"
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
    return ObservedPod(
        unschedulable=unschedulable,
        finished=finished,
        summary=summary,
        summary_refused=refused,
        failure=failure,
        cause=cause,
        waiting=waiting,
    )


def refused_pod(message: str) -> ObservedPod:
    """What stands for a stage's pod when the Job controller cannot create
    one: the admission's words, as the stage's reason and message."""
    reason = "PodCreationRefused"
    said = f"{reason}: the Job controller cannot create its pod: {message}"
    return ObservedPod(waiting=said[:MAX_FAILURE_CHARS], cause=reason)


def _memory_limit(pod: Mapping[str, Any], container: str | None) -> str | None:
    for spec in pod.get("spec", {}).get("containers") or []:
        if spec.get("name") == container:
            return ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def _failure(terminated: Mapping[str, Any], memory_limit: str | None) -> tuple[str, str | None]:
    """A failed container's cause in words, and its one-word name if it is
    one the stage's reason should carry."""
    if terminated.get("reason") == "OOMKilled":
        limit = f"its memory limit of {memory_limit}" if memory_limit else "no memory limit"
        return f"OOMKilled: out of memory at {limit}", "OOMKilled"
    words = f"exit code {terminated.get('exitCode')}"
    if said := (terminated.get("message") or "").strip():
        words += f": {said.splitlines()[-1]}"
    return words[:MAX_FAILURE_CHARS], None


def _stage_status(
    name: str, job: ObservedJob | None, pod: ObservedPod | None, previous: StageStatus | None
) -> StageStatus:
    if job is None:
        if previous and previous.phase in (Phase.SUCCEEDED, Phase.FAILED):
            # A finished stage stays finished when its Job is gone (deleted by
            # hand or by a TTL): it never runs twice.
            return previous
        return StageStatus(name=name, phase=Phase.PENDING, message=None)
    if previous and previous.phase == Phase.SUCCEEDED:
        # Final, outputs and message included: were the outputs refused by
        # the API server once, reading them from the pod again would only be
        # refused again.
        return previous
    # Failed pods, plus the try that is running or succeeded; so the count
    # does not move while a pod merely starts.
    attempts = job.failed + (0 if job.finished == "Failed" else 1)
    # A Job that exists has had a try, and the count never drops: failures
    # the podFailurePolicy ignores (disruptions) are not in job.failed, so a
    # Job that then runs past its deadline would otherwise go from 1 to 0.
    attempts = max(attempts, 1, previous.attempts if previous else 0)
    message: str | None = None
    reason: str | None = None
    if job.finished == "Complete" and not (pod and not pod.finished):
        phase = Phase.SUCCEEDED
        message = pod.summary_refused if pod else None
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
    elif job.suspended:
        phase = Phase.SUSPENDED
    elif job.finished == "Complete":
        # The Job's Complete event came before its pod's: wait for the pod,
        # which carries the stage's summary.
        phase = Phase.RUNNING
    else:
        phase = Phase.RUNNING
        if pod and pod.unschedulable:
            message = f"waiting for a node: {pod.unschedulable}"
        elif pod and pod.waiting:
            message, reason = pod.waiting, pod.cause
    outputs = pod.summary if pod and pod.summary else (previous.outputs if previous else None)
    return StageStatus(
        name=name,
        phase=phase,
        job_name=job.name,
        attempts=attempts,
        # The first start time written stays: the operator records a Job it
        # created as created then, and the API server's own stamp may differ
        # by a second.
        start_time=(previous.start_time if previous else None) or job.created or None,
        completion_time=job.finished_at if job.finished else None,
        message=message[:1024] if message else None,
        reason=reason,
        outputs=outputs if phase == Phase.SUCCEEDED else None,
        cached=_cached(outputs) if phase == Phase.SUCCEEDED else None,
    )


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


def plan(
    spec: VideoJobSpec,
    generation: int | None,
    previous: VideoJobStatus,
    stages: list[Stage],
    jobs: dict[str, ObservedJob],
    pods: dict[str, ObservedPod],
    now: str,
    snapshot: PipelineSnapshot | None = None,
) -> Plan:
    """The status the VideoJob should have and the actions that lead there;
    ``snapshot`` is the VideoPipeline it runs, kept in the status."""
    old_stages = {s.name: s for s in previous.stages}
    stage_statuses = [
        _stage_status(s.name, jobs.get(s.name), pods.get(s.name), old_stages.get(s.name))
        for s in stages
    ]
    by_name = {s.name: s for s in stage_statuses}
    failed = [s for s in stage_statuses if s.phase == Phase.FAILED]
    succeeded = [s for s in stage_statuses if s.phase == Phase.SUCCEEDED]
    done = len(succeeded) == len(stages)

    start: list[Stage] = []
    set_suspend: dict[str, bool] = {}
    if failed:
        # The VideoJob has failed: stop the stages still running (GPU hours).
        set_suspend = {
            job.name: True for job in jobs.values() if not job.finished and not job.suspended
        }
    elif not done:
        for stage in stages:
            job = jobs.get(stage.name)
            if (
                job is None
                and by_name[stage.name].phase == Phase.PENDING
                and not spec.suspend
                and all(by_name[d].phase == Phase.SUCCEEDED for d in stage.depends_on)
            ):
                start.append(stage)
            elif job is not None and not job.finished and job.suspended != spec.suspend:
                set_suspend[job.name] = spec.suspend

    if failed:
        phase, current = Phase.FAILED, failed[0].name
    elif done:
        phase, current = Phase.SUCCEEDED, None
    elif spec.suspend:
        phase, current = Phase.SUSPENDED, None
    else:
        running = [s.name for s in stage_statuses if s.phase == Phase.RUNNING]
        running += [s.name for s in start]
        phase = Phase.RUNNING if running or jobs else Phase.PENDING
        current = ",".join(running) or None

    waiting = [s for s in stage_statuses if s.message and s.message.startswith("waiting")]
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
        progress=f"{len(succeeded)}/{len(stages)}",
        stages=stage_statuses,
        conditions=conditions,
        observed_generation=generation,
        outputs=outputs,
        start_time=previous.start_time or (created[0] if created else (now if start else None)),
        completion_time=previous.completion_time or (now if failed or done else None),
        pipeline=snapshot,
    )
    return Plan(
        status=status, start=start, set_suspend=set_suspend, events=_transitions(previous, status)
    )


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
    """Events for what needs a person's attention: a stage that failed, and
    the VideoJob failing. Progress is in the status (and each Job has the Job
    controller's Events); an Event per transition was more writes than the
    Jobs and the status together."""
    events = []
    before = {s.name: s.phase for s in previous.stages}
    for stage in current.stages:
        if stage.phase == Phase.FAILED and before.get(stage.name) != Phase.FAILED:
            detail = f": {stage.message}" if stage.message else ""
            events.append(("Warning", "StageFailed", f"stage {stage.name} is Failed{detail}"))
    if current.phase == Phase.FAILED and previous.phase != Phase.FAILED:
        events.append(("Warning", "Failed", "VideoJob is Failed"))
    return events


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
        ],
        start_time=previous.start_time or now,
        completion_time=previous.completion_time or now,
        pipeline=previous.pipeline,
    )


def waiting_for_pipeline(
    previous: VideoJobStatus, generation: int | None, message: str, now: str, *, suspended: bool
) -> Plan:
    """The status of a VideoJob whose VideoPipeline does not exist (yet: a
    GitOps tool may apply it after the VideoJob), with a Warning the first time."""
    reason = "PipelineNotFound"
    status = VideoJobStatus(
        phase=Phase.SUSPENDED if suspended else Phase.PENDING,
        observed_generation=generation,
        conditions=[
            _set_condition(
                previous.conditions, "Succeeded", False, reason, message, now, generation
            )
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
    condition_status = "True" if ready else "False"
    old = next((c for c in previous.conditions if c.type == "Ready"), None)
    return VideoPipelineStatus(
        conditions=[
            Condition(
                type="Ready",
                status=condition_status,
                reason="Valid" if ready else "InvalidSpec",
                message="VideoJobs can run on it" if ready else (problem or "")[:MAX_INVALID_CHARS],
                last_transition_time=(
                    old.last_transition_time if old and old.status == condition_status else now
                ),
                observed_generation=generation,
            )
        ],
        observed_generation=generation,
        stage_count=None if isinstance(spec, str) else len(spec.stages),
    )


def settle(
    previous: VideoJobStatus,
    generation: int | None,
    jobs: dict[str, ObservedJob],
    pods: dict[str, ObservedPod],
) -> Plan:
    """The plan for a VideoJob that has finished. Its phase, progress, outputs
    and times are final; only stages still running when another one failed
    move on (to Suspended, or to an end of their own), and whatever still runs
    is suspended. It needs no spec: the operator does not keep the spec of a
    finished VideoJob in memory."""
    stage_statuses = [
        _stage_status(old.name, jobs.get(old.name), pods.get(old.name), old)
        for old in previous.stages
    ]
    set_suspend: dict[str, bool] = {}
    if previous.phase == Phase.FAILED:
        set_suspend = {
            job.name: True for job in jobs.values() if not job.finished and not job.suspended
        }
    status = previous.model_copy(
        update={
            "stages": stage_statuses,
            "conditions": [
                c.model_copy(update={"observed_generation": generation})
                for c in previous.conditions
            ],
            "observed_generation": generation,
        }
    )
    return Plan(status=status, set_suspend=set_suspend, events=_transitions(previous, status))


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
