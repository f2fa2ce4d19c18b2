"""The kopf handlers: watch VideoJobs, their Jobs and their pods; reconcile.

Loaded by :mod:`vid_operator.main` (``kopf run``). The handlers are thin:
indexes keep what the watches delivered, and every event leads to the same
:func:`reconcile`, which asks :func:`vid_operator.status.plan` what the status
should be and what to do, then does it through :class:`vid_operator.kube.Kube`.
Only ``on.event`` handlers are used, so kopf writes nothing of its own to the
VideoJobs (no progress annotations, no finalizers): deleting a VideoJob is
never blocked by the operator.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Mapping
from typing import Any

import kopf
import structlog

from vid_operator import config, jobs, naming, pipeline, status
from vid_operator.api import models
from vid_operator.kube import Kube, api_client, merge_patch

log = structlog.get_logger("vid_operator")

VIDEOJOBS = (models.GROUP, models.VERSION, models.PLURAL)
OWNED = {naming.MANAGED_BY_LABEL: naming.MANAGED_BY}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_name(meta: Mapping[str, Any]) -> str | None:
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == models.KIND and reference.get("controller"):
            return str(reference["name"])
    return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # kopf would otherwise turn its own log lines into Events: extra writes.
    settings.posting.enabled = False
    settings.execution.max_workers = 8
    memo["config"] = config.load()
    memo["kube"] = Kube(api_client())
    memo["locks"] = {}
    memo["locks_guard"] = threading.Lock()
    memo["ttl_timers"] = {}
    # The last status written per VideoJob uid. Events about Jobs and pods
    # carry the VideoJob as the index last saw it, which may predate our own
    # write; diffing against that would write the same status again and again.
    memo["written"] = {}


# Indexes: what the watches delivered, kept by kopf; handlers get them as
# keyword arguments named after the functions.


@kopf.index(*VIDEOJOBS)
def videojob_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): dict(body)}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def stage_jobs(namespace: str | None, meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    owner = _owner_name(meta)
    stage = meta.get("labels", {}).get(naming.STAGE_LABEL)
    if owner is None or stage is None:
        return None
    return {(namespace, owner): (stage, status.observe_job(dict(body)))}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def job_owners(namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> Any:
    owner = _owner_name(meta)
    return {(namespace, name): owner} if owner else None


@kopf.index("", "v1", "pods", labels=OWNED)
def stage_pods(namespace: str | None, meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    job = meta.get("labels", {}).get("batch.kubernetes.io/job-name")
    if job is None:
        return None
    return {(namespace, job): (meta.get("creationTimestamp", ""), status.observe_pod(dict(body)))}


@kopf.on.event(*VIDEOJOBS)
def videojob_changed(type: str, body: kopf.Body, memo: Any, **indexes: Any) -> None:
    if type == "DELETED":
        memo["written"].pop(body["metadata"]["uid"], None)
        timer = memo["ttl_timers"].pop(body["metadata"]["uid"], None)
        if timer:
            timer.cancel()
        return
    reconcile(dict(body), memo, indexes)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
def job_changed(
    type: str, namespace: str | None, meta: kopf.Meta, memo: Any, **indexes: Any
) -> None:
    # A Job goes away when its VideoJob is deleted (the garbage collector) or
    # by hand; either way nothing is to be recreated from that event.
    if type != "DELETED":
        _reconcile_owner(namespace, _owner_name(meta), memo, indexes)


@kopf.on.event("", "v1", "pods", labels=OWNED)
def pod_changed(namespace: str | None, meta: kopf.Meta, memo: Any, **indexes: Any) -> None:
    job = meta.get("labels", {}).get("batch.kubernetes.io/job-name")
    for owner in indexes["job_owners"].get((namespace, job), []):
        _reconcile_owner(namespace, owner, memo, indexes)


def _reconcile_owner(
    namespace: str | None, owner: str | None, memo: Any, indexes: dict[str, Any]
) -> None:
    """Reconcile the VideoJob that owns a Job (or a Job's pod)."""
    if owner is None:
        return
    for body in indexes["videojob_bodies"].get((namespace, owner), []):
        reconcile(body, memo, indexes)


def _lock_for(memo: Any, key: tuple[str, str]) -> threading.Lock:
    with memo["locks_guard"]:
        lock: threading.Lock = memo["locks"].setdefault(key, threading.Lock())
        return lock


def reconcile(body: dict[str, Any], memo: Any, indexes: dict[str, Any]) -> None:
    """Bring one VideoJob a step closer to done and write what changed.
    Serialised per VideoJob: its Job, pod and own events may arrive together."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    logger = log.bind(namespace=namespace, videojob=name)
    with _lock_for(memo, (namespace, name)):
        _reconcile_locked(body, memo, indexes["stage_jobs"], indexes["stage_pods"], logger)


def _reconcile_locked(
    body: dict[str, Any],
    memo: Any,
    stage_jobs: kopf.Index[Any, Any],
    stage_pods: kopf.Index[Any, Any],
    logger: Any,
) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    kube: Kube = memo["kube"]
    configured: config.OperatorConfig = memo["config"]
    raw_status = memo["written"].get(meta["uid"]) or body.get("status") or {}
    try:
        previous = models.VideoJobStatus.model_validate(raw_status)
    except ValueError:
        logger.warning("unreadable status, starting from empty")
        previous = models.VideoJobStatus()
    now = _now()
    generation = meta.get("generation")

    try:
        spec = models.VideoJobSpec.model_validate(body.get("spec") or {})
        stages = pipeline.resolve(spec, configured)
    except (ValueError, pipeline.InvalidSpec) as error:
        message = (
            str(error).splitlines()[0]
            if isinstance(error, pipeline.InvalidSpec)
            else (f"the spec does not parse: {error}")
        )
        new_status = status.invalid(previous, generation, "InvalidSpec", message, now)
        _write_status(
            kube,
            body,
            raw_status,
            new_status,
            logger,
            [("Warning", "InvalidSpec", message)] if previous.phase != "Failed" else [],
            memo,
        )
        return

    observed_jobs = {stage: job for stage, job in stage_jobs.get((namespace, name), [])}
    observed_pods = {}
    for stage, job in observed_jobs.items():
        pods = sorted(stage_pods.get((namespace, job.name), []), key=lambda p: p[0])
        if pods:
            observed_pods[stage] = pods[-1][1]

    plan = status.plan(spec, generation, previous, stages, observed_jobs, observed_pods, now)
    owner = jobs.Owner(name=name, namespace=namespace, uid=meta["uid"])
    if plan.start:
        for stage in plan.start:
            manifest = jobs.build_stage_job(owner, spec, stage, configured)
            created = kube.create_job(manifest)
            logger.info(
                "stage job created" if created else "stage job already there",
                stage=stage.name,
                job=manifest["metadata"]["name"],
            )
            observed_jobs[stage.name] = status.observe_job(created or manifest)
        # Fold the new Jobs in now, so their ADDED events find nothing to write.
        plan = status.plan(spec, generation, previous, stages, observed_jobs, observed_pods, now)
    for job_name, suspend in plan.set_suspend.items():
        kube.set_job_suspend(namespace, job_name, suspend)
        logger.info("stage job suspend set", job=job_name, suspend=suspend)
    _write_status(kube, body, raw_status, plan.status, logger, plan.events, memo)
    _schedule_ttl(body, spec, plan.status, memo, kube)


def _write_status(
    kube: Kube,
    body: dict[str, Any],
    raw_status: dict[str, Any],
    new_status: models.VideoJobStatus,
    logger: Any,
    events: list[tuple[str, str, str]],
    memo: Any,
) -> None:
    meta = body["metadata"]
    new_raw = new_status.model_dump(by_alias=True, mode="json", exclude_none=True)
    patch = merge_patch(raw_status, new_raw)
    if not patch:
        return
    kube.patch_status(meta["namespace"], meta["name"], patch)
    memo["written"][meta["uid"]] = new_raw
    logger.info("status written", phase=new_raw.get("phase"), progress=new_raw.get("progress"))
    for kind, reason, message in events:
        kube.post_event(body, kind, reason, message)


def _schedule_ttl(
    body: dict[str, Any],
    spec: models.VideoJobSpec,
    new_status: models.VideoJobStatus,
    memo: Any,
    kube: Kube,
) -> None:
    """Delete a finished VideoJob once its ttlSecondsAfterFinished has passed.
    One timer per VideoJob, set again after a restart by the first reconcile."""
    if spec.ttl_seconds_after_finished is None or not new_status.completion_time:
        return
    if new_status.phase not in (models.Phase.SUCCEEDED, models.Phase.FAILED):
        return
    meta = body["metadata"]
    if meta["uid"] in memo["ttl_timers"]:
        return
    finished = datetime.datetime.fromisoformat(new_status.completion_time)
    due = finished + datetime.timedelta(seconds=spec.ttl_seconds_after_finished)
    delay = max(0.0, (due - datetime.datetime.now(datetime.UTC)).total_seconds())
    timer = threading.Timer(
        delay, kube.delete_videojob, args=(meta["namespace"], meta["name"], meta["uid"])
    )
    timer.daemon = True
    memo["ttl_timers"][meta["uid"]] = timer
    timer.start()
