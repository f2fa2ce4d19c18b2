"""The kopf handlers: watch VideoJobs, their Jobs and their pods; reconcile.

Loaded by :mod:`vid_operator.main` (``kopf run``). The handlers are thin:
indexes keep what the watches delivered, and every event leads to the same
:func:`reconcile`, which asks :func:`vid_operator.status.plan` what the status
should be and what to do, then does it through :class:`vid_operator.kube.Kube`.

Concurrency: handlers are coroutines on kopf's event loop. Per VideoJob an
asyncio lock (first come, first served) serialises reconciles; under it the
indexes are copied on the loop thread (kopf changes them there) and the
blocking API calls then run in a worker thread on that snapshot.

Only ``on.event`` handlers are used (and our own resync loop, not a kopf
timer), so kopf writes nothing of its own to the VideoJobs (no progress
annotations, no finalizers): deleting a VideoJob is never blocked by the
operator.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import structlog
from kubernetes.client.exceptions import ApiException

from vid_operator import config, jobs, naming, pipeline, status
from vid_operator.api import models
from vid_operator.kube import JobRejected, Kube, api_client, merge_patch

log = structlog.get_logger("vid_operator")

VIDEOJOBS = (models.GROUP, models.VERSION, models.PLURAL)
OWNED = {naming.MANAGED_BY_LABEL: naming.MANAGED_BY}
FINISHED = (models.Phase.SUCCEEDED, models.Phase.FAILED)
# How often an unfinished VideoJob is reconciled even without events: the
# safety net for a reconcile lost to an API error (kopf never retries event
# handlers). It reads only the indexes; a no-op writes nothing.
RESYNC_SECONDS = 30.0


@dataclass
class State:
    """What the operator keeps in memory, per VideoJob (by uid)."""

    config: config.OperatorConfig
    kube: Kube
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The last status written: index bodies may predate our own writes."""
    ttl: dict[str, tuple[int, asyncio.TimerHandle]] = field(default_factory=dict)
    """The pending TTL deletion: (its ttlSecondsAfterFinished, the timer)."""
    unfinished: set[tuple[str, str]] = field(default_factory=set)
    """VideoJobs the resync loop visits: not yet Succeeded or Failed."""
    indexes: Mapping[str, Any] | None = None
    """kopf's indexes, as the handlers receive them (the same objects each time)."""
    resync_task: asyncio.Task[None] | None = None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _controller(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the VideoJob that controls an object, if any."""
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == models.KIND and reference.get("controller"):
            return str(reference["name"]), str(reference["uid"])
    return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # kopf would otherwise turn its own log lines into Events: extra writes.
    settings.posting.enabled = False
    # No watching of CRDs and namespaces for new resources: the resources are
    # known, and the chart's RBAC grants nothing of the kind.
    settings.scanning.disabled = True
    # Watch only our own Jobs and pods, filtered by the API server: the labels
    # on the handlers alone filter client-side, after every pod in the
    # cluster has been sent to us.
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    settings.watching.label_selectors["batch", "jobs"] = selector
    settings.watching.label_selectors["", "pods"] = selector
    memo["state"] = State(config=config.load(), kube=Kube(api_client()))


# Indexes: what the watches delivered, kept by kopf; handlers get them as
# keyword arguments named after the functions.


@kopf.index(*VIDEOJOBS)
def videojob_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): dict(body)}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def stage_jobs(namespace: str | None, meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    owner, stage = _controller(meta), meta.get("labels", {}).get(naming.STAGE_LABEL)
    if owner is None or stage is None:
        return None
    # By the owner's uid: a new VideoJob of an old one's name must not adopt
    # the old one's Jobs while the garbage collector removes them.
    return {(namespace, owner[1]): (stage, status.observe_job(dict(body)))}


@kopf.index("", "v1", "pods", labels=OWNED)
def stage_pods(namespace: str | None, meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    job = meta.get("labels", {}).get("batch.kubernetes.io/job-name")
    if job is None:
        return None
    return {(namespace, job): (meta.get("creationTimestamp", ""), status.observe_pod(dict(body)))}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def job_owners(namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> Any:
    owner = _controller(meta)
    return {(namespace, name): owner[0]} if owner else None


@kopf.on.event(*VIDEOJOBS)
async def videojob_changed(
    type: str, namespace: str | None, name: str, uid: str, memo: Any, **indexes: Any
) -> None:
    state: State = memo["state"]
    if type == "DELETED":
        async with _lock(state, namespace, name):
            state.written.pop(uid, None)
            pending = state.ttl.pop(uid, None)
            if pending:
                pending[1].cancel()
        state.locks.pop((str(namespace), name), None)
        state.unfinished.discard((str(namespace), name))
        return
    await reconcile(str(namespace), name, state, indexes)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_changed(
    type: str, namespace: str | None, meta: kopf.Meta, memo: Any, **indexes: Any
) -> None:
    owner = _controller(meta)
    if owner is None:
        return
    if type == "DELETED":
        # The garbage collector removes a deleted VideoJob's Jobs: nothing to
        # do, unless a new VideoJob of the same name waits for them to go.
        current = list(indexes["videojob_bodies"].get((namespace, owner[0]), []))
        if not any(body["metadata"]["uid"] != owner[1] for body in current):
            return
    await reconcile(str(namespace), owner[0], memo["state"], indexes)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_changed(namespace: str | None, meta: kopf.Meta, memo: Any, **indexes: Any) -> None:
    job = meta.get("labels", {}).get("batch.kubernetes.io/job-name")
    for owner in list(indexes["job_owners"].get((namespace, job), [])):
        await reconcile(str(namespace), owner, memo["state"], indexes)


@kopf.on.startup()
async def start_resync(memo: Any, **_: Any) -> None:
    state: State = memo["state"]
    state.resync_task = asyncio.get_running_loop().create_task(_resync(state))


@kopf.on.cleanup()
async def stop_resync(memo: Any, **_: Any) -> None:
    state: State = memo["state"]
    if state.resync_task:
        state.resync_task.cancel()


async def _resync(state: State) -> None:
    """Reconcile unfinished VideoJobs every RESYNC_SECONDS. Our own loop, not a
    kopf timer: kopf puts a finalizer on objects with timers, which would be a
    write to the VideoJob's metadata and block its deletion."""
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        if state.indexes is None:
            continue
        for namespace, name in sorted(state.unfinished):
            await reconcile(namespace, name, state, state.indexes)


def _lock(state: State, namespace: str | None, name: str) -> asyncio.Lock:
    return state.locks.setdefault((str(namespace), name), asyncio.Lock())


async def reconcile(namespace: str, name: str, state: State, indexes: Mapping[str, Any]) -> None:
    """Bring one VideoJob a step closer to done and write what changed."""
    state.indexes = indexes
    async with _lock(state, namespace, name):
        # Read under the lock, on the loop thread: the newest the watch gave.
        bodies = list(indexes["videojob_bodies"].get((namespace, name), []))
        if not bodies or bodies[0]["metadata"].get("deletionTimestamp"):
            state.unfinished.discard((namespace, name))
            return
        body = bodies[0]
        uid = body["metadata"]["uid"]
        observed_jobs = {
            stage: job for stage, job in list(indexes["stage_jobs"].get((namespace, uid), []))
        }
        observed_pods = {}
        for stage, job in observed_jobs.items():
            pods = sorted(
                list(indexes["stage_pods"].get((namespace, job.name), [])),
                key=lambda pod: str(pod[0]),
            )
            if pods:
                observed_pods[stage] = pods[-1][1]
        logger = log.bind(namespace=namespace, videojob=name)
        try:
            await asyncio.to_thread(_reconcile, body, observed_jobs, observed_pods, state, logger)
        except ApiException as error:
            # The resync timer tries again; the error's body is not logged,
            # as it may repeat what the request carried.
            logger.warning("reconcile failed, will retry", status=error.status, reason=error.reason)
        written = state.written.get(uid) or body.get("status") or {}
        if written.get("phase") in FINISHED:
            state.unfinished.discard((namespace, name))
        else:
            state.unfinished.add((namespace, name))
        _schedule_ttl(body, state, logger)


def _reconcile(
    body: dict[str, Any],
    observed_jobs: dict[str, status.ObservedJob],
    observed_pods: dict[str, status.ObservedPod],
    state: State,
    logger: Any,
) -> None:
    """The blocking part of a reconcile, in a worker thread."""
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    raw_status = state.written.get(uid) or body.get("status") or {}
    try:
        previous = models.VideoJobStatus.model_validate(raw_status)
    except ValueError:
        logger.warning("unreadable status, starting from empty")
        previous = models.VideoJobStatus()
    now = _now()
    generation = meta.get("generation")

    try:
        spec = models.VideoJobSpec.model_validate(body.get("spec") or {})
        stages = pipeline.resolve(spec, state.config)
    except pipeline.InvalidSpec as error:
        _fail_invalid(body, raw_status, previous, str(error), now, state, logger)
        return
    except ValueError as error:
        _fail_invalid(
            body, raw_status, previous, f"the spec does not parse: {error}", now, state, logger
        )
        return

    plan = status.plan(spec, generation, previous, stages, observed_jobs, observed_pods, now)
    if plan.start:
        owner = jobs.Owner(name=name, namespace=namespace, uid=uid)
        for stage in plan.start:
            manifest = jobs.build_stage_job(owner, spec, stage, state.config)
            try:
                created = state.kube.create_job(manifest)
            except JobRejected as error:
                _fail_invalid(
                    body,
                    raw_status,
                    previous,
                    f"the API server rejected the {stage.name} Job: {error}",
                    now,
                    state,
                    logger,
                )
                return
            logger.info(
                "stage job created" if created else "stage job already there",
                stage=stage.name,
                job=manifest["metadata"]["name"],
            )
            observed_jobs[stage.name] = status.observe_job(created or manifest)
        # Fold the new Jobs in now, so their ADDED events find nothing to write.
        plan = status.plan(spec, generation, previous, stages, observed_jobs, observed_pods, now)
    for job_name, suspend in plan.set_suspend.items():
        state.kube.set_job_suspend(namespace, job_name, suspend)
        logger.info("stage job suspend set", job=job_name, suspend=suspend)
    _write_status(body, raw_status, plan.status, plan.events, state, logger)


def _fail_invalid(
    body: dict[str, Any],
    raw_status: dict[str, Any],
    previous: models.VideoJobStatus,
    message: str,
    now: str,
    state: State,
    logger: Any,
) -> None:
    new_status = status.invalid(previous, body["metadata"].get("generation"), message, now)
    events = [] if previous.phase == models.Phase.FAILED else [("Warning", "InvalidSpec", message)]
    _write_status(body, raw_status, new_status, events, state, logger)


def _write_status(
    body: dict[str, Any],
    raw_status: dict[str, Any],
    new_status: models.VideoJobStatus,
    events: list[tuple[str, str, str]],
    state: State,
    logger: Any,
) -> None:
    meta = body["metadata"]
    new_raw = new_status.model_dump(by_alias=True, mode="json", exclude_none=True)
    patch = merge_patch(raw_status, new_raw)
    if not patch:
        return
    state.kube.patch_status(meta["namespace"], meta["name"], patch)
    state.written[meta["uid"]] = new_raw
    logger.info("status written", phase=new_raw.get("phase"), progress=new_raw.get("progress"))
    for kind, reason, message in events:
        state.kube.post_event(body, kind, reason, message)


def _schedule_ttl(body: dict[str, Any], state: State, logger: Any) -> None:
    """Delete a finished VideoJob once its ttlSecondsAfterFinished has passed.
    One timer per VideoJob on the event loop, set again after a restart by the
    first reconcile, moved when the TTL changes, dropped when it is removed."""
    meta = body["metadata"]
    uid = meta["uid"]
    written = state.written.get(uid) or body.get("status") or {}
    ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished = written.get("completionTime") if written.get("phase") in FINISHED else None
    pending = state.ttl.get(uid)
    if pending and (ttl is None or pending[0] != ttl or not finished):
        pending[1].cancel()
        del state.ttl[uid]
        pending = None
    if ttl is None or not finished or pending:
        return
    due = datetime.datetime.fromisoformat(finished) + datetime.timedelta(seconds=int(ttl))
    delay = max(0.0, (due - datetime.datetime.now(datetime.UTC)).total_seconds())

    async def delete() -> None:
        state.ttl.pop(uid, None)
        try:
            await asyncio.to_thread(
                state.kube.delete_videojob, meta["namespace"], meta["name"], uid
            )
            logger.info("deleted after ttlSecondsAfterFinished", ttl=ttl)
        except ApiException as error:
            # The resync timer does not run for finished jobs; the next
            # event or restart schedules the deletion again.
            logger.warning("ttl deletion failed", status=error.status, reason=error.reason)

    loop = asyncio.get_running_loop()
    state.ttl[uid] = (int(ttl), loop.call_later(delay, lambda: loop.create_task(delete())))
