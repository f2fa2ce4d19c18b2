"""The operator's Prometheus metrics, scraped from the running operator on the
real control plane while VideoJobs succeed and fail on kwok, and read with
Prometheus' text parser (prometheus_client.parser): the phases counted, the
stage durations, tries and failures by reason, reconciles, API requests and
watch events moved, with bounded labels."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    Cluster,
    Operator,
    running_operator,
    videojob_manifest,
    wait_for_phase,
    wait_until,
)
from vid_operator import config

pytestmark = pytest.mark.cluster

STAGES = ("script_gen", "voice_gen", "video_gen", "compositing")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def served(cluster: Cluster) -> Iterator[str]:
    """The one namespace this module's operator serves: the counters it is
    scraped for are not per namespace, and other modules' VideoJobs (their
    namespaces still going away) must not move them."""
    core = client.CoreV1Api(cluster.api)
    name = f"metrics-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"vidop.io/test": "true"}}})
    wait_until(
        f"the default ServiceAccount in {name}",
        lambda: core.list_namespaced_service_account(name).items,
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, served: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    # voice_gen raises its memory after an OOM kill, as in test_failures.
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {
            "watchNamespaces": [served],
            "s3": {"credentialsSecret": None, "bucket": "videos"},
            "stages": {"voice_gen": {"onOOM": {"memoryFactor": 1.5, "maxMemory": "4Gi"}}},
            "overridePolicy": {
                "allowedFields": list(map(str, config.DEFAULT_OVERRIDABLE)),
                "allowedPodAnnotations": ["kwok.vidop.io/"],
            },
        },
    ) as running:
        yield running


def _scrape(operator: Operator) -> Samples:
    """Every sample the metrics endpoint serves, by name and labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _videojob(name: str, **stages: dict[str, Any]) -> dict[str, Any]:
    return videojob_manifest(name, stages=stages)


def _stage(videojob: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in videojob["status"]["stages"] if s["name"] == name)


def test_metrics_move_as_videojobs_succeed_and_fail(
    cluster: Cluster, served: str, operator: Operator
) -> None:
    namespace = served
    before = _scrape(operator)

    cluster.apply(_videojob("fine"), namespace)
    cluster.apply(
        _videojob("hungry", voice_gen={"podAnnotations": {"kwok.vidop.io/oom-at-memory": "2Gi"}}),
        namespace,
    )
    cluster.apply(
        _videojob("bad-input", script_gen={"podAnnotations": {"kwok.vidop.io/exit-code": "2"}}),
        namespace,
    )
    cluster.apply(
        _videojob(
            "too-slow",
            script_gen={
                "activeDeadlineSeconds": 1,
                "podAnnotations": {"kwok.vidop.io/run-time": "60s"},
            },
        ),
        namespace,
    )
    for name in ("fine", "hungry"):
        wait_for_phase(cluster, namespace, name, "Succeeded")
    invalid = wait_for_phase(cluster, namespace, "bad-input", "Failed")
    slow = wait_for_phase(cluster, namespace, "too-slow", "Failed")
    assert _stage(invalid, "script_gen")["reason"] == "InvalidInput"
    assert _stage(slow, "script_gen")["reason"] == "DeadlineExceeded"

    after = _scrape(operator)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # VideoJobs by phase, counted from the operator's memory at scrape time.
    phases = {
        phase: _value(after, "vidop_videojobs", namespace=namespace, phase=phase)
        for phase in ("Pending", "Running", "Suspended", "Succeeded", "Failed")
    }
    assert phases == {"Pending": 0, "Running": 0, "Suspended": 0, "Succeeded": 2, "Failed": 2}

    # Stage durations by stage and outcome: every stage of the two that
    # succeeded; script_gen of the two that failed; the OOM-killed voice_gen Job.
    for stage in STAGES:
        assert moved("vidop_stage_duration_seconds_count", stage=stage, outcome="succeeded") == 2
    assert moved("vidop_stage_duration_seconds_count", stage="script_gen", outcome="failed") == 2
    assert moved("vidop_stage_duration_seconds_count", stage="voice_gen", outcome="failed") == 1
    assert moved("vidop_stage_duration_seconds_sum", stage="compositing", outcome="succeeded") > 0
    # The slow one ran about its deadline before it failed.
    assert moved("vidop_stage_duration_seconds_sum", stage="script_gen", outcome="failed") >= 1
    assert (
        moved(
            "vidop_stage_duration_seconds_bucket",
            stage="compositing",
            outcome="succeeded",
            le="+Inf",
        )
        == 2
    )

    # Failures by reason, the OOM kill and the deadline among them.
    assert moved("vidop_stage_failures_total", stage="script_gen", reason="InvalidInput") == 1
    assert moved("vidop_stage_failures_total", stage="script_gen", reason="DeadlineExceeded") == 1
    assert moved("vidop_stage_failures_total", stage="voice_gen", reason="OOMKilled") == 1
    assert moved("vidop_stage_failures_total", stage="video_gen", reason="OOMKilled") == 0
    # Tries: voice_gen ran in fine, and twice in hungry (OOM killed, then with more memory).
    assert moved("vidop_stage_attempts_total", stage="voice_gen") >= 3
    assert moved("vidop_stage_attempts_total", stage="script_gen") >= 4

    # Reconciles, the operator's own API requests and the watch events.
    assert moved("vidop_reconcile_duration_seconds_count") >= 4
    # A Job for each stage of fine, one more (the successor) for hungry, and
    # the script_gen Jobs of the two that failed.
    assert moved("vidop_api_requests_total", verb="create", resource="jobs", code="201") >= 11
    assert moved("vidop_api_requests_total", verb="patch", resource="videojobs/status", code="200")
    # kopf hands a handler the newest of the events that came while it was
    # busy, so a VideoJob's ADDED may reach it as a MODIFIED: counted by
    # type, they are at least one per VideoJob.
    videojob_events = sum(
        value
        for (name, labels), value in after.items()
        if name == "vidop_watch_events_total" and ("resource", "videojobs") in labels
    ) - sum(
        value
        for (name, labels), value in before.items()
        if name == "vidop_watch_events_total" and ("resource", "videojobs") in labels
    )
    assert videojob_events >= 4
    assert moved("vidop_watch_events_total", resource="jobs", type="MODIFIED") > 0

    # No VideoJob name or prompt in any label value.
    for _, labels in after:
        for _, value in labels:
            assert value not in ("fine", "hungry", "bad-input", "too-slow", "a cat surfing")
    # The process's own, on the same registry.
    assert _value(after, "process_cpu_seconds_total") > 0


def test_metrics_are_on_their_own_port_not_the_liveness_one(operator: Operator) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{operator.port}/metrics", timeout=5)
    assert refused.value.code == 404
    assert "vidop_reconcile_duration_seconds" in operator.metrics()
