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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import structlog
import urllib3
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
# A status write that only reports progress (no Job started, no phase change)
# waits this long for more to report: the two middle stages often finish
# together, and one write then says both. Starts and endings are written at once.
PROGRESS_WRITE_DELAY = 0.5


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
    observed: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    """(plural, namespace, name) -> what the status needs of each Job and pod
    (:class:`status.ObservedJob`, :class:`status.ObservedPod`) as of the last
    reconcile it led to: most of their events (a pod bound, started, a ready
    count moved) change none of it, and need no reconcile. Dropped on DELETED."""
    videojobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(namespace, name) -> the newest VideoJob the watch gave (what
    :func:`_kept` keeps of it). Not a kopf index: kopf holds every handler
    back until each listed object of an indexed kind is indexed, and waking
    every waiting object on each one is quadratic in the VideoJobs kept
    (110 s of CPU to start with 10,000 finished ones)."""
    indexes: Mapping[str, Any] | None = None
    """kopf's indexes of Jobs and pods, as the handlers receive them (the same
    objects each time)."""
    resync_task: asyncio.Task[None] | None = None
    flushes: dict[tuple[str, str], asyncio.TimerHandle] = field(default_factory=dict)
    """VideoJobs with a progress-only status write held back (PROGRESS_WRITE_DELAY)."""
    background: set[asyncio.Task[bool]] = field(default_factory=set)
    created: dict[str, dict[str, tuple[status.ObservedJob, float]]] = field(default_factory=dict)
    """VideoJob uid -> stage -> (a Job this operator created that the watch
    has not delivered yet, when): a reconcile in between must not create it
    again. Forgotten after RESYNC_SECONDS, in case the Job went away unseen."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _controller(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the VideoJob that controls an object, if any."""
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == models.KIND and reference.get("controller"):
            return str(reference["name"]), str(reference["uid"])
    return None


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base. kopf deep-copies every object it receives to compare it
    with the last handled state, for change-detecting handlers (on.create,
    on.update, on.field). There are none here, only on.event and indexes, and
    the copies (of Jobs and pods with their managedFields) were a fifth of the
    operator's CPU time."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # kopf would otherwise turn its own log lines into Events: extra writes.
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = _NoDiffBase()
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


# What the reconciler reads of a VideoJob's metadata; the rest (managedFields,
# kubectl's last-applied copy of the whole object) is not kept in memory.
_KEPT_METADATA = ("name", "namespace", "uid", "generation", "deletionTimestamp")


