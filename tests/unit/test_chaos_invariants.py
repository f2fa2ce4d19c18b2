"""The chaos run's queueing invariants catch what they are for: more
VideoJobs Running than the cap, and a Kueue stage Job that runs without
Kueue having started it."""

from __future__ import annotations

from typing import Any

from tests.benchmarks.rawapi import Seen
from tests.chaos import invariants


def _videojob(uid: str, phase: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": uid}, "status": {"phase": phase}}


def _job(suspend: bool, *, admitted: bool, complete: bool = False) -> dict[str, Any]:
    template = {"kueue.x-k8s.io/podset": "main"} if admitted else {}
    return {
        "metadata": {"name": "vj-video-gen", "labels": {"kueue.x-k8s.io/queue-name": "gpu"}},
        "spec": {"suspend": suspend, "template": {"metadata": {"labels": template}}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}] if complete else []},
    }


def _record(**streams: list[dict[str, Any]]) -> invariants.Record:
    record = invariants.Record()
    for kind, objects in streams.items():
        seen = [Seen("MODIFIED", obj, 0.0, i) for i, obj in enumerate(objects)]
        setattr(record, kind, seen)
    return record


def test_the_cap_is_checked_over_the_watchs_order() -> None:
    record = _record(
        videojobs=[
            _videojob("a", "Running"),
            _videojob("b", "Running"),
            _videojob("a", "Succeeded"),
            _videojob("c", "Running"),
            _videojob("d", "Running"),
        ]
    )

    assert invariants.most_running(record) == (3, "d")
    assert invariants.cap_never_exceeded(record, 3) == []
    assert invariants.cap_never_exceeded(record, 2) == [
        "3 VideoJobs Running at once (cap 2), when d was"
    ]


def test_a_kueue_job_running_without_kueues_marks_is_a_violation() -> None:
    started_by_kueue = _record(
        jobs=[_job(True, admitted=False), _job(False, admitted=True), _job(False, admitted=True)]
    )
    # What the operator resuming it itself would look like.
    resumed_by_hand = _record(jobs=[_job(True, admitted=False), _job(False, admitted=False)])
    # Kueue takes its marks off a finished Job's template: not running.
    finished = _record(jobs=[_job(False, admitted=False, complete=True)])

    assert invariants.kueue_started_every_job(started_by_kueue) == []
    assert invariants.kueue_started_every_job(resumed_by_hand) == [
        "Job vj-video-gen runs, but Kueue did not start it"
    ]
    assert invariants.kueue_started_every_job(finished) == []
