"""What the operator remembers of each VideoJob between events.

One :class:`VideoJobMemory` per VideoJob, by uid, made on first sight by
:meth:`Memories.recall` and dropped in one place, :meth:`Memories.forget`
(the controller's ``forget`` also cancels the VideoJob's timers and
expectations there). A record keeps only what the reconciler needs
(:func:`keep`): a few metadata fields, the spec while the VideoJob runs
(never once it has finished: a finished VideoJob's status is final, so its
memory no longer grows with the size of its spec), the status, the last status
this operator wrote (until the watch echoes it), and what the status needs of
each Job and pod as of the last reconcile they led to.

Concurrency: records are read and changed on the event loop thread only, by
the controller (save :meth:`Memories.count_by_phase`, which the metrics
endpoint's thread calls and which only reads); worker threads get frozen
snapshots, never a record. A
record's ``lock`` serialises that VideoJob's reconciles. A record that is
forgotten while a reconcile waits for its lock is marked ``forgotten``, and the
waiter then does nothing: a VideoJob that comes back under the same name has
another uid and so another record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vid_operator.api.models import FINISHED_PHASES, Phase


@dataclass(frozen=True)
class KeptVideoJob:
    """What is kept of a VideoJob as the watch gave it (see :func:`keep`)."""

    namespace: str
    name: str
    generation: int | None
    deleting: bool
    created: str
    """Its creationTimestamp: its place in the operator's queue."""
    spec: Mapping[str, Any] | None
    """None once the VideoJob has finished."""
    ttl_seconds_after_finished: int | None
    status: Mapping[str, Any]

    def with_status(self, status: Mapping[str, Any]) -> KeptVideoJob:
        """This VideoJob with ``status``; without its spec if that status is
        final (a Failed one whose spec.retry is raised is not: it runs again)."""
        final = status.get("phase") in FINISHED_PHASES and not retry_wanted(self.spec, status)
        return replace(self, status=status, spec=None if final else self.spec)


def retry_wanted(spec: Mapping[str, Any] | None, status: Mapping[str, Any]) -> bool:
    """A Failed VideoJob's spec.retry is above the one it last acted on."""
    if spec is None or status.get("phase") != "Failed":
        return False
    retry, done = spec.get("retry", 0), status.get("retries", 0)
    return isinstance(retry, int) and isinstance(done, int) and retry > done


def keep(body: Mapping[str, Any]) -> KeptVideoJob:
    """What the reconciler needs of a VideoJob body: managedFields, kubectl's
    copy of the last applied object and the rest of the metadata stay out."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    kept = KeptVideoJob(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        generation=meta.get("generation"),
        deleting=bool(meta.get("deletionTimestamp")),
        created=str(meta.get("creationTimestamp") or ""),
        spec=spec,
        ttl_seconds_after_finished=spec.get("ttlSecondsAfterFinished"),
        status=body.get("status") or {},
    )
    return kept.with_status(kept.status)


@dataclass(eq=False)
class VideoJobMemory:
    """One VideoJob's record (see the module docstring for who changes it)."""

    namespace: str
    name: str
    uid: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    videojob: KeptVideoJob | None = None
    """The newest the watch gave, with the status this operator wrote since."""
    written: Mapping[str, Any] | None = None
    """The last status written, until the watch delivers it: a VideoJob event
    that comes before the echo of a write carries an older status."""
    observed: dict[tuple[str, ...], object] = field(default_factory=dict)
    """("jobs", Job name) or ("pods", Job name, pod name) -> what the status
    needs of that object
    (:class:`~vid_operator.status.ObservedJob`, ``ObservedPod``) as of the last
    reconcile it led to: most events (a pod bound, started, a ready count
    moved) change none of it and need no reconcile."""
    ended_jobs_counted: set[str] = field(default_factory=set)
    """The stage Jobs whose end the metrics counted (see
    ``metrics.status_written``); forgotten with the record."""
    forgotten: bool = False

    @property
    def status(self) -> Mapping[str, Any]:
        """The status to build on: the last one written, else the watch's."""
        if self.written is not None:
            return self.written
        return self.videojob.status if self.videojob else {}

    @property
    def finished(self) -> bool:
        """Succeeded, or Failed and not to be retried."""
        spec = self.videojob.spec if self.videojob else None
        return self.status.get("phase") in FINISHED_PHASES and not retry_wanted(spec, self.status)


def wanted_pipeline(spec: Mapping[str, Any] | None, status: Mapping[str, Any]) -> str | None:
    """The VideoPipeline a VideoJob's spec names while its status holds no
    copy of it (once it does, the VideoJob runs the copy)."""
    name = (spec or {}).get("pipeline")
    if name is None or (status.get("pipeline") or {}).get("name") == name:
        return None
    return str(name)


class Memories:
    """Every VideoJob's record, by uid, and the newest uid of each name."""

    def __init__(self) -> None:
        self._records: dict[str, VideoJobMemory] = {}
        self._newest: dict[tuple[str, str], str] = {}

    def recall(self, namespace: str, name: str, uid: str) -> VideoJobMemory:
        """The record of this VideoJob, made if it is new."""
        record = self._records.get(uid)
        if record is None:
            record = VideoJobMemory(namespace=namespace, name=name, uid=uid)
            self._records[uid] = record
            self._newest[namespace, name] = uid
        return record

    def get(self, uid: str) -> VideoJobMemory | None:
        return self._records.get(uid)

    def newest(self, namespace: str, name: str) -> VideoJobMemory | None:
        """The record of the latest VideoJob seen under this name."""
        uid = self._newest.get((namespace, name))
        return self._records.get(uid) if uid else None

    def forget(self, uid: str) -> None:
        record = self._records.pop(uid, None)
        if record is None:
            return
        record.forgotten = True
        if self._newest.get((record.namespace, record.name)) == uid:
            del self._newest[record.namespace, record.name]

    def unfinished(self) -> list[str]:
        """The uids of the VideoJobs not yet Succeeded or Failed."""
        return [uid for uid, record in self._records.items() if not record.finished]

    def waiting_for(self, namespace: str, pipeline: str) -> list[str]:
        """The uids of the unfinished VideoJobs of ``namespace`` that name the
        VideoPipeline ``pipeline`` and have no copy of it yet."""
        return [
            uid
            for uid, record in self._records.items()
            if record.namespace == namespace
            and not record.finished
            and record.videojob is not None
            and wanted_pipeline(record.videojob.spec, record.status) == pipeline
        ]

    def count_by_phase(self) -> dict[tuple[str, str], int]:
        """(namespace, phase) -> how many VideoJobs; one with no phase yet
        is Pending. Read by the metrics endpoint's thread: the records are
        copied in one step (no Python code runs meanwhile) before they are read."""
        counts: dict[tuple[str, str], int] = {}
        for record in list(self._records.values()):
            if record.videojob is not None:
                key = (record.namespace, str(record.status.get("phase") or Phase.PENDING))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self._records)