def _kept(body: kopf.Body) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "metadata": {key: meta[key] for key in _KEPT_METADATA if key in meta},
        "spec": body.get("spec"),
        "status": body.get("status"),
    }


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def stage_jobs(namespace: str | None, name: str, meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    """Two lookups in one index (kopf calls every index function on every
    event, so one function is half the work): (namespace, VideoJob uid) ->
    (stage, ObservedJob), and ("job", namespace, Job name) -> the name of its
    VideoJob, which the Job's pods lead to."""
    owner, stage = _controller(meta), meta.get("labels", {}).get(naming.STAGE_LABEL)
    if owner is None or stage is None:
        return None
    # By the owner's uid: a new VideoJob of an old one's name must not adopt
    # the old one's Jobs while the garbage collector removes them.
    return {
        (namespace, owner[1]): (stage, status.observe_job(dict(body))),
        ("job", namespace, name): owner[0],
    }


@kopf.index("", "v1", "pods", labels=OWNED)
def stage_pods(namespace: str | None, meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    job = meta.get("labels", {}).get("batch.kubernetes.io/job-name")
    if job is None:
        return None
    return {(namespace, job): (meta.get("creationTimestamp", ""), status.observe_pod(dict(body)))}


@kopf.on.event(*VIDEOJOBS)
async def videojob_changed(
    type: str,
    namespace: str | None,
    name: str,
    uid: str,
    body: kopf.Body,
    memo: Any,
    **indexes: Any,
) -> None:
    state: State = memo["state"]
    key = (str(namespace), name)
    cached = state.videojobs.get(key)
    # Workers run per uid: a new VideoJob of this name may be cached already.
    successor_cached = cached is not None and cached["metadata"].get("uid") != uid
    if type == "DELETED":
        if not successor_cached:
            state.videojobs.pop(key, None)
        async with _lock(state, namespace, name):
            state.written.pop(uid, None)
            state.created.pop(uid, None)
            pending = state.ttl.pop(uid, None)
            if pending:
                pending[1].cancel()
        state.locks.pop(key, None)
        state.unfinished.discard(key)
        held = state.flushes.pop(key, None)
        if held:
            held.cancel()
        return
    if not (successor_cached and body["metadata"].get("deletionTimestamp")):
        state.videojobs[key] = _kept(body)
    written = state.written.get(uid)
    if (
        written is not None
        and body.get("status") == written
        and body["metadata"].get("generation") == written.get("observedGeneration")
    ):
        # The echo of our own status write: nothing new to act on, and
        # state.videojobs now holds what we wrote, so our copy can go.
        state.written.pop(uid, None)
        return
    await reconcile(str(namespace), name, state, indexes)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_changed(
    type: str,
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    body: kopf.Body,
    memo: Any,
    **indexes: Any,
) -> None:
    owner = _controller(meta)
    if owner is None:
        return
    state: State = memo["state"]
    key = ("jobs", str(namespace), name)
    observed: status.ObservedJob | None = None
    if type == "DELETED":
        state.observed.pop(key, None)
        # The garbage collector removes a deleted VideoJob's Jobs: nothing to
        # do, unless a new VideoJob of the same name waits for them to go.
        current = state.videojobs.get((str(namespace), owner[0]))
        if current is None or current["metadata"].get("uid") == owner[1]:
            return
    else:
        observed = status.observe_job(dict(body))
        known = state.observed.get(key)
        if known == observed:
            return  # e.g. its count of ready pods moved: nothing the status shows
        if known is None and not observed.finished and not observed.suspended:
            # A new Job, running: the reconcile that created it has counted it,
            # and after a restart the VideoJob's own listing event reconciles.
            state.observed[key] = observed
            return
    if await reconcile(str(namespace), owner[0], state, indexes) and observed:
        state.observed[key] = observed


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_changed(
    type: str,
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    body: kopf.Body,
    memo: Any,
    **indexes: Any,
) -> None:
    state: State = memo["state"]
    key = ("pods", str(namespace), name)
    observed: status.ObservedPod | None = None
    if type == "DELETED":
        state.observed.pop(key, None)
    else:
        observed = status.observe_pod(dict(body))
        known = state.observed.get(key)
        if known == observed or (known is None and observed == status.ObservedPod()):
            # Bound, started, a finalizer gone, or new with nothing to say yet.
            state.observed[key] = observed
            return
    job = meta.get("labels", {}).get("batch.kubernetes.io/job-name")
    owners = list(indexes["stage_jobs"].get(("job", namespace, job), []))
    reconciled = True
    for owner in owners:
        reconciled = await reconcile(str(namespace), owner, state, indexes) and reconciled
    if owners and reconciled and observed:
        state.observed[key] = observed


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


async def reconcile(
    namespace: str, name: str, state: State, indexes: Mapping[str, Any], *, flush: bool = False
) -> bool:
    """Bring one VideoJob a step closer to done and write what changed (a
    progress-only write a moment later, unless ``flush``). False when an API
    error cut it short (the resync loop tries again)."""
    state.indexes = indexes
    async with _lock(state, namespace, name):
        # Read under the lock, on the loop thread: the newest the watch gave.
        body = state.videojobs.get((namespace, name))
        if body is None or body["metadata"].get("deletionTimestamp"):
            state.unfinished.discard((namespace, name))
            return True
        uid = body["metadata"]["uid"]
        observed_jobs = {
            stage: job for stage, job in list(indexes["stage_jobs"].get((namespace, uid), []))
        }
        pending = state.created.get(uid, {})
        for stage, (job, when) in list(pending.items()):
            if stage in observed_jobs or time.monotonic() - when > RESYNC_SECONDS:
                del pending[stage]  # the watch has it now (or never will)
            else:
                observed_jobs[stage] = job
        if not pending:
            state.created.pop(uid, None)
        observed_pods = {}
        for stage, job in observed_jobs.items():
            pods = sorted(
                list(indexes["stage_pods"].get((namespace, job.name), [])),
                key=lambda pod: str(pod[0]),
            )
            if pods:
                observed_pods[stage] = pods[-1][1]
        # The status to build on, taken with the body: the echo of our last
        # write may drop our copy of it (videojob_changed) while the thread
        # runs, and the body taken here would then be older than both.
        raw_status = state.written.get(uid) or body.get("status") or {}
        logger = log.bind(namespace=namespace, videojob=name)
        completed, held_back = True, False
        try:
            held_back = await asyncio.to_thread(
                _reconcile, body, raw_status, observed_jobs, observed_pods, state, logger, flush
            )
        except ApiException as error:
            # The resync timer tries again; the error's body is not logged,
            # as it may repeat what the request carried.
            logger.warning("reconcile failed, will retry", status=error.status, reason=error.reason)
            completed = False
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # The API server is away (restarting, unreachable). Caught here,
            # or it would end the resync loop that is to retry it.
            logger.warning("reconcile failed, will retry", error=type(error).__name__)
            completed = False
        written = state.written.get(uid) or raw_status
        if written.get("phase") in FINISHED:
            state.unfinished.discard((namespace, name))
        else:
            state.unfinished.add((namespace, name))
        _schedule_ttl(body, state, logger)
        _hold_back(namespace, name, state, held_back)
        return completed


def _hold_back(namespace: str, name: str, state: State, held_back: bool) -> None:
    """Write a held-back status PROGRESS_WRITE_DELAY from now; forget the
    pending write when this reconcile wrote everything."""
    key = (namespace, name)
    if not held_back:
        pending = state.flushes.pop(key, None)
        if pending:
            pending.cancel()
        return
    if key in state.flushes:
        return
    loop = asyncio.get_running_loop()

    def flush() -> None:
        state.flushes.pop(key, None)
        if state.indexes is not None:
            task = loop.create_task(reconcile(namespace, name, state, state.indexes, flush=True))
            # The loop keeps only weak references to its tasks.
            state.background.add(task)
            task.add_done_callback(state.background.discard)

    state.flushes[key] = loop.call_later(PROGRESS_WRITE_DELAY, flush)


def _reconcile(
    body: dict[str, Any],
    raw_status: dict[str, Any],
    observed_jobs: dict[str, status.ObservedJob],
    observed_pods: dict[str, status.ObservedPod],
    state: State,
    logger: Any,
    flush: bool,
) -> bool:
    """The blocking part of a reconcile, in a worker thread. True when it
    held back a progress-only status write (see PROGRESS_WRITE_DELAY)."""
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
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
        return False
    except ValueError as error:
        _fail_invalid(
            body, raw_status, previous, f"the spec does not parse: {error}", now, state, logger
        )
        return False

    plan = status.plan(spec, generation, previous, stages, observed_jobs, observed_pods, now)
    started = bool(plan.start)
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
                return False
            logger.info(
                "stage job created" if created else "stage job already there",
                stage=stage.name,
                job=manifest["metadata"]["name"],
            )
            observed_jobs[stage.name] = status.observe_job(created or manifest)
            state.created.setdefault(uid, {})[stage.name] = (
                observed_jobs[stage.name],
                time.monotonic(),
            )
        # Fold the new Jobs in now, so their ADDED events find nothing to write.
        plan = status.plan(spec, generation, previous, stages, observed_jobs, observed_pods, now)
    for job_name, suspend in plan.set_suspend.items():
        state.kube.set_job_suspend(namespace, job_name, suspend)
        logger.info("stage job suspend set", job=job_name, suspend=suspend)
    progress_only = (
        not flush
        and not started
        and not plan.set_suspend
        and not plan.events
        and bool(raw_status)
        and plan.status.phase == previous.phase
        and plan.status.phase not in FINISHED
    )
    return _write_status(
        body, raw_status, plan.status, plan.events, state, logger, hold_back=progress_only
    )


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
    hold_back: bool = False,
) -> bool:
    """Patch what changed; with ``hold_back``, only say whether there is
    something to write (the caller writes it a moment later)."""
    meta = body["metadata"]
    new_raw = new_status.model_dump(by_alias=True, mode="json", exclude_none=True)
    patch = merge_patch(raw_status, new_raw)
    if not patch:
        return False
    if hold_back:
        return True
    state.kube.patch_status(meta["namespace"], meta["name"], patch)
    state.written[meta["uid"]] = new_raw
    logger.info("status written", phase=new_raw.get("phase"), progress=new_raw.get("progress"))
    for kind, reason, message in events:
        state.kube.post_event(body, kind, reason, message)
    return False


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
        except (urllib3.exceptions.HTTPError, OSError) as error:
            logger.warning("ttl deletion failed", error=type(error).__name__)

    loop = asyncio.get_running_loop()
    state.ttl[uid] = (int(ttl), loop.call_later(delay, lambda: loop.create_task(delete())))
