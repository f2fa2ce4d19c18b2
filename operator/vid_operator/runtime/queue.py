"""The operator's cap on running VideoJobs, read from what exists.

The controller asks :meth:`Queue.turn` before each reconcile of a VideoJob
(None: it may run), tells :meth:`Queue.starting` in the same step of the
event loop when that reconcile starts or resumes stage Jobs, and asks
:meth:`Queue.next_up` whom to wake when a slot may have freed (and
:meth:`Queue.moved` whose position to write again). Who holds a
slot is derived each time from memory, which mirrors the cluster: a VideoJob
whose status says Running (or Queued for Kueue's quota, past the cap), one
with a stage Job that runs or waits for Kueue, and one whose start is under
way (the created-but-not-yet-seen of :class:`Starts`, as
:class:`~.expectations.Expectations` keeps for Jobs). Nothing counts slots,
so a restarted operator finds exactly the slots taken, and none twice.

Concurrency: event loop only; a turn and the ``starting`` that follows it
run with no ``await`` between, so two VideoJobs never take one slot.
"""

from __future__ import annotations

from collections.abc import Callable

from vid_operator.api.models import Phase, Priority
from vid_operator.config import Queueing
from vid_operator.queueing import Contender, Turn, capped, line_up
from vid_operator.runtime.memory import Memories, VideoJobMemory, wanted_pipeline
from vid_operator.runtime.observed import Observed
from vid_operator.status import ObservedJob


class Starts:
    """VideoJobs whose reconcile started stage Jobs, until memory shows
    them holding their slot (or ``timeout`` seconds pass: the start failed)."""

    def __init__(self, timeout: float, clock: Callable[[], float]) -> None:
        self._timeout = timeout
        self._clock = clock
        self._since: dict[str, float] = {}

    def add(self, uid: str) -> None:
        self._since[uid] = self._clock()

    def seen(self, uid: str) -> None:
        self._since.pop(uid, None)

    def retain(self, uids: set[str]) -> None:
        """Forget the starts of VideoJobs not among ``uids`` (finished since)."""
        for uid in self._since.keys() - uids:
            del self._since[uid]

    def __contains__(self, uid: object) -> bool:
        since = self._since.get(str(uid))
        if since is None:
            return False
        if self._clock() - since > self._timeout:
            del self._since[str(uid)]
            return False
        return True


class Queue:
    """Turns under ``queueing``'s caps, over ``memories`` and ``observed``."""

    def __init__(
        self,
        queueing: Queueing,
        memories: Memories,
        observed: Observed,
        jobs_of: Callable[[str], dict[str, ObservedJob]],
        starts: Starts,
    ) -> None:
        self._queueing = queueing
        self._memories = memories
        self._observed = observed
        self._jobs_of = jobs_of
        """Stage -> Job of a VideoJob, those created and not yet seen included."""
        self._starts = starts
        self._turns: dict[str, Turn | None] | None = None
        """The last line-up, until something changes."""

    @property
    def enabled(self) -> bool:
        return capped(self._queueing)

    def changed(self) -> None:
        """Something a slot depends on changed: line up again when asked."""
        self._turns = None

    def turn(self, uid: str) -> Turn | None:
        """Where the VideoJob stands; None: it may run (it holds a slot, one
        is free for it, or there is no cap)."""
        if not self.enabled:
            return None
        return self._line_up().get(uid)

    def forget(self, uid: str) -> None:
        """The VideoJob is gone."""
        self._starts.seen(uid)
        self.changed()

    def starting(self, uid: str) -> None:
        """The VideoJob's reconcile starts or resumes stage Jobs: its slot is
        taken from now on."""
        if self.enabled:
            self._starts.add(uid)
            self.changed()

    def next_up(self) -> list[str]:
        """The VideoJobs that may start now and have not started yet."""
        if not self.enabled:
            return []
        return [uid for uid, turn in self._line_up().items() if turn is None]

    def moved(self, within: int) -> list[str]:
        """The queued VideoJobs among the first ``within`` whose status
        shows another position than theirs now."""
        if not self.enabled:
            return []
        moved = []
        for uid, turn in self._line_up().items():
            record = self._memories.get(uid)
            if (
                turn is not None
                and turn.position <= within
                and record is not None
                and record.status.get("queuePosition") != turn.position
            ):
                moved.append(uid)
        return moved

    def _line_up(self) -> dict[str, Turn | None]:
        if self._turns is None:
            contenders = []
            unfinished = self._memories.unfinished()
            self._starts.retain(set(unfinished))
            for uid in unfinished:
                record = self._memories.get(uid)
                contender = self._contender(record) if record is not None else None
                if contender is not None:
                    contenders.append(contender)
            self._turns = line_up(contenders, self._queueing)
        return self._turns

    def _contender(self, record: VideoJobMemory) -> Contender | None:
        """The VideoJob as the cap sees it; None when it neither runs nor
        wants to (suspended, being deleted)."""
        videojob = record.videojob
        if videojob is None or videojob.spec is None:
            return None
        running = self._holds_slot(record)
        if videojob.deleting:
            # Its stages stop (and its status stays) until its finalizer goes.
            return self._as_contender(record, running=True) if running else None
        wanted = wanted_pipeline(videojob.spec, record.status)
        if not running and wanted and self._observed.pipeline(record.namespace, wanted) is None:
            return None  # it waits for its VideoPipeline, not for a slot
        if running:
            self._starts.seen(record.uid)
        else:
            running = record.uid in self._starts
        if not running and videojob.spec.get("suspend"):
            return None
        return self._as_contender(record, running=running)

    @staticmethod
    def _as_contender(record: VideoJobMemory, *, running: bool) -> Contender:
        assert record.videojob is not None and record.videojob.spec is not None
        spec = record.videojob.spec
        return Contender(
            uid=record.uid,
            namespace=record.namespace,
            name=record.name,
            priority=Priority(spec.get("priority", Priority.DEFAULT)),
            created=record.videojob.created,
            running=running,
        )

    def _holds_slot(self, record: VideoJobMemory) -> bool:
        status = record.status
        phase = status.get("phase")
        if phase == Phase.RUNNING or (phase == Phase.QUEUED and not status.get("queuePosition")):
            return True
        for job in self._jobs_of(record.uid).values():
            if job.finished:
                continue
            if not job.suspended:
                return True
            # Waiting for Kueue, unless the operator stopped it (inactive).
            if job.queue_name is not None:
                workload = self._observed.workload(record.namespace, job.name)
                if workload is None or workload.active:
                    return True
        return False
