"""Decide what one VideoJob needs: a frozen snapshot in, an outcome out.

Called by :mod:`vid_operator.runtime.controller` for every reconcile, and
again by its executor when the API server refuses what an outcome asked for
(:func:`job_refused`, :func:`status_refused`). :func:`reconcile` is a ladder
of numbered rungs, each of which returns or hands on to the next. Pure: it
never calls the API, never schedules anything and keeps nothing between calls;
the status is a function of the cluster's objects, so a restarted operator
carries on where the last one stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vid_operator import cache, jobs, pipeline, queueing, status
from vid_operator.api.models import (
    FINISHED_PHASES,
    Phase,
    PipelineSnapshot,
    VideoJobSpec,
    VideoJobStatus,
)
from vid_operator.api.pipelines import VideoPipelineSpec, VideoPipelineStatus
from vid_operator.config import OperatorConfig
from vid_operator.runtime.memory import retry_wanted
from vid_operator.runtime.observed import KnownPipeline
from vid_operator.status import ObservedJob, ObservedPod, ObservedWorkload

Event = tuple[str, str, str]
"""(type, reason, message) of an Event to post on the VideoJob."""


@dataclass(frozen=True)
class Snapshot:
    """One VideoJob and what it owns, as of one moment. Built on the event
    loop from memory and the watch's indexes; read-only from then on."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: Mapping[str, Any] | None
    """None for a finished VideoJob (its spec is not kept)."""
    ttl_seconds_after_finished: int | None
    status: Mapping[str, Any]
    """The status to build on (the last one written, else the watch's)."""
    jobs: Mapping[str, ObservedJob]
    """Stage -> its Job, including those created and not yet seen."""
    pods: Mapping[str, ObservedPod]
    """Stage -> its newest pod."""
    now: datetime.datetime
    flush: bool = False
    """Write a held-back progress-only status now."""
    pipeline: KnownPipeline | None = None
    """The VideoPipeline the spec names, as the watch has it (None: there is
    none, or the spec names none)."""
    workloads: Mapping[str, ObservedWorkload] = field(default_factory=dict)
    """Stage -> the Kueue Workload of its Job, where Kueue admits it."""
    turn: queueing.Turn | None = None
    """Where it stands in the operator's queue, while the cap holds it back
    (None: it may run)."""


@dataclass(frozen=True)
class StageJob:
    """A stage Job to create, and what the status assumes of it once created."""

    stage: str
    manifest: dict[str, Any]
    observed: ObservedJob


@dataclass(frozen=True)
class Outcome:
    """What to do for one VideoJob. The executor creates, flips suspend, keeps
    failed Jobs longer, writes the status, then posts the Events."""

    status: dict[str, Any]
    """The status the VideoJob should have, as written."""
    patch: dict[str, Any]
    """The merge patch from the snapshot's status to it; empty: no write."""
    create: tuple[StageJob, ...] = ()
    suspend: Mapping[str, bool] = field(default_factory=dict)
    """Job name -> the value its spec.suspend must take."""
    activate: Mapping[str, bool] = field(default_factory=dict)
    """Kueue Workload name -> the value its spec.active must take."""
    end: Mapping[str, str] = field(default_factory=dict)
    """Job name -> why it is ended (``Reason: words``, see ``Kube.end_job``)."""
    keep_failed: Mapping[str, int | None] = field(default_factory=dict)
    """Job name -> the ttlSecondsAfterFinished of a Job just seen failing
    (None: keep it for good)."""
    events: tuple[Event, ...] = ()
    hold_back: bool = False
    """The write only reports progress: make it a moment later, with whatever
    else has happened by then (two stages that finish together, one write)."""
    counters_only: bool = False
    """Held back, and all it moves is the running stages' progress (items
    done, a stage's own percent and words): it may wait longer still."""
    ttl_due: datetime.datetime | None = None
    """When the finished VideoJob is to be deleted (ttlSecondsAfterFinished)."""
    recheck_at: datetime.datetime | None = None
    """When to reconcile again if nothing happens first: a running stage's
    pending or image-pull time runs out then."""

    @property
    def starts(self) -> bool:
        """It starts or resumes stage Jobs: the VideoJob takes a slot."""
        return (
            bool(self.create)
            or any(not held for held in self.suspend.values())
            or any(self.activate.values())
        )

    @property
    def idle(self) -> bool:
        """Nothing for the API server now."""
        return not (
            self.create
            or self.suspend
            or self.activate
            or self.end
            or self.keep_failed
            or (self.patch and not self.hold_back)
        )


