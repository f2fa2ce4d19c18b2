"""The operator's metrics without a cluster: what a status change counts
(stage ends, tries, failures by reason), the bounded labels, the VideoJobs
by phase read at scrape time, the request labels, the bind address, and the
Grafana dashboard asking only for metrics that exist."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vid_operator import metrics
from vid_operator.api.models import Phase
from vid_operator.kube import request_labels
from vid_operator.runtime.memory import Memories, keep

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2026, 1, 1, 12, 0, 30, tzinfo=datetime.UTC)


def _status(*stages: dict[str, Any]) -> dict[str, Any]:
    return {"phase": "Running", "stages": list(stages)}


def _stage(name: str, phase: str, job: str | None = None, **more: Any) -> dict[str, Any]:
    return {"name": name, "phase": phase, "jobName": job, **more}


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def stage_labels(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    fresh = set(metrics.STAGE_NAMES)
    monkeypatch.setattr(metrics, "_stage_labels", fresh)
    yield fresh


def test_a_stage_that_succeeds_ends_once_with_its_duration() -> None:
    running = _status(
        _stage("voice_gen", "Running", "vj-voice-gen", startTime="2026-01-01T12:00:00Z")
    )
    done = _status(
        _stage(
            "voice_gen",
            "Succeeded",
            "vj-voice-gen",
            startTime="2026-01-01T12:00:00Z",
            completionTime="2026-01-01T12:00:12Z",
        )
    )

    assert metrics.stage_ends(running, done, NOW) == [
        metrics.StageEnd("voice_gen", "vj-voice-gen", True, None, 12.0)
    ]
    # The same status again (a progress write, the echo) ends nothing more.
    assert metrics.stage_ends(done, done, NOW) == []


def test_a_failed_stage_has_its_reason_and_runs_until_now_without_a_completion() -> None:
    running = _status(
        _stage("video_gen", "Running", "vj-video-gen", startTime="2026-01-01T12:00:00Z")
    )
    ended = _status(
        _stage(
            "video_gen",
            "Failed",
            "vj-video-gen",
            reason="PendingTimeout",
            startTime="2026-01-01T12:00:00Z",
        )
    )

    assert metrics.stage_ends(running, ended, NOW) == [
        metrics.StageEnd("video_gen", "vj-video-gen", False, "PendingTimeout", 30.0)
    ]


def test_an_oom_killed_job_replaced_by_one_with_more_memory_ends_as_a_failure() -> None:
    running = _status(
        _stage("voice_gen", "Running", "vj-voice-gen", startTime="2026-01-01T12:00:20Z")
    )
    successor = _status(
        _stage(
            "voice_gen",
            "Pending",
            None,
            run=1,
            history=[{"jobName": "vj-voice-gen", "attempts": 1, "reason": "OOMKilled"}],
        )
    )

    assert metrics.stage_ends(running, successor, NOW) == [
        metrics.StageEnd("voice_gen", "vj-voice-gen", False, "OOMKilled", 10.0)
    ]
    # Seen again in the history of later statuses: not counted again.
    later = _status(
        _stage(
            "voice_gen",
            "Running",
            "vj-voice-gen-2-abc",
            run=1,
            history=[{"jobName": "vj-voice-gen", "attempts": 1, "reason": "OOMKilled"}],
        )
    )
    assert metrics.stage_ends(successor, later, NOW) == []


def test_a_retried_videojob_does_not_count_its_failed_stage_twice() -> None:
    failed = _status(_stage("script_gen", "Failed", "vj-script-gen", reason="BackoffLimitExceeded"))
    retried = _status(
        _stage(
            "script_gen",
            "Pending",
            None,
            run=1,
            history=[{"jobName": "vj-script-gen", "reason": "BackoffLimitExceeded"}],
        )
    )

    assert metrics.stage_ends(failed, retried, NOW) == []


def test_tries_count_the_rise_of_a_jobs_attempts_and_all_of_a_new_jobs() -> None:
    first = _status(_stage("script_gen", "Running", "a", attempts=1))
    retry = _status(_stage("script_gen", "Running", "a", attempts=3))
    successor = _status(_stage("script_gen", "Running", "b", attempts=1))

    assert metrics.attempts_started({}, first) == {"script_gen": 1}
    assert metrics.attempts_started(first, retry) == {"script_gen": 2}
    assert metrics.attempts_started(retry, retry) == {}
    assert metrics.attempts_started(retry, successor) == {"script_gen": 1}


def test_a_written_status_moves_the_counters(stage_labels: set[str]) -> None:
    before = {
        "duration": _sample(
            "vidop_stage_duration_seconds_count", stage="compositing", outcome="failed"
        ),
        "failures": _sample(
            "vidop_stage_failures_total", stage="compositing", reason="DeadlineExceeded"
        ),
        "tries": _sample("vidop_stage_attempts_total", stage="compositing"),
    }
    running = _status(
        _stage("compositing", "Running", "c", attempts=1, startTime="2026-01-01T12:00:00Z")
    )
    failed = _status(
        _stage(
            "compositing",
            "Failed",
            "c",
            attempts=1,
            reason="DeadlineExceeded",
            startTime="2026-01-01T12:00:00Z",
            completionTime="2026-01-01T12:00:05Z",
        )
    )

    counted: set[str] = set()
    metrics.status_written({}, running, NOW, counted)
    metrics.status_written(running, failed, NOW, counted)
    # A later write built on the older status shows the same end again: it
    # is not counted twice.
    metrics.status_written(running, failed, NOW, counted)

    assert (
        _sample("vidop_stage_duration_seconds_count", stage="compositing", outcome="failed")
        == before["duration"] + 1
    )
    assert (
        _sample("vidop_stage_failures_total", stage="compositing", reason="DeadlineExceeded")
        == before["failures"] + 1
    )
    assert _sample("vidop_stage_attempts_total", stage="compositing") == before["tries"] + 1


def test_stage_labels_are_bounded(stage_labels: set[str]) -> None:
    names = [f"tenant-stage-{i}" for i in range(metrics.MAX_STAGE_LABELS + 5)]

    labels = [metrics.stage_label(name) for name in names]

    assert labels[: metrics.MAX_STAGE_LABELS] == names[: metrics.MAX_STAGE_LABELS]
    assert set(labels[metrics.MAX_STAGE_LABELS :]) == {metrics.OTHER_STAGE}
    # The default pipeline's stages and the names already admitted keep theirs.
    assert metrics.stage_label("video_gen") == "video_gen"
    assert metrics.stage_label(names[0]) == names[0]


def test_failure_reasons_are_bounded() -> None:
    assert metrics.reason_label("OOMKilled") == "OOMKilled"
    assert metrics.reason_label("DeadlineExceeded") == "DeadlineExceeded"
    assert metrics.reason_label(None) == "Failed"
    assert metrics.reason_label("SomethingAWebhookSaid") == "Other"


def test_videojobs_by_phase_are_counted_from_memory_at_scrape_time() -> None:
    memories = Memories()
    for name, namespace, phase in (
        ("a", "team-a", "Running"),
        ("b", "team-a", "Succeeded"),
        ("c", "team-a", None),  # just created: no status yet
        ("d", "team-b", "Failed"),
    ):
        body: dict[str, Any] = {
            "metadata": {"namespace": namespace, "name": name, "uid": name},
            "spec": {"prompt": "p"},
            "status": {"phase": phase} if phase else {},
        }
        memories.recall(namespace, name, name).videojob = keep(body)
    metrics.count_videojobs_with(memories.count_by_phase)
    try:
        scraped = generate_latest(metrics.REGISTRY).decode()
    finally:
        metrics.count_videojobs_with(None)
    (family,) = [f for f in text_string_to_metric_families(scraped) if f.name == "vidop_videojobs"]
    counts = {(s.labels["namespace"], s.labels["phase"]): s.value for s in family.samples}

    assert family.type == "gauge"
    assert counts[("team-a", "Running")] == 1
    assert counts[("team-a", "Succeeded")] == 1
    assert counts[("team-a", "Pending")] == 1
    assert counts[("team-b", "Failed")] == 1
    # Every phase of every namespace, zeros included.
    assert counts[("team-b", "Running")] == 0
    assert len(counts) == 2 * len(Phase)


def test_request_labels_name_the_resource_never_the_object() -> None:
    base = "https://10.0.0.1:6443"
    assert request_labels("POST", f"{base}/apis/batch/v1/namespaces/ns/jobs") == ("create", "jobs")
    assert request_labels("GET", f"{base}/apis/batch/v1/jobs?labelSelector=x") == ("list", "jobs")
    assert request_labels(
        "PATCH", f"{base}/apis/vidop.io/v1alpha1/namespaces/ns/videojobs/cat/status"
    ) == ("patch", "videojobs/status")
    assert request_labels(
        "DELETE", f"{base}/apis/vidop.io/v1alpha1/namespaces/ns/videojobs/cat"
    ) == (
        "delete",
        "videojobs",
    )
    assert request_labels("GET", f"{base}/api/v1/namespaces/ns/events?fieldSelector=x") == (
        "list",
        "events",
    )
    assert request_labels("POST", f"{base}/api/v1/namespaces/ns/events") == ("create", "events")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (":8081", ("0.0.0.0", 8081)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::]:8081", ("::", 8081)),
        ("0", None),
        ("", None),
    ],
)
def test_bind_address(value: str, expected: tuple[str, int] | None) -> None:
    assert metrics.bind_address(value) == expected


@pytest.mark.parametrize("value", ["8081", "host:", "host:http", ":70000"])
def test_a_bind_address_without_a_port_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        metrics.bind_address(value)


def test_exposition_follows_prometheus_naming() -> None:
    families = list(text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()))
    ours = [f for f in families if f.name.startswith("vidop_")]

    assert {f.name for f in ours} >= {
        "vidop_stage_duration_seconds",
        "vidop_stage_attempts",
        "vidop_stage_failures",
        "vidop_reconcile_duration_seconds",
        "vidop_reconcile_errors",
        "vidop_api_requests",
        "vidop_watch_events",
        "vidop_videojobs",
    }
    for family in ours:
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
        for sample in family.samples:
            assert not sample.name.endswith("_created")
            if family.type == "counter":
                assert sample.name.endswith("_total")


def test_the_dashboard_asks_only_for_metrics_the_operator_serves() -> None:
    dashboard = json.loads((ROOT / "charts/vid-operator/dashboards/vid-operator.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    served = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode())
        for sample in family.samples
    } | {"vidop_videojobs"}
    # Histogram and counter samples, whether or not one has been observed yet.
    for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()):
        if family.type == "histogram":
            served |= {f"{family.name}_bucket", f"{family.name}_count", f"{family.name}_sum"}
        if family.type == "counter":
            served.add(f"{family.name}_total")
    asked = {
        name
        for expression in expressions
        for name in re.findall(r"\b((?:vidop|process)_[a-z_]+)\b", expression)
    }

    assert expressions and asked
    assert asked <= served, asked - served
