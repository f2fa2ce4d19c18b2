"""Who runs and who waits: the operator's cap on running VideoJobs, and Kueue's queue labels.

:func:`line_up` is the cap's whole policy, called by
:class:`vid_operator.runtime.queue.Queue` with every unfinished VideoJob it
knows; :func:`kueue_labels` is what :mod:`vid_operator.jobs` puts on a stage
Job that Kueue admits. Pure: the runtime derives who holds a slot from the
cluster's objects (a VideoJob Running, or with a stage Job that runs), never
from a counter of its own, so a restart neither loses nor doubles a slot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from vid_operator.api.models import Priority, VideoJobSpec
from vid_operator.config import OperatorConfig, Queueing

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"
"""The Workload API version the operator reads and writes (Kueue v0.15 and later)."""
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
"""Kueue's label naming the LocalQueue that admits a Job."""
WORKLOAD_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
"""Kueue's label naming a Job's WorkloadPriorityClass."""
MIN_PARALLELISM_ANNOTATION = "kueue.x-k8s.io/job-min-parallelism"
"""Kueue's annotation: the fewest pods of a Job it may admit it with."""

_PRIORITY_ORDER = {Priority.HIGH: 0, Priority.DEFAULT: 1, Priority.LOW: 2}


@dataclass(frozen=True)
class Contender:
    """An unfinished, unsuspended VideoJob, as the cap sees it."""

    uid: str
    namespace: str
    name: str
    priority: Priority
    created: str
    """Its creationTimestamp (RFC 3339, UTC): first come, first served."""
    running: bool
    """It holds a slot: it runs, or is about to."""


@dataclass(frozen=True)
class Turn:
    """Where a waiting VideoJob stands."""

    position: int
    """1 for the next to start."""
    message: str
    """Why it waits, in words."""


def line_up(contenders: Iterable[Contender], queueing: Queueing) -> dict[str, Turn | None]:
    """For each contender that does not run: None if it may start now, else
    its turn. High priority first, then the oldest, then by name; one whose
    namespace is at its cap lets the next of another namespace go first (and
    keeps its place in the queue)."""
    cap, per_namespace = queueing.max_running, queueing.max_running_per_namespace
    everyone = list(contenders)
    running = Counter(c.namespace for c in everyone if c.running)
    total = sum(running.values())
    waiting = sorted(
        (c for c in everyone if not c.running),
        key=lambda c: (_PRIORITY_ORDER[c.priority], c.created, c.namespace, c.name),
    )
    turns: dict[str, Turn | None] = {}
    position = 0
    for contender in waiting:
        cluster_full = cap is not None and total >= cap
        namespace_full = per_namespace is not None and running[contender.namespace] >= per_namespace
        if not (cluster_full or namespace_full):
            turns[contender.uid] = None
            total += 1
            running[contender.namespace] += 1
            continue
        position += 1
        if namespace_full:
            why = (
                f"{_videojobs(running[contender.namespace])} of namespace {contender.namespace}"
                " running, the most one namespace may run at once"
                f" (queueing.maxRunningPerNamespace)"
            )
        else:
            why = (
                f"{_videojobs(total)} running, the most the operator runs at once"
                " (queueing.maxRunning)"
            )
        turns[contender.uid] = Turn(position, f"position {position} in the queue: {why}")
    return turns


def _videojobs(count: int) -> str:
    return f"{count} VideoJob{'' if count == 1 else 's'}"


def capped(queueing: Queueing) -> bool:
    """Whether the operator holds VideoJobs back at all."""
    return queueing.max_running is not None or queueing.max_running_per_namespace is not None


def kueue_queue_name(spec: VideoJobSpec, namespace: str, config: OperatorConfig) -> str | None:
    """The LocalQueue that admits the VideoJob's stage Jobs; None: Kueue
    does not (it is not enabled, or no queue applies)."""
    kueue = config.queueing.kueue
    if not kueue.enabled:
        return None
    return spec.queue_name or kueue.namespace_queue_names.get(namespace) or kueue.default_queue_name


def kueue_labels(
    spec: VideoJobSpec, namespace: str, config: OperatorConfig, *, gpus: int
) -> dict[str, str]:
    """Kueue's labels for a stage Job of the VideoJob that asks for ``gpus``:
    its queue and, where configured, the WorkloadPriorityClass of its
    priority; none for a CPU stage where only GPU stages are queued."""
    queue = kueue_queue_name(spec, namespace, config)
    if queue is None or (config.queueing.kueue.stages == "gpu" and not gpus):
        return {}
    labels = {QUEUE_NAME_LABEL: queue}
    if priority_class := config.queueing.kueue.workload_priority_classes.get(spec.priority):
        labels[WORKLOAD_PRIORITY_LABEL] = priority_class
    return labels
