"""Runs reconciles: where events, memory, the reconciler, timers and the API meet.

Called by :mod:`vid_operator.handlers` (one method per kind of watch event)
and by its own timers. A reconcile takes the VideoJob's lock, freezes a
:class:`~.reconciler.Snapshot` of what memory and the watch's indexes hold,
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from kubernetes.client.exceptions import ApiException

from vid_operator import status
from vid_operator.config import OperatorConfig
from vid_operator.kube import JobRejected, Kube, StatusRefused
from vid_operator.runtime import reconciler
from vid_operator.runtime.expectations import Expectations
from vid_operator.runtime.memory import Memories, VideoJobMemory, keep
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


@dataclass(frozen=True)
class Indexes:
    """Read-only views of what the watches delivered (kopf's indexes, which
    kopf alone writes), as the handlers receive them."""

    jobs: Mapping[str, Iterable[tuple[str, status.ObservedJob]]]
    """VideoJob uid -> (stage, its Job)."""
    owners: Mapping[tuple[str, str], Iterable[str]]
    """(namespace, Job name) -> the uid of the VideoJob that owns it."""
    pods: Mapping[tuple[str, str], Iterable[tuple[str, status.ObservedPod]]]
    """(namespace, Job name) -> (creationTimestamp, pod) of each of its pods."""


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
    """Apply an outcome: creates, suspend flips, failed Jobs' TTLs, the
    status, its Events. Runs
    in a worker thread; touches nothing but ``kube``."""
    logger = log.bind(namespace=snapshot.namespace, videojob=snapshot.name)
    created: list[StageJob] = []
    try:
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
            kube.patch_status(snapshot.namespace, snapshot.name, outcome.patch)
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
        return Executed(outcome, tuple(created), outcome.status)
    except ApiException as error:
        # Not the error's body: it may repeat what the request carried.
        failure = f"HTTP {error.status} {error.reason}"
    except StatusRefused as error:
        failure = str(error)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        failure = type(error).__name__  # the API server is away (restarting, unreachable)
    return Executed(outcome, tuple(created), None, failure)


class Controller:
    """The operator's runtime state and the one way to act on it."""

    def __init__(self, config: OperatorConfig, kube: Kube, clock: Clock | None = None) -> None:
        clock = clock or LoopClock()
        self._config = config
        self._kube = kube
        self._indexes: Indexes | None = None
        self._memories = Memories()
        self._expectations = Expectations(EXPECTATION_TIMEOUT)
        self._held_writes: DelayedCalls[str] = DelayedCalls(self._write_held_back, clock)
        self._ttl: DelayedCalls[str] = DelayedCalls(self._delete_expired, clock)
        self._resync = Periodic(RESYNC_SECONDS, self.resync, clock)

    def use(self, indexes: Indexes) -> None:
        """The indexes to read (kopf hands the same ones to every handler)."""
        self._indexes = indexes

    def start(self) -> None:
        self._resync.start()

    async def stop(self) -> None:
        await self._resync.stop()
        await self._held_writes.close()
        await self._ttl.close()

    def forget(self, uid: str) -> None:
        """A VideoJob is gone: the one place its memory, expectations and timers go."""
        self._memories.forget(uid)
        self._expectations.forget(uid)
        self._held_writes.cancel(uid)
        self._ttl.cancel(uid)

    async def videojob_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        uid = str(body["metadata"]["uid"])
        if event_type == "DELETED":
            self.forget(uid)
            return
        kept = keep(body)
        record = self._memories.recall(kept.namespace, kept.name, uid)
        record.videojob = kept
        written = record.written
        if (
            written is not None
            and kept.status == written
            and kept.generation == written.get("observedGeneration")
        ):
            record.written = None  # the echo of our own write: nothing new
            return
        await self.reconcile(uid)

    async def job_event(
        self, event_type: str, name: str, owner: tuple[str, str], body: Mapping[str, Any]
    ) -> None:
        """A stage Job changed; ``owner`` is its VideoJob's (name, uid)."""
        namespace = str(body["metadata"]["namespace"])
        record = self._memories.get(owner[1])
        key = ("jobs", name)
        if event_type == "DELETED":
            if record is not None:
                record.observed.pop(key, None)
            # The garbage collector removes a deleted VideoJob's Jobs: nothing
            # to do, unless a new VideoJob of that name waits for them to go.
            successor = self._memories.newest(namespace, owner[0])
            if successor is not None and successor.uid != owner[1]:
                await self.reconcile(successor.uid)
            return
        if record is None:
            return  # its VideoJob's own event (listed at start-up too) reconciles
        observed = status.observe_job(body)
        known = record.observed.get(key)
        if known == observed:
            return  # e.g. its count of ready pods moved: nothing the status shows
        if known is None and not observed.finished and not observed.suspended:
            # A new Job, running: the reconcile that created it counted it.
            record.observed[key] = observed
            return
        if await self.reconcile(owner[1]):
            record.observed[key] = observed

    async def pod_event(
        self, event_type: str, name: str, job_name: str, body: Mapping[str, Any]
    ) -> None:
        namespace = str(body["metadata"]["namespace"])
        if self._indexes is None:
            return
        observed = None if event_type == "DELETED" else status.observe_pod(body)
        key = ("pods", name)
        for uid in list(self._indexes.owners.get((namespace, job_name), ())):
            record = self._memories.get(uid)
            if record is None:
                continue
            if observed is None:
                record.observed.pop(key, None)
            else:
                known = record.observed.get(key)
                if known == observed or (known is None and observed == status.ObservedPod()):
                    # Bound, started, a finalizer gone, or new with nothing to say yet.
                    record.observed[key] = observed
                    continue
            if await self.reconcile(uid) and observed is not None:
                record.observed[key] = observed

    async def resync(self) -> None:
        """Reconcile every unfinished VideoJob, each on its own."""
        for uid in self._memories.unfinished():
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
            if self._indexes is None:
                return False
            try:
                snapshot = self._snapshot(record, self._indexes, flush)
                outcome = reconciler.reconcile(snapshot, self._config)
                if outcome.idle:
                    executed = Executed(outcome, (), None)
                else:
                    executed = await asyncio.to_thread(execute, self._kube, snapshot, outcome)
                self._remember(record, snapshot, executed)
            except Exception:
                log.exception("reconcile failed", namespace=record.namespace, videojob=record.name)
                return False
            if executed.failure:
                log.warning(
                    "reconcile failed, will retry",
                    namespace=record.namespace,
                    videojob=record.name,
                    error=executed.failure,
                )
            return executed.failure is None

    def _snapshot(self, record: VideoJobMemory, indexes: Indexes, flush: bool) -> Snapshot:
        """Read on the loop thread, under the VideoJob's lock."""
        assert record.videojob is not None
        videojob, uid = record.videojob, record.uid
        jobs = dict(indexes.jobs.get(uid, ()))
        for stage in jobs:
            self._expectations.observe(uid, stage)
        for stage, job in self._expectations.pending(uid).items():
            jobs.setdefault(stage, job)
        pods = {}
        for stage, job in jobs.items():
            found = sorted(indexes.pods.get((videojob.namespace, job.name), ()), key=_created)
            if found:
                pods[stage] = found[-1][1]
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
        )

    def _remember(self, record: VideoJobMemory, snapshot: Snapshot, executed: Executed) -> None:
        """Back on the loop: what was created and written, and the timers."""
        for job in executed.created:
            self._expectations.expect(record.uid, job.stage, job.observed)
        if executed.written is not None and record.videojob is not None:
            record.written = executed.written
            record.videojob = record.videojob.with_status(executed.written)
        if executed.failure:
            return
        outcome = executed.outcome
        if outcome.hold_back and outcome.patch:
            self._held_writes.schedule(record.uid, PROGRESS_WRITE_DELAY, tag="held")
        else:
            self._held_writes.cancel(record.uid)
        if outcome.ttl_due is None:
            self._ttl.cancel(record.uid)
        else:
            delay = (outcome.ttl_due - snapshot.now).total_seconds()
            self._ttl.schedule(record.uid, delay, tag=outcome.ttl_due)

    async def _write_held_back(self, uid: str) -> None:
        await self.reconcile(uid, flush=True)

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


def _created(pod: tuple[str, status.ObservedPod]) -> str:
    return str(pod[0])
