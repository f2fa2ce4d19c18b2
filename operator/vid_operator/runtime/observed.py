"""What the watches delivered of the stage Jobs and pods, in the shape the
reconciler asks for it.

One writer, :class:`~vid_operator.runtime.controller.Controller`, from the
handlers' events and the listing it makes at start-up; every other use reads
(:meth:`Observed.jobs_of`, :meth:`Observed.owner_of`, :meth:`Observed.newest_pod`).
Not kopf indexes: kopf holds every handler back until each listed object of
an indexed kind is indexed, waking every waiting object on each one, which is
quadratic in the Jobs and pods that exist (71 s to start with 800 of each,
``make bench``, retained-jobs). What is kept of each object is the reduction
:mod:`vid_operator.status` makes of it, never the object.

Concurrency: event loop only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vid_operator.status import ObservedJob, ObservedPod, ObservedWorkload

ObjectKey = tuple[str, str]
"""(namespace, name)."""


@dataclass(frozen=True)
class KnownPipeline:
    """A VideoPipeline as the watch last delivered it."""

    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]


class Observed:
    """Stage Jobs by their VideoJob, pods by their Job, and VideoPipelines."""

    def __init__(self) -> None:
        self._jobs: dict[ObjectKey, tuple[str, str]] = {}
        """Job -> (its VideoJob's uid, its stage)."""
        self._by_owner: dict[str, dict[str, ObservedJob]] = {}
        self._pods: dict[ObjectKey, str] = {}
        """Pod -> the name of its Job."""
        self._by_job: dict[ObjectKey, dict[str, tuple[str, ObservedPod]]] = {}
        """Job -> pod name -> (creationTimestamp, the pod)."""
        self._pipelines: dict[ObjectKey, KnownPipeline] = {}
        self._refusals: dict[ObjectKey, tuple[str, str]] = {}
        """Job -> why the Job controller cannot create its pod (its latest
        FailedCreate Event) and since when that is known, while it has none."""
        self._workloads: dict[ObjectKey, ObservedWorkload] = {}
        """Job -> its Kueue Workload."""
        self._workload_jobs: dict[ObjectKey, str] = {}
        """Workload -> the name of its Job."""

    def workload_seen(
        self, namespace: str, name: str, job_name: str, workload: ObservedWorkload
    ) -> None:
        self._workload_jobs[namespace, name] = job_name
        self._workloads[namespace, job_name] = workload

    def workload_gone(self, namespace: str, name: str) -> str | None:
        """Forget a Workload; the name of its Job, if it was known."""
        job_name = self._workload_jobs.pop((namespace, name), None)
        if job_name is None:
            return None
        known = self._workloads.get((namespace, job_name))
        if known is not None and known.name == name:  # not a successor Kueue made since
            del self._workloads[namespace, job_name]
        return job_name

    def workload(self, namespace: str, job_name: str) -> ObservedWorkload | None:
        """The Kueue Workload of a Job."""
        return self._workloads.get((namespace, job_name))

    def refusal_seen(self, namespace: str, job_name: str, message: str | None, at: str) -> None:
        """``at``: when it was read; a refusal read again keeps its first time."""
        if message is None:
            self._refusals.pop((namespace, job_name), None)
        else:
            known = self._refusals.get((namespace, job_name))
            self._refusals[namespace, job_name] = (message, known[1] if known else at)

    def refusal(self, namespace: str, job_name: str) -> tuple[str, str] | None:
        """Why the Job has no pod, and since when the operator knows it."""
        return self._refusals.get((namespace, job_name))

    def pipeline_seen(self, namespace: str, name: str, pipeline: KnownPipeline) -> None:
        self._pipelines[namespace, name] = pipeline

    def pipeline_gone(self, namespace: str, name: str) -> None:
        self._pipelines.pop((namespace, name), None)

    def pipeline(self, namespace: str, name: str) -> KnownPipeline | None:
        return self._pipelines.get((namespace, name))

    def job_seen(self, namespace: str, name: str, owner: str, stage: str, job: ObservedJob) -> None:
        self._jobs[namespace, name] = (owner, stage)
        jobs = self._by_owner.setdefault(owner, {})
        # A stage's newest Job stands for it; an earlier one may still change
        # (ended, then failed by its deadline) after its successor exists.
        if stage not in jobs or jobs[stage].name == name or jobs[stage].run <= job.run:
            jobs[stage] = job

    def job_gone(self, namespace: str, name: str) -> None:
        self._refusals.pop((namespace, name), None)
        gone = self._workloads.pop((namespace, name), None)
        if gone is not None:
            self._workload_jobs.pop((namespace, gone.name), None)
        owner, stage = self._jobs.pop((namespace, name), ("", ""))
        jobs = self._by_owner.get(owner)
        if jobs is not None and stage in jobs and jobs[stage].name == name:
            del jobs[stage]
            if not jobs:
                del self._by_owner[owner]

    def pod_seen(
        self, namespace: str, name: str, job_name: str, created: str, pod: ObservedPod
    ) -> None:
        self._pods[namespace, name] = job_name
        self._by_job.setdefault((namespace, job_name), {})[name] = (created, pod)
        self._refusals.pop((namespace, job_name), None)  # a pod was created after all

    def pod_gone(self, namespace: str, name: str) -> None:
        job_name = self._pods.pop((namespace, name), None)
        if job_name is None:
            return
        pods = self._by_job.get((namespace, job_name), {})
        pods.pop(name, None)
        if not pods:
            self._by_job.pop((namespace, job_name), None)

    def jobs_of(self, owner: str) -> dict[str, ObservedJob]:
        """Stage -> newest Job of the VideoJob with uid ``owner`` (a copy)."""
        return dict(self._by_owner.get(owner, {}))

    def owner_of(self, namespace: str, job_name: str) -> str | None:
        """The uid of the VideoJob that owns a Job."""
        owner = self._jobs.get((namespace, job_name))
        return owner[0] if owner else None

    def newest_pod(self, namespace: str, job_name: str) -> ObservedPod | None:
        """The Job's most recently created pod (the last listed of those created
        in the same second)."""
        pods = self._by_job.get((namespace, job_name))
        if not pods:
            return None
        return sorted(pods.values(), key=lambda entry: entry[0])[-1][1]