def reconcile(snapshot: Snapshot, config: OperatorConfig) -> Outcome:
    """The next step for one VideoJob."""
    # 1. The status to build on; one that does not parse counts as none,
    #    unless it says the VideoJob has finished: then it is left as it is.
    previous = _previous_status(snapshot.status)
    if previous is None:
        if snapshot.status.get("phase") in FINISHED_PHASES:
            return _untouched(snapshot)
        previous = VideoJobStatus()
    # 2. A finished VideoJob's status is final: only stages still running
    #    after a failure move on (and are suspended), and its TTL runs;
    #    unless a raise of spec.retry runs a Failed one again from its
    #    failed stages (on from rung 3, as if they had not run yet).
    retry = None
    if snapshot.spec is not None and retry_wanted(snapshot.spec, snapshot.status):
        retry = status.retried(previous, int(snapshot.spec["retry"]))
        previous = retry.status
    now = _rfc3339(snapshot.now)
    if previous.phase in FINISHED_PHASES or snapshot.spec is None:
        settled = status.settle(
            previous,
            snapshot.generation,
            dict(snapshot.jobs),
            dict(snapshot.pods),
            now,
            snapshot.workloads,
        )
        return _outcome(
            snapshot,
            settled.status,
            events=[*(retry.events if retry else ()), *settled.events],
            suspend=settled.set_suspend,
            activate=settled.set_active,
            keep_failed=_kept_failed(previous, settled.status, config),
        )
    # 3. The spec and its pipeline: the one it started on, else the one
    #    named now (kept in the status once a stage starts, with startTime,
    #    which makes the spec immutable), else the default. What cannot run
    #    fails as InvalidSpec.
    try:
        spec = VideoJobSpec.model_validate(snapshot.spec)
    except ValueError as error:
        return _invalid(snapshot, previous, f"the spec does not parse: {error}")
    try:
        kept = _pipeline_snapshot(spec, previous, snapshot.pipeline)
        if spec.pipeline is not None and kept is None:
            message = (
                f"waiting for VideoPipeline {spec.pipeline}: there is none in namespace"
                f" {snapshot.namespace}"
            )
            waiting = status.waiting_for_pipeline(
                previous, snapshot.generation, message, now, suspended=spec.suspend
            )
            return _outcome(snapshot, waiting.status, events=waiting.events)
        source = pipeline.pipeline_source(kept.name, kept.spec) if kept else None
        stages = pipeline.resolve(spec, config, source)
    except pipeline.InvalidSpec as error:
        return _invalid(snapshot, previous, str(error))
    # 4. What the status should be, from the Jobs and pods that exist.
    observed_jobs, pods = dict(snapshot.jobs), dict(snapshot.pods)
    copy = kept if previous.pipeline or observed_jobs else None
    plan = status.plan(
        spec,
        snapshot.generation,
        previous,
        stages,
        observed_jobs,
        pods,
        now,
        copy,
        workloads=snapshot.workloads,
        turn=snapshot.turn,
    )
    # 5. The stages that can start: their Jobs, and the status as it will be
    #    once they exist (created now), so their ADDED events find nothing to
    #    write. Built on the first plan's status, which says which of its
    #    Jobs each stage is on; the Events are the first plan's.
    events = [*(retry.events if retry else ()), *plan.events]
    create: tuple[StageJob, ...] = ()
    if plan.start:
        owner = jobs.Owner(name=snapshot.name, namespace=snapshot.namespace, uid=snapshot.uid)
        by_name = {stage.name: stage for stage in stages}
        # The stages before one that starts have all succeeded: their outputs.
        outputs = {s.name: s.outputs for s in plan.status.stages}
        messages = {s.name: s.message for s in plan.status.stages}
        try:
            create = tuple(
                _stage_job(
                    start.stage.name,
                    jobs.build_stage_job(
                        owner,
                        spec,
                        start.stage,
                        config,
                        start.run,
                        cache_key=cache.stage_key(spec, start.stage, by_name, outputs),
                        items=pipeline.fan_out_items(start.stage, outputs, messages),
                    ),
                    now,
                )
                for start in plan.start
            )
        except pipeline.InvalidSpec as error:
            # An upstream stage's summary says no usable item count.
            return _invalid(snapshot, plan.status, str(error))
        observed_jobs.update({job.stage: job.observed for job in create})
        for job in create:
            pods.pop(job.stage, None)  # an earlier Job's, if any: the new one has none
        first = plan
        plan = status.plan(
            spec,
            snapshot.generation,
            first.status,
            stages,
            observed_jobs,
            pods,
            now,
            kept,
            workloads=snapshot.workloads,
        )
        plan.end.update(first.end)
        events += plan.events  # the stages started, from one status to the other
    # 6. A write that only reports progress (nothing started, nothing to flip,
    #    no Warning, same phase) waits for more to report, unless it is due
    #    now. Its Normal Events (a stage succeeded) wait with it: they come
    #    from the change of status, so the write that carries it posts them.
    progress_only = (
        not snapshot.flush
        and not create
        and not plan.set_suspend
        and not plan.set_active
        and not plan.end
        and not any(kind == "Warning" for kind, _, _ in events)
        and bool(snapshot.status)
        and plan.status.phase == previous.phase
    )
    return _outcome(
        snapshot,
        plan.status,
        create=create,
        suspend=plan.set_suspend,
        activate=plan.set_active,
        end=plan.end,
        keep_failed=_kept_failed(previous, plan.status, config),
        events=events,
        hold_back=progress_only,
        counters_only=progress_only and _counters_only(previous, plan.status),
        recheck_at=plan.recheck_at,
    )


