"""Runs reconciles: where events, memory, the reconciler, timers and the API meet.

Called by :mod:`vid_operator.handlers` (one method per kind of watch event,
and :meth:`Controller.load` at start-up) and by its own timers. A reconcile
takes the VideoJob's lock, freezes a :class:`~.reconciler.Snapshot` of what
memory and the watches' views hold,
asks :func:`.reconciler.reconcile` for an outcome, has :func:`execute` apply
it through :class:`~vid_operator.kube.Kube` in a worker thread (the client
blocks), then, back on the loop, remembers what was created and written and
sets the VideoJob's timers from the outcome.

Concurrency: every method runs on kopf's event loop; :func:`execute` runs in
a worker thread and touches nothing but the API client and its arguments.
Per VideoJob, reconciles are serialised by the memory record's lock; across
VideoJobs they overlap. A reconcile never raises: an API error or a fault in
one VideoJob is logged, and the resync (every ``RESYNC_SECONDS``, each
VideoJob guarded on its own) tries it again, so no VideoJob stops the loops
that serve the others.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from kubernetes.client.exceptions import ApiException

from vid_operator import contract, jobs, metrics, naming, pipeline, queueing, status
from vid_operator.api import models, pipelines
from vid_operator.config import OperatorConfig
from vid_operator.kube import JobRejected, Kube, StatusRefused
from vid_operator.runtime import reconciler
from vid_operator.runtime.expectations import Expectations
from vid_operator.runtime.memory import Memories, VideoJobMemory, keep, wanted_pipeline
from vid_operator.runtime.observed import KnownPipeline, Observed
from vid_operator.runtime.queue import Queue, Starts
from vid_operator.runtime.reconciler import Outcome, Snapshot, StageJob
from vid_operator.runtime.timers import Clock, DelayedCalls, LoopClock, Periodic

log = structlog.get_logger("vid_operator")

RESYNC_SECONDS = 30.0
"""How often unfinished VideoJobs are reconciled without an event: the safety
net for a reconcile lost to an API error (kopf never retries event handlers).
It reads only what the watches gave; a no-op writes nothing."""
PROGRESS_WRITE_DELAY = 0.5
"""How long a progress-only status write waits for more to report: the two
middle stages often finish together, and one write then says both. Starts
and endings are written at once."""
EXPECTATION_TIMEOUT = RESYNC_SECONDS
"""How long a created Job that the watch has not shown counts as existing."""
QUEUE_POSITIONS_KEPT_CURRENT = 20
"""Queued VideoJobs up to this position have it written as soon as it
moves; the others at the resync."""
POD_CREATION_GRACE = 10.0
"""How long a running stage Job may have no pod before the resync reads why
(its FailedCreate Events): one read per such Job per resync, none for the
Jobs whose pods exist."""


@dataclass(frozen=True)
class Executed:
    """What :func:`execute` did."""

    outcome: Outcome
    """The outcome applied: a refusal by the API server may have replaced the first."""
    created: tuple[StageJob, ...]
    written: dict[str, Any] | None
    failure: str | None = None
    """Why it stopped short (the resync tries again)."""


def execute(kube: Kube, snapshot: Snapshot, outcome: Outcome) -> Executed:
    """Apply an outcome: Jobs ended, created, suspended or resumed, failed
    Jobs' TTLs, the status, its Events. Runs in a worker thread; touches
    nothing but ``kube``."""
    logger = log.bind(namespace=snapshot.namespace, videojob=snapshot.name)
    created: list[StageJob] = []
    written: dict[str, Any] | None = None
    try:
        # Ends first: a stage's next Job (after an OOM kill) must never run
        # beside the one it replaces, should the operator stop in between.
        for job_name, why in outcome.end.items():
            kube.end_job(snapshot.namespace, job_name, why)
            logger.info("stage job ended", job=job_name, reason=why.partition(":")[0])
        for job in outcome.create:
            try:
                answer = kube.create_job(job.manifest)
            except JobRejected as error:
                outcome = reconciler.job_refused(snapshot, job.stage, str(error))
                break
            created.append(job)
            logger.info(
                "stage job created" if answer else "stage job already there",
                stage=job.stage,
                job=job.observed.name,
            )
        for job_name, suspend in outcome.suspend.items():
            kube.set_job_suspend(snapshot.namespace, job_name, suspend)
            logger.info("stage job suspend set", job=job_name, suspend=suspend)
        for workload, active in outcome.activate.items():
            kube.set_workload_active(snapshot.namespace, workload, active)
            logger.info("kueue workload active set", workload=workload, active=active)
        for job_name, ttl in outcome.keep_failed.items():
            kube.set_job_ttl(snapshot.namespace, job_name, ttl)
            logger.info("failed stage job kept longer", job=job_name, ttl=ttl)
        if not outcome.patch or outcome.hold_back:
            return Executed(outcome, tuple(created), None)
        try:
            kube.patch_status(snapshot.namespace, snapshot.name, outcome.patch)
        except StatusRefused as error:
            logger.warning("status refused, writing it without the stage outputs")
            outcome = reconciler.status_refused(snapshot, outcome, str(error))
            if outcome.patch:
                kube.patch_status(snapshot.namespace, snapshot.name, outcome.patch)
        written = outcome.status
        logger.info(
            "status written",
            phase=outcome.status.get("phase"),
            progress=outcome.status.get("progress"),
        )
        involved = {
            "metadata": {
                "namespace": snapshot.namespace,
                "name": snapshot.name,
                "uid": snapshot.uid,
            }
        }
        for kind, reason, message in outcome.events:
            kube.post_event(involved, kind, reason, message)
        return Executed(outcome, tuple(created), written)
    except ApiException as error:
        # Not the error's body: it may repeat what the request carried.
        failure = f"HTTP {error.status} {error.reason}"
    except StatusRefused as error:
        failure = str(error)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        failure = type(error).__name__  # the API server is away (restarting, unreachable)
    # What was created and written stays known: a retry must not write it again.
    return Executed(outcome, tuple(created), written, failure)


class Controller:
    """The operator's runtime state and the one way to act on it."""

    def __init__(self, config: OperatorConfig, kube: Kube, clock: Clock | None = None) -> None:
        clock = clock or LoopClock()
        self._config = config
        self._kube = kube
        self._observed = Observed()
        self._memories = Memories()
        self._expectations = Expectations(EXPECTATION_TIMEOUT)
        self._held_writes: DelayedCalls[str] = DelayedCalls(self._write_held_back, clock)
        self._ttl: DelayedCalls[str] = DelayedCalls(self._delete_expired, clock)
        self._rechecks: DelayedCalls[str] = DelayedCalls(self._recheck, clock)
        self._finalizers_owed: dict[str, Mapping[str, Any]] = {}
        """VideoJob uid -> its newest body, while adding or removing the
        artifacts finalizer failed (the resync tries again)."""
        self._resync = Periodic(RESYNC_SECONDS, self.resync, clock)
        self._queue = Queue(
            config.queueing,
            self._memories,
            self._observed,
            self._stage_jobs,
            Starts(EXPECTATION_TIMEOUT, time.monotonic),
        )
        self._wake_queue: DelayedCalls[str] = DelayedCalls(self._start_next, clock)

    async def load(self, selector: str) -> None:
        """List the stage Jobs and pods that exist (once, at start-up, before
        any watch event is handled), so that no VideoJob is reconciled before
        its Jobs are known: it would create them again (409) and count Jobs
        that have finished as running."""
        namespaces: list[str | None] = list(self._config.watch_namespaces) or [None]

        def listing() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            jobs: list[dict[str, Any]] = []
            pods: list[dict[str, Any]] = []
            for namespace in namespaces:
                jobs += self._kube.list_owned("batch/v1", "jobs", namespace, selector)
                pods += self._kube.list_owned("v1", "pods", namespace, selector)
            return jobs, pods

        def listing_pipelines() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for namespace in namespaces:
                found += self._kube.list_owned(
                    f"{models.GROUP}/{models.VERSION}", pipelines.PLURAL, namespace, ""
                )
            return found

        def listing_queued() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            videojobs: list[dict[str, Any]] = []
            workloads: list[dict[str, Any]] = []
            for namespace in namespaces:
                if self._queue.enabled:
                    videojobs += self._kube.list_owned(
                        f"{models.GROUP}/{models.VERSION}", models.PLURAL, namespace, ""
                    )
                if self._config.queueing.kueue.enabled:
                    kueue = f"{queueing.KUEUE_GROUP}/{queueing.KUEUE_VERSION}"
                    workloads += self._kube.list_owned(kueue, "workloads", namespace, "")
            return videojobs, workloads

        jobs, pods = await asyncio.to_thread(listing)
        for job in jobs:
            self._see_job(job)
        for pod in pods:
            self._see_pod(pod)
        # Known before the first VideoJob event, so none waits for a
        # VideoPipeline that exists.
        found = await asyncio.to_thread(listing_pipelines)
        for body in found:
            self._see_pipeline(body)
        # Every VideoJob that holds a slot of the cap, and every Workload,
        # known before the first reconcile: none may start in a slot taken.
        videojobs, workloads = await asyncio.to_thread(listing_queued)
        for body in videojobs:
            kept = keep(body)
            record = self._memories.recall(kept.namespace, kept.name, str(body["metadata"]["uid"]))
            record.videojob = kept
        for body in workloads:
            self._see_workload(body)
        log.info(
            "stage jobs, pods and pipelines listed",
            jobs=len(jobs),
            pods=len(pods),
            pipelines=len(found),
        )

    def start(self) -> None:
        self._resync.start()
        metrics.count_videojobs_with(self._memories.count_by_phase)

    async def stop(self) -> None:
        metrics.count_videojobs_with(None)
        await self._resync.stop()
        await self._held_writes.close()
        await self._wake_queue.close()
        await self._ttl.close()
        await self._rechecks.close()

    def forget(self, uid: str) -> None:
        """A VideoJob is gone: the one place its memory, expectations and timers go."""
        self._memories.forget(uid)
        self._expectations.forget(uid)
        self._held_writes.cancel(uid)
        self._ttl.cancel(uid)
        self._rechecks.cancel(uid)
        self._finalizers_owed.pop(uid, None)
        self._queue.forget(uid)
        self._queue_changed()

    async def videojob_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        metrics.watch_event(models.PLURAL, event_type)
        uid = str(body["metadata"]["uid"])
        if event_type == "DELETED":
            self.forget(uid)
            return
        kept = keep(body)
        record = self._memories.recall(kept.namespace, kept.name, uid)
        record.videojob = kept
        self._queue_changed()
        await self._mind_artifacts(body)
        written = record.written
        if (
            written is not None
            and kept.status == written
            and kept.generation == written.get("observedGeneration")
        ):
            record.written = None  # the echo of our own write: nothing new
            return
        await self.reconcile(uid)

    async def job_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A stage Job changed."""
        metrics.watch_event("jobs", event_type)
        meta = body["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        if event_type == "DELETED":
            controlling = _controlling(meta)
            self._observed.job_gone(namespace, name)
            self._queue_changed()
            if controlling is None:
                return
            owner_name, owner = controlling
            self._forget_job(owner, name)
            # The garbage collector removes a deleted VideoJob's Jobs: nothing
            # to do, unless a new VideoJob of that name waits for them to go.
            successor = self._memories.newest(namespace, owner_name)
            if successor is not None and successor.uid != owner:
                await self.reconcile(successor.uid)
            return
        seen = self._see_job(body)
        if seen is None:
            return
        self._queue_changed()
        owner, observed = seen
        await self._stages_moved(owner)
        record = self._memories.get(owner)
        if record is None:
            return  # its VideoJob's own event (listed at start-up too) reconciles
        key = ("jobs", name)
        known = record.observed.get(key)
        if known == observed:
            return  # e.g. its count of ready pods moved: nothing the status shows
        if known is None and not observed.finished and not observed.suspended:
            # A new Job, running: the reconcile that created it counted it.
            record.observed[key] = observed
            return
        if await self.reconcile(owner):
            record.observed[key] = observed

    async def pod_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A stage pod changed."""
        metrics.watch_event("pods", event_type)
        meta = body["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        job_name = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
        if job_name is None:
            return
        if event_type == "DELETED":
            self._observed.pod_gone(namespace, name)
            observed = None
        else:
            observed = self._see_pod(body)
        owner = self._observed.owner_of(namespace, job_name)
        await self._stages_moved(owner)
        record = self._memories.get(owner) if owner else None
        if record is None:
            return
        key = ("pods", job_name, name)
        if observed is None:
            record.observed.pop(key, None)
        else:
            known = record.observed.get(key)
            if known == observed or (known is None and observed == status.ObservedPod()):
                # Bound, started, a finalizer gone, or new with nothing to say yet.
                record.observed[key] = observed
                return
        if await self.reconcile(record.uid) and observed is not None:
            record.observed[key] = observed

    async def pipeline_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A VideoPipeline changed: its status, and the VideoJobs that wait for it.
        VideoJobs that started on it run the copy in their status, so nothing
        else changes for them."""
        metrics.watch_event(pipelines.PLURAL, event_type)
        meta = body["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        if event_type == "DELETED":
            self._observed.pipeline_gone(namespace, name)
            return
        known = self._see_pipeline(body)
        wanted = reconciler.pipeline_status(known, datetime.datetime.now(datetime.UTC))
        if wanted is not None:
            try:
                await asyncio.to_thread(self._kube.patch_pipeline_status, namespace, name, wanted)
            except (ApiException, StatusRefused, urllib3.exceptions.HTTPError, OSError) as error:
                # Its next event, or the operator's restart, writes it again.
                log.warning(
                    "pipeline status not written",
                    namespace=namespace,
                    pipeline=name,
                    error=type(error).__name__,
                )
        self._queue_changed()  # VideoJobs that waited for it now wait for a slot
        for uid in self._memories.waiting_for(namespace, name):
            await self.reconcile(uid)

    async def workload_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        """A Kueue Workload changed: admitted, waiting (and why), evicted."""
        metrics.watch_event("workloads", event_type)
        meta = body["metadata"]
        namespace = str(meta["namespace"])
        if event_type == "DELETED":
            job_name = self._observed.workload_gone(namespace, str(meta["name"]))
        else:
            job_name = self._see_workload(body)
        owner = self._observed.owner_of(namespace, job_name) if job_name else None
        record = self._memories.get(owner) if owner else None
        if job_name is None or record is None:
            return
        self._queue_changed()
        key = ("workloads", job_name)
        observed = self._observed.workload(namespace, job_name)
        if record.observed.get(key) == observed:
            return
        if await self.reconcile(record.uid):
            record.observed[key] = observed

    def _see_workload(self, body: Mapping[str, Any]) -> str | None:
        """Record a Workload of a Job; the Job's name (None: not a Job's)."""
        meta = body["metadata"]
        job_name = next(
            (
                str(reference["name"])
                for reference in meta.get("ownerReferences") or []
                if reference.get("kind") == "Job" and reference.get("controller")
            ),
            None,
        )
        # Kept whether or not the Job is known yet: Kueue may admit it, and
        # write nothing more until it ends, before the Job's own event comes.
        if job_name is not None:
            self._observed.workload_seen(
                str(meta["namespace"]), str(meta["name"]), job_name, status.observe_workload(body)
            )
        return job_name

    def _queue_changed(self) -> None:
        """A slot may have freed, or a VideoJob come to wait: line up again
        and start who may start (once, however many changes come together)."""
        self._queue.changed()
        if self._queue.enabled:
            self._wake_queue.schedule("queue", 0.0)

    async def _start_next(self, _: str) -> None:
        """Start who may start, then write the positions that moved near the
        head of the queue; those further back wait for the resync (each is
        one status write, and a queue of thousands moves at every start)."""
        for uid in [*self._queue.next_up(), *self._queue.moved(QUEUE_POSITIONS_KEPT_CURRENT)]:
            record = self._memories.get(uid)
            if record is not None and not record.lock.locked():
                await self.reconcile(uid)

    async def _read_refusals(self) -> None:
        """The Job controller reports a pod it cannot create only in Events:
        read them for each running stage Job without a pod, past a grace."""
        now = datetime.datetime.now(datetime.UTC)
        podless: list[tuple[str, str]] = []
        for uid in self._memories.unfinished():
            record = self._memories.get(uid)
            if record is None:
                continue
            for job in self._observed.jobs_of(uid).values():
                age = now - datetime.datetime.fromisoformat(job.created or now.isoformat())
                if (
                    not job.finished
                    and not job.suspended
                    and age.total_seconds() > POD_CREATION_GRACE
                    and self._observed.newest_pod(record.namespace, job.name) is None
                ):
                    podless.append((record.namespace, job.name))
        if not podless:
            return

        def read() -> list[tuple[str, str, str | None]]:
            return [(ns, job, self._kube.pod_creation_refusal(ns, job)) for ns, job in podless]

        try:
            found = await asyncio.to_thread(read)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("pod creation refusals not read", error=type(error).__name__)
            return
        read_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for namespace, job_name, message in found:
            if self._observed.newest_pod(namespace, job_name) is None:
                self._observed.refusal_seen(namespace, job_name, message, read_at)

    async def _mind_artifacts(self, body: Mapping[str, Any]) -> None:
        """artifactRetention: a VideoJob gets the finalizer that makes its
        deletion wait for the operator (policy delete). A deleted one that
        carries it has its stage Jobs stopped, and once their pods are gone
        (none may write after the cleanup) gets its cleanup Job, then loses
        the finalizer, whatever the policy says now: the finalizer is the
        promise made when it was created. What cannot be done yet waits in
        ``_finalizers_owed`` for its stage pods' events or the resync."""
        meta = body["metadata"]
        uid, finalizers = str(meta["uid"]), list(meta.get("finalizers") or [])
        namespace, name = str(meta["namespace"]), str(meta["name"])
        ours = naming.ARTIFACTS_FINALIZER in finalizers
        deleting = bool(meta.get("deletionTimestamp"))
        logger = log.bind(namespace=namespace, videojob=name)
        if deleting and ours:
            record = self._memories.get(uid)
            if record is not None:
                # A reconcile under way (it began before the deletion) would
                # resume what is stopped here; the ones after it do nothing.
                async with record.lock:
                    pass
            stage_jobs = list(self._stage_jobs(uid).values())
            running = [j for j in stage_jobs if not (j.finished or j.suspended or j.ended)]
            busy = running or any(
                (pod := self._observed.newest_pod(namespace, j.name)) and not pod.finished
                for j in stage_jobs
            )
            others = [f for f in finalizers if f != naming.ARTIFACTS_FINALIZER]

            def work() -> None:
                for job in running:
                    if job.queue_name is None:
                        self._kube.set_job_suspend(namespace, job.name, True)
                        logger.info("stage job of a deleted videojob suspended", job=job.name)
                    else:
                        # Kueue would resume it: ended for good instead.
                        why = "VideoJobDeleted: its VideoJob is being deleted"
                        self._kube.end_job(namespace, job.name, why)
                        logger.info("stage job of a deleted videojob ended", job=job.name)
                if busy:
                    return
                self._clean_up_after(body)
                self._kube.set_videojob_finalizers(
                    namespace, name, others, str(meta["resourceVersion"])
                )

        elif not (deleting or ours) and self._config.artifact_retention.policy == "delete":
            busy = False

            def work() -> None:
                self._kube.set_videojob_finalizers(
                    namespace,
                    name,
                    [*finalizers, naming.ARTIFACTS_FINALIZER],
                    str(meta["resourceVersion"]),
                )

        else:
            self._finalizers_owed.pop(uid, None)
            return
        try:
            await asyncio.to_thread(work)
        except Exception as error:
            # Logged, and the resync tries again: it must not end in kopf,
            # which retries no event handler. A 409 means a newer version
            # exists, and its event brings it here.
            logger.warning(
                "artifacts finalizer not handled, will retry",
                error=getattr(error, "status", None) or type(error).__name__,
            )
            self._finalizers_owed[uid] = body
            return
        if busy:
            self._finalizers_owed[uid] = body  # until its stage pods are gone
        else:
            self._finalizers_owed.pop(uid, None)

    async def _stages_moved(self, owner: str | None) -> None:
        """A stage Job or pod of ``owner`` changed: a deleted VideoJob may
        have been waiting for its stages to stop before its cleanup."""
        if owner in self._finalizers_owed:
            await self._mind_artifacts(self._finalizers_owed[owner])

    def _clean_up_after(self, body: Mapping[str, Any]) -> None:
        """Create the Job that deletes a deleted VideoJob's artifacts, if it
        may have any: it started, and in a bucket this operator writes to.
        A Job the API server refuses is logged, not retried: the same Job
        would be refused again, and the VideoJob must still go. Runs in a
        worker thread."""
        meta = body["metadata"]
        logger = log.bind(namespace=meta["namespace"], videojob=meta["name"])
        try:
            spec = models.VideoJobSpec.model_validate(body.get("spec") or {})
            pipeline.check_bucket(spec, self._config)
        except ValueError:
            logger.info("no artifacts to delete: its spec never ran")
            return
        if not (body.get("status") or {}).get("startTime"):
            logger.info("no artifacts to delete: it never started")
            return
        owner = jobs.Owner(
            name=str(meta["name"]), namespace=str(meta["namespace"]), uid=str(meta["uid"])
        )
        manifest = jobs.build_cleanup_job(owner, spec, self._config)
        try:
            created = self._kube.create_job(manifest)
        except JobRejected as error:
            logger.error("artifacts cleanup job refused; its artifacts stay", error=str(error))
            return
        logger.info(
            "artifacts cleanup job created" if created else "artifacts cleanup job already there",
            job=manifest["metadata"]["name"],
        )

    def _see_pipeline(self, body: Mapping[str, Any]) -> KnownPipeline:
        meta = body["metadata"]
        known = KnownPipeline(
            generation=meta.get("generation"),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
        )
        self._observed.pipeline_seen(str(meta["namespace"]), str(meta["name"]), known)
        return known

    async def resync(self) -> None:
        """Reconcile every unfinished VideoJob, each on its own; one whose
        reconcile is under way already is not waited for. First, why the
        stage Jobs that have had no pod for a while have none, and the
        artifacts finalizers not yet added or removed."""
        self._queue_changed()  # starts that never came, expectations expired
        await self._read_refusals()
        for body in list(self._finalizers_owed.values()):
            await self._mind_artifacts(body)
        for uid in self._memories.unfinished():
            record = self._memories.get(uid)
            if record is not None and not record.lock.locked():
                await self.reconcile(uid)

    async def reconcile(self, uid: str, *, flush: bool = False) -> bool:
        """One step for one VideoJob. False when it stopped short (logged;
        the resync tries again). Never raises."""
        record = self._memories.get(uid)
        if record is None:
            return True
        async with record.lock:
            if record.forgotten or record.videojob is None or record.videojob.deleting:
                return True
            started = time.perf_counter()
            try:
                snapshot = self._snapshot(record, flush)
                outcome = reconciler.reconcile(snapshot, self._config)
                if outcome.starts:
                    # In the loop step that read its turn: no other reconcile
                    # can have taken the slot in between.
                    self._queue.starting(uid)
                if outcome.idle:
                    executed = Executed(outcome, (), None)
                else:
                    executed = await asyncio.to_thread(execute, self._kube, snapshot, outcome)
                self._remember(record, snapshot, executed)
            except Exception:
                log.exception("reconcile failed", namespace=record.namespace, videojob=record.name)
                metrics.reconciled(time.perf_counter() - started, "internal")
                return False
            metrics.reconciled(time.perf_counter() - started, "api" if executed.failure else None)
            if executed.failure:
                log.warning(
                    "reconcile failed, will retry",
                    namespace=record.namespace,
                    videojob=record.name,
                    error=executed.failure,
                )
            return executed.failure is None

    def _see_job(self, body: Mapping[str, Any]) -> tuple[str, status.ObservedJob] | None:
        """Record a Job in the views; its owner's uid and what the status needs of it."""
        meta = body["metadata"]
        controlling = _controlling(meta)
        stage = (meta.get("labels") or {}).get(naming.STAGE_LABEL)
        if controlling is None or stage is None:
            return None
        owner = controlling[1]
        observed = status.observe_job(body)
        self._observed.job_seen(str(meta["namespace"]), str(meta["name"]), owner, stage, observed)
        return owner, observed

    def _see_pod(self, body: Mapping[str, Any]) -> status.ObservedPod | None:
        meta = body["metadata"]
        job_name = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
        if job_name is None:
            return None
        observed = status.observe_pod(body)
        self._observed.pod_seen(
            str(meta["namespace"]),
            str(meta["name"]),
            job_name,
            str(meta.get("creationTimestamp") or ""),
            observed,
        )
        return observed

    def _forget_job(self, owner: str, job_name: str) -> None:
        """A Job is gone: its own and its pods' entries in its VideoJob's record."""
        record = self._memories.get(owner)
        if record is None:
            return
        for key in [k for k in record.observed if k[1] == job_name]:
            del record.observed[key]

    def _stage_jobs(self, uid: str) -> dict[str, status.ObservedJob]:
        """Stage -> the VideoJob's newest Job of it, those this operator
        created and the watch has not shown yet included."""
        jobs = self._observed.jobs_of(uid)
        for stage, job in jobs.items():
            self._expectations.observe(uid, stage, job.run)
        for stage, job in self._expectations.pending(uid).items():
            if stage not in jobs or jobs[stage].run < job.run:
                jobs[stage] = job
        return jobs

    def _snapshot(self, record: VideoJobMemory, flush: bool) -> Snapshot:
        """Read on the loop thread, under the VideoJob's lock."""
        assert record.videojob is not None
        videojob, uid = record.videojob, record.uid
        jobs = self._stage_jobs(uid)
        pods = {}
        for stage, job in jobs.items():
            pod = self._observed.newest_pod(videojob.namespace, job.name)
            if pod is None and (refused := self._observed.refusal(videojob.namespace, job.name)):
                pod = status.refused_pod(*refused)
            if pod is not None:
                pods[stage] = pod
        workloads = {
            stage: workload
            for stage, job in jobs.items()
            if job.queue_name
            and (workload := self._observed.workload(videojob.namespace, job.name)) is not None
        }
        return Snapshot(
            namespace=videojob.namespace,
            name=videojob.name,
            uid=uid,
            generation=videojob.generation,
            spec=videojob.spec,
            ttl_seconds_after_finished=videojob.ttl_seconds_after_finished,
            status=record.status,
            jobs=jobs,
            pods=pods,
            now=datetime.datetime.now(datetime.UTC),
            flush=flush,
            pipeline=self._named_pipeline(videojob.namespace, videojob.spec, record.status),
            workloads=workloads,
            turn=self._queue.turn(uid),
        )

    def _named_pipeline(
        self, namespace: str, spec: Mapping[str, Any] | None, kept: Mapping[str, Any]
    ) -> KnownPipeline | None:
        """The VideoPipeline a VideoJob names, while it has no copy of its own."""
        name = wanted_pipeline(spec, kept)
        return None if name is None else self._observed.pipeline(namespace, name)

    def _remember(self, record: VideoJobMemory, snapshot: Snapshot, executed: Executed) -> None:
        """Back on the loop: what was created and written, and the timers.
        Nothing for a VideoJob deleted while its reconcile ran, but the
        metrics: what was written was written."""
        if executed.written is not None:
            metrics.status_written(
                snapshot.status, executed.written, snapshot.now, record.ended_jobs_counted
            )
        if record.forgotten:
            return
        for job in executed.created:
            self._expectations.expect(record.uid, job.stage, job.observed)
        if executed.written is not None and record.videojob is not None:
            record.written = executed.written
            record.videojob = record.videojob.with_status(executed.written)
            if executed.written.get("phase") != snapshot.status.get("phase"):
                self._queue_changed()
        if executed.failure:
            return
        outcome = executed.outcome
        if outcome.hold_back and outcome.patch:
            if not outcome.counters_only:
                self._held_writes.schedule(record.uid, PROGRESS_WRITE_DELAY, tag="held")
            elif not self._held_writes.pending(record.uid):
                # Progress counters alone: one write per stage every few
                # seconds at most, however many items finish in between.
                self._held_writes.schedule(
                    record.uid, contract.PROGRESS_MIN_INTERVAL_SECONDS, tag="counters"
                )
        else:
            self._held_writes.cancel(record.uid)
        if outcome.ttl_due is None:
            self._ttl.cancel(record.uid)
        else:
            delay = (outcome.ttl_due - snapshot.now).total_seconds()
            self._ttl.schedule(record.uid, delay, tag=outcome.ttl_due)
        if outcome.recheck_at is None:
            self._rechecks.cancel(record.uid)
        else:
            delay = (outcome.recheck_at - snapshot.now).total_seconds()
            self._rechecks.schedule(record.uid, delay, tag=outcome.recheck_at)

    async def _write_held_back(self, uid: str) -> None:
        await self.reconcile(uid, flush=True)

    async def _recheck(self, uid: str) -> None:
        await self.reconcile(uid)

    async def _delete_expired(self, uid: str) -> None:
        """ttlSecondsAfterFinished has passed: delete the VideoJob (if it is
        still this one: a uid precondition)."""
        record = self._memories.get(uid)
        if record is None:
            return
        logger = log.bind(namespace=record.namespace, videojob=record.name)
        try:
            await asyncio.to_thread(self._kube.delete_videojob, record.namespace, record.name, uid)
            logger.info("deleted after ttlSecondsAfterFinished")
        except ApiException as error:
            # The next event or restart schedules the deletion again.
            logger.warning("ttl deletion failed", status=error.status, reason=error.reason)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            logger.warning("ttl deletion failed", error=type(error).__name__)


JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _controlling(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the VideoJob that controls an object, if any. Owners are
    told apart by uid: a new VideoJob of an old one's name must not adopt the
    old one's Jobs while the garbage collector removes them."""
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == models.KIND and reference.get("controller"):
            return str(reference["name"]), str(reference["uid"])
    return None
