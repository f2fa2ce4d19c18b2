"""What must hold after a chaos run, checked over everything the watches saw.

:mod:`tests.chaos.harness` records every event of the run's Jobs and
VideoJobs (:class:`Record`) and calls :func:`check` at the end; each broken
invariant comes back as a sentence naming the object. Pure: no API calls.

Ordering questions ("was the dependency Complete before this Job was
created?") are answered from the order of one watch stream: the API server
delivers a collection's events in the order they were written, so a Job's
ADDED event comes after every update that was written before its create.
Where a relist (after the API server restarted) delivered both at once, the
Jobs' own timestamps decide, with their one-second resolution.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.benchmarks.rawapi import Seen
from tests.chaos.workload import Expected
from vid_operator import naming

PHASE_RANK = {
    "Pending": 0,
    "Queued": 1,
    "Running": 1,
    "Suspended": 1,
    "Succeeded": 2,
    "Failed": 2,
}
FINISHED = ("Succeeded", "Failed")


@dataclass
class Record:
    """Every Job and VideoJob event of a run, in arrival order per stream."""

    jobs: list[Seen] = field(default_factory=list)
    videojobs: list[Seen] = field(default_factory=list)


def _time(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def _complete(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _owner_uid(job: dict[str, Any]) -> str | None:
    for reference in job["metadata"].get("ownerReferences") or []:
        if reference.get("controller"):
            return str(reference["uid"])
    return None


def one_job_per_stage(record: Record) -> list[str]:
    """Never more than one Job for a VideoJob's stage and run (its first Job,
    or the one after an OOM kill raised its memory), over the whole run."""
    uids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    names: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for seen in record.jobs:
        owner = _owner_uid(seen.object)
        labels = seen.object["metadata"]["labels"]
        stage, run = labels.get(naming.STAGE_LABEL), labels.get(naming.RUN_LABEL, "0")
        if owner and stage:
            uids[owner, stage, run].add(seen.object["metadata"]["uid"])
            names[owner, stage, run].add(seen.object["metadata"]["name"])
    return [
        f"VideoJob {owner} stage {stage} run {run} had {len(found)} Jobs:"
        f" {sorted(names[owner, stage, run])}"
        for (owner, stage, run), found in uids.items()
        if len(found) > 1
    ]


def dependencies_first(record: Record, dependencies: dict[str, dict[str, list[str]]]) -> list[str]:
    """No stage's Job was created before its dependencies' Jobs were Complete.
    ``dependencies``: VideoJob uid -> stage -> the stages it waits for."""
    first_seen: dict[str, Seen] = {}
    complete_at: dict[tuple[str, str], Seen] = {}
    for seen in record.jobs:
        meta = seen.object["metadata"]
        owner, stage = _owner_uid(seen.object), meta["labels"].get(naming.STAGE_LABEL)
        if owner is None or stage is None:
            continue
        first_seen.setdefault(meta["uid"], seen)
        if _complete(seen.object):
            complete_at.setdefault((owner, stage), seen)
    violations = []
    for seen in first_seen.values():
        meta = seen.object["metadata"]
        owner, stage = _owner_uid(seen.object), meta["labels"][naming.STAGE_LABEL]
        assert owner is not None
        for dependency in dependencies.get(owner, {}).get(stage, []):
            done = complete_at.get((owner, dependency))
            name = f"{meta['name']} ({stage})"
            if done is None:
                violations.append(f"{name} exists but its dependency {dependency} never completed")
            elif seen.type == "ADDED" and done.sequence > seen.sequence:
                violations.append(f"{name} was created before {dependency} was Complete")
            elif seen.type == "LISTED":
                created = _time(meta.get("creationTimestamp"))
                finished = _time((done.object.get("status") or {}).get("completionTime"))
                if created and finished and created < finished:
                    violations.append(
                        f"{name} was created at {created}, before {dependency} completed "
                        f"at {finished}"
                    )
    return violations


def _progress(status: dict[str, Any]) -> int:
    try:
        return int(str(status.get("progress") or "0/0").split("/")[0])
    except ValueError:
        return 0


def status_never_backwards(record: Record) -> list[str]:
    """Per VideoJob, every status seen is at least as far along as the last:
    phase order, progress, finished stages, attempts (per Job of a stage),
    start and end times; unless a raised spec.retry runs it again."""
    violations = []
    last: dict[str, dict[str, Any]] = {}
    for seen in record.videojobs:
        if seen.type == "DELETED":
            continue
        meta = seen.object["metadata"]
        now = seen.object.get("status") or {}
        before = last.get(meta["uid"])
        last[meta["uid"]] = now
        if before is None:
            continue
        name = meta["name"][:80]
        if now.get("retries", 0) > before.get("retries", 0):
            continue  # raising spec.retry runs a Failed VideoJob again
        old_phase, new_phase = before.get("phase"), now.get("phase")
        if old_phase in FINISHED and new_phase != old_phase:
            violations.append(f"{name}: phase {old_phase} became {new_phase}")
        elif PHASE_RANK.get(new_phase or "Pending", 0) < PHASE_RANK.get(old_phase or "Pending", 0):
            violations.append(f"{name}: phase went back from {old_phase} to {new_phase}")
        if _progress(now) < _progress(before):
            violations.append(
                f"{name}: progress went back from {before.get('progress')} to {now.get('progress')}"
            )
        for key in ("startTime", "completionTime"):
            if before.get(key) and now.get(key) != before[key]:
                violations.append(f"{name}: {key} changed from {before[key]} to {now.get(key)}")
        old_stages = {s["name"]: s for s in before.get("stages") or []}
        for stage in now.get("stages") or []:
            previous = old_stages.get(stage["name"])
            if previous is None or stage.get("run", 0) != previous.get("run", 0):
                continue  # a new Job of the stage (after an OOM kill) counts afresh
            if previous.get("phase") in FINISHED and stage.get("phase") != previous["phase"]:
                violations.append(
                    f"{name}: stage {stage['name']} went from {previous['phase']} "
                    f"to {stage.get('phase')}"
                )
            if stage.get("attempts", 0) < previous.get("attempts", 0):
                violations.append(
                    f"{name}: stage {stage['name']} attempts went from "
                    f"{previous.get('attempts')} to {stage.get('attempts')}"
                )
    return violations


def most_running(record: Record) -> tuple[int, str]:
    """The most VideoJobs Running at once, as the VideoJob watch saw them in
    its order, and the one whose event made it so."""
    phases: dict[str, str] = {}
    most, when = 0, ""
    for seen in record.videojobs:
        uid = seen.object["metadata"]["uid"]
        if seen.type == "DELETED":
            phases.pop(uid, None)
            continue
        phases[uid] = str((seen.object.get("status") or {}).get("phase"))
        running = sum(phase == "Running" for phase in phases.values())
        if running > most:
            most, when = running, seen.object["metadata"]["name"][:80]
    return most, when


def cap_never_exceeded(record: Record, cap: int) -> list[str]:
    """Never more than ``cap`` VideoJobs Running at once (queueing.maxRunning)."""
    most, when = most_running(record)
    if most <= cap:
        return []
    return [f"{most} VideoJobs Running at once (cap {cap}), when {when} was"]


KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PODSET_LABEL = "kueue.x-k8s.io/podset"
"""What Kueue puts on a Job's pod template when it starts the Job (and takes
off again when it stops it)."""


def kueue_started_every_job(record: Record) -> list[str]:
    """Every stage Job in a Kueue queue that was ever seen running was
    started by Kueue on admitting its Workload, never by the operator: each
    time it is seen unsuspended and unfinished, its pod template carries
    Kueue's marks of admission."""
    violations = []
    for seen in record.jobs:
        job = seen.object
        meta, spec = job["metadata"], job.get("spec") or {}
        if seen.type == "DELETED" or KUEUE_QUEUE_LABEL not in (meta.get("labels") or {}):
            continue
        finished = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in (job.get("status") or {}).get("conditions") or []
        )
        template = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not spec.get("suspend") and not finished and KUEUE_PODSET_LABEL not in template:
            violations.append(f"Job {meta['name'][:80]} runs, but Kueue did not start it")
    return violations


def outcome(name: str, status: dict[str, Any] | None, expected: Expected) -> list[str]:
    """The VideoJob ended as its annotations said it would."""
    if not status or status.get("phase") not in FINISHED:
        phase = (status or {}).get("phase")
        return [f"{name[:80]} never finished (phase {phase}, expected {expected.phase})"]
    problems = []
    if status["phase"] != expected.phase:
        problems.append(f"{name[:80]} is {status['phase']}, expected {expected.phase}")
    if expected.failed_stage and status.get("stage") != expected.failed_stage:
        problems.append(
            f"{name[:80]} failed at {status.get('stage')}, expected {expected.failed_stage}"
        )
    if expected.reason:
        conditions: list[dict[str, Any]] = status.get("conditions") or []
        failed = next((c for c in conditions if c.get("type") == "Failed"), {})
        said = f"{failed.get('reason')} {failed.get('message')}"
        if expected.reason not in said:
            problems.append(f"{name[:80]}: Failed condition {said!r} lacks {expected.reason}")
    return problems