def _counters_only(previous: VideoJobStatus, current: VideoJobStatus) -> bool:
    """The two statuses differ in the running stages' progress at most (for
    a stage that fans out, its pods so far move with its items)."""

    def without_progress(whole: VideoJobStatus, others: VideoJobStatus) -> VideoJobStatus:
        reporting = {s.name for s in [*whole.stages, *others.stages] if s.progress}
        stages = [
            s.model_copy(update={"progress": None, "message": None, "attempts": 0})
            if s.name in reporting
            else s
            for s in whole.stages
        ]
        return whole.model_copy(update={"progress": None, "stages": stages})

    return without_progress(previous, current) == without_progress(current, previous)


def _pipeline_snapshot(
    spec: VideoJobSpec, previous: VideoJobStatus, current: KnownPipeline | None
) -> PipelineSnapshot | None:
    """The VideoPipeline the VideoJob runs: the copy in its status once it has
    one (edits and deletion of the VideoPipeline change nothing for it), else
    the VideoPipeline as it is now; None when the spec names none or it does
    not exist, InvalidSpec when it cannot run."""
    if spec.pipeline is None:
        return None
    if previous.pipeline is not None and previous.pipeline.name == spec.pipeline:
        return previous.pipeline
    if current is None:
        return None
    try:
        pipeline_spec = VideoPipelineSpec.model_validate(current.spec)
        pipeline.check(pipeline_spec)
    except pipeline.InvalidSpec as error:
        raise pipeline.InvalidSpec(f"VideoPipeline {spec.pipeline} cannot run: {error}") from None
    except ValueError as error:
        raise pipeline.InvalidSpec(
            f"VideoPipeline {spec.pipeline} does not parse: {error}"
        ) from None
    return PipelineSnapshot(name=spec.pipeline, generation=current.generation, spec=pipeline_spec)


def pipeline_status(known: KnownPipeline, now: datetime.datetime) -> dict[str, Any] | None:
    """The status a VideoPipeline should have; None when it has it already."""
    try:
        spec: VideoPipelineSpec | str = VideoPipelineSpec.model_validate(known.spec)
    except ValueError as error:
        spec = f"the spec does not parse: {error}"
    try:
        previous = VideoPipelineStatus.model_validate(known.status)
    except ValueError:
        previous = VideoPipelineStatus()
    wanted = status.pipeline_status(spec, known.generation, previous, _rfc3339(now))
    raw = wanted.model_dump(by_alias=True, mode="json", exclude_none=True)
    return None if raw == dict(known.status) else raw


def job_refused(snapshot: Snapshot, stage: str, why: str) -> Outcome:
    """The API server refused the ``stage`` Job as invalid: retrying cannot
    help, so the VideoJob fails as InvalidSpec."""
    previous = _previous_status(snapshot.status) or VideoJobStatus()
    return _invalid(snapshot, previous, f"the API server rejected the {stage} Job: {why}")


def status_refused(snapshot: Snapshot, outcome: Outcome, why: str) -> Outcome:
    """The API server refused ``outcome``'s status: what a stage wrote in its
    summary is the only part of it that is not the operator's own, so the same
    status without the outputs, saying why on each stage that had some."""
    current = VideoJobStatus.model_validate(outcome.status)
    return _outcome(snapshot, status.without_outputs(current, why), events=outcome.events)


def _kept_failed(
    previous: VideoJobStatus, current: VideoJobStatus, config: OperatorConfig
) -> dict[str, int | None]:
    """The Jobs of stages that have just failed, with the TTL failed Jobs get."""
    ttls = config.finished_jobs
    if ttls.failed_ttl_seconds == ttls.succeeded_ttl_seconds:
        return {}
    before = {s.name: s.phase for s in previous.stages}
    return {
        s.job_name: ttls.failed_ttl_seconds
        for s in current.stages
        if s.phase == Phase.FAILED and s.job_name and before.get(s.name) != Phase.FAILED
    }


def _stage_job(stage: str, manifest: dict[str, Any], now: str) -> StageJob:
    # The API server sets the creation time; now is within a second of it,
    # and the stage's startTime, once written, does not move.
    observed = dataclasses.replace(status.observe_job(manifest), created=now)
    return StageJob(stage=stage, manifest=manifest, observed=observed)


def _invalid(snapshot: Snapshot, previous: VideoJobStatus, message: str) -> Outcome:
    retry = (snapshot.spec or {}).get("retry")
    if isinstance(retry, int) and retry > previous.retries:
        # Acted on: the spec that fails cannot change, so retrying it again
        # (at every resync) would fail the same way.
        previous = previous.model_copy(update={"retries": retry})
    now = _rfc3339(snapshot.now)
    failed = status.invalid(previous, snapshot.generation, message, now)
    return _outcome(snapshot, failed, events=(("Warning", "InvalidSpec", message),))


def _outcome(
    snapshot: Snapshot,
    new_status: VideoJobStatus,
    *,
    create: tuple[StageJob, ...] = (),
    suspend: Mapping[str, bool] | None = None,
    activate: Mapping[str, bool] | None = None,
    end: Mapping[str, str] | None = None,
    keep_failed: Mapping[str, int | None] | None = None,
    events: list[Event] | tuple[Event, ...] = (),
    hold_back: bool = False,
    counters_only: bool = False,
    recheck_at: datetime.datetime | None = None,
) -> Outcome:
    raw = new_status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return Outcome(
        status=raw,
        patch=merge_patch(snapshot.status, raw),
        create=create,
        suspend=dict(suspend or {}),
        activate=dict(activate or {}),
        end=dict(end or {}),
        keep_failed=dict(keep_failed or {}),
        events=tuple(events),
        hold_back=hold_back,
        counters_only=counters_only,
        ttl_due=_ttl_due(snapshot.ttl_seconds_after_finished, raw),
        recheck_at=recheck_at,
    )


def _ttl_due(ttl: int | None, raw: Mapping[str, Any]) -> datetime.datetime | None:
    finished = raw.get("completionTime") if raw.get("phase") in FINISHED_PHASES else None
    if ttl is None or not finished:
        return None
    return datetime.datetime.fromisoformat(finished) + datetime.timedelta(seconds=int(ttl))


def _previous_status(raw: Mapping[str, Any]) -> VideoJobStatus | None:
    try:
        return VideoJobStatus.model_validate(raw)
    except ValueError:
        return None


def _untouched(snapshot: Snapshot) -> Outcome:
    """Nothing to do but the TTL, for a finished VideoJob whose status this
    operator cannot read (written by another version of it, perhaps)."""
    raw = dict(snapshot.status)
    return Outcome(status=raw, patch={}, ttl_due=_ttl_due(snapshot.ttl_seconds_after_finished, raw))


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: only
    what changed, with null for what went away."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    for key in old.keys() - new.keys():
        patch[key] = None
    return patch
