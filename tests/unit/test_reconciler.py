"""The reconciler: a frozen snapshot in, an outcome out (what to create,
flip, write and post; whether the write waits; when the TTL falls due)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from vid_operator import config, status
from vid_operator.api.models import Phase
from vid_operator.runtime import reconciler
from vid_operator.runtime.observed import KnownPipeline
from vid_operator.runtime.reconciler import Snapshot

NOW = datetime.datetime(2026, 11, 22, 6, 0, tzinfo=datetime.UTC)
CONFIG = config.OperatorConfig()


def _job(stage: str, finished: str | None = None, **fields: Any) -> status.ObservedJob:
    return status.ObservedJob(
        name=f"cat-{stage.replace('_', '-')}",
        created="2026-11-22T05:59:00Z",
        suspended=fields.pop("suspended", False),
        finished=finished,
        finished_at="2026-11-22T05:59:30Z" if finished else None,
        **fields,
    )


def _snapshot(
    jobs: dict[str, status.ObservedJob] | None = None,
    *,
    spec: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
    pods: dict[str, status.ObservedPod] | None = None,
    flush: bool = False,
    ttl: int | None = None,
    pipeline: KnownPipeline | None = None,
) -> Snapshot:
    return Snapshot(
        namespace="media",
        name="cat",
        uid="uid-1",
        generation=1,
        spec={"prompt": "a cat"} if spec is None else spec,
        ttl_seconds_after_finished=ttl,
        status=previous or {},
        jobs=jobs or {},
        pods=pods or {},
        now=NOW,
        flush=flush,
        pipeline=pipeline,
    )


def _then(snapshot: Snapshot, outcome: reconciler.Outcome, **changes: Any) -> Snapshot:
    """The next snapshot, once ``outcome``'s status is written."""
    fields = {**snapshot.__dict__, "status": outcome.status, **changes}
    return Snapshot(**fields)


def test_a_new_videojob_creates_its_first_stage_and_writes_running_at_once() -> None:
    outcome = reconciler.reconcile(_snapshot(), CONFIG)

    assert [job.stage for job in outcome.create] == ["script_gen"]
    manifest = outcome.create[0].manifest
    assert manifest["kind"] == "Job" and manifest["metadata"]["name"] == "cat-script-gen"
    assert outcome.status["phase"] == Phase.RUNNING
    assert outcome.status["startTime"] == "2026-11-22T06:00:00Z"
    assert not outcome.hold_back and not outcome.idle
    assert outcome.patch == outcome.status  # nothing written before


def test_the_created_job_is_in_the_status_so_its_event_finds_nothing_to_write() -> None:
    first = _snapshot()
    created = reconciler.reconcile(first, CONFIG)

    again = reconciler.reconcile(
        _then(first, created, jobs={"script_gen": created.create[0].observed}), CONFIG
    )

    assert again.create == () and again.patch == {} and again.idle


def test_progress_alone_is_held_back_and_written_when_flushed() -> None:
    running = {
        "script_gen": _job("script_gen", "Complete"),
        "voice_gen": _job("voice_gen"),
        "video_gen": _job("video_gen"),
    }
    before = reconciler.reconcile(_snapshot(running), CONFIG)
    running["voice_gen"] = _job("voice_gen", "Complete")

    held = reconciler.reconcile(_then(_snapshot(running), before), CONFIG)
    flushed = reconciler.reconcile(_then(_snapshot(running), before, flush=True), CONFIG)

    assert held.hold_back and held.patch and held.idle
    assert not flushed.hold_back and flushed.patch == held.patch
    assert flushed.status["progress"] == "2/4"


CYCLE = KnownPipeline(
    generation=1,
    spec={
        "stages": [
            {"name": "a", "image": "x:1", "dependsOn": ["b"]},
            {"name": "b", "image": "x:1", "dependsOn": ["a"]},
        ]
    },
    status={},
)
TWO_STAGES = KnownPipeline(
    generation=3,
    spec={
        "stages": [
            {"name": "render", "image": "platform/render:1"},
            {"name": "captions", "image": "platform/captions:1", "dependsOn": ["render"]},
        ]
    },
    status={},
)
ON_PIPELINE = {"prompt": "a cat", "pipeline": "two"}


def test_a_dependency_cycle_fails_as_invalid_spec_with_an_event_and_no_job() -> None:
    spec = {"prompt": "a cat", "pipeline": "loop"}

    outcome = reconciler.reconcile(_snapshot(spec=spec, pipeline=CYCLE), CONFIG)

    assert outcome.create == ()
    assert outcome.status["phase"] == Phase.FAILED
    failed = next(c for c in outcome.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec" and "cycle" in failed["message"]
    assert "VideoPipeline loop cannot run" in failed["message"]
    assert [e[1] for e in outcome.events] == ["InvalidSpec"]


def test_a_videojob_on_a_pipeline_runs_its_stages_and_keeps_a_copy_of_it() -> None:
    outcome = reconciler.reconcile(_snapshot(spec=ON_PIPELINE, pipeline=TWO_STAGES), CONFIG)

    assert [job.stage for job in outcome.create] == ["render"]
    assert outcome.create[0].manifest["metadata"]["name"] == "cat-render"
    assert outcome.status["progress"] == "0/2"
    assert [s["name"] for s in outcome.status["stages"]] == ["render", "captions"]
    assert outcome.status["pipeline"]["name"] == "two"
    assert outcome.status["pipeline"]["generation"] == 3
    assert outcome.status["pipeline"]["spec"] == TWO_STAGES.spec


def test_a_started_videojob_runs_its_copy_whatever_happens_to_the_pipeline() -> None:
    first = _snapshot(spec=ON_PIPELINE, pipeline=TWO_STAGES)
    started = reconciler.reconcile(first, CONFIG)
    render = _job("render", "Complete")

    # The VideoPipeline was deleted (the controller then passes none) ...
    deleted = reconciler.reconcile(
        _then(first, started, jobs={"render": render}, pipeline=None), CONFIG
    )
    # ... or edited to a different image.
    edited = KnownPipeline(
        generation=4,
        spec={"stages": [{"name": "render", "image": "evil/render:1"}]},
        status={},
    )
    changed = reconciler.reconcile(
        _then(first, started, jobs={"render": render}, pipeline=edited), CONFIG
    )

    for outcome in (deleted, changed):
        assert [job.stage for job in outcome.create] == ["captions"]
        assert (
            outcome.create[0].manifest["spec"]["template"]["spec"]["containers"][0]["image"]
            == "platform/captions:1"
        )
        assert outcome.status["pipeline"]["generation"] == 3


def test_a_videojob_waits_for_a_pipeline_that_does_not_exist_yet() -> None:
    first = _snapshot(spec=ON_PIPELINE)
    waiting = reconciler.reconcile(first, CONFIG)

    assert waiting.create == () and waiting.status["phase"] == Phase.PENDING
    (condition,) = waiting.status["conditions"]
    assert condition["reason"] == "PipelineNotFound"
    assert "waiting for VideoPipeline two" in condition["message"]
    assert [e[1] for e in waiting.events] == ["PipelineNotFound"]
    still = reconciler.reconcile(_then(first, waiting), CONFIG)
    assert still.events == () and still.patch == {}  # one Warning, one write
    arrived = reconciler.reconcile(_then(first, waiting, pipeline=TWO_STAGES), CONFIG)
    assert [job.stage for job in arrived.create] == ["render"]


def test_an_override_the_policy_refuses_fails_naming_the_field() -> None:
    spec = {**ON_PIPELINE, "stages": {"render": {"image": "docker.io/attacker/miner:1"}}}

    outcome = reconciler.reconcile(_snapshot(spec=spec, pipeline=TWO_STAGES), CONFIG)

    assert outcome.create == ()
    failed = next(c for c in outcome.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("spec.stages.render.image: the override policy")


def test_a_pipelines_status_says_whether_videojobs_can_run_on_it() -> None:
    ready = reconciler.pipeline_status(TWO_STAGES, NOW)
    broken = reconciler.pipeline_status(CYCLE, NOW)

    assert ready is not None and broken is not None
    assert ready["conditions"][0]["status"] == "True" and ready["stageCount"] == 2
    assert ready["observedGeneration"] == 3
    assert broken["conditions"][0]["status"] == "False"
    assert broken["conditions"][0]["reason"] == "InvalidSpec"
    assert "cycle" in broken["conditions"][0]["message"]
    # Written once: the same status again is no write.
    assert reconciler.pipeline_status(dataclasses.replace(TWO_STAGES, status=ready), NOW) is None


def test_a_spec_that_does_not_parse_fails_as_invalid_spec() -> None:
    outcome = reconciler.reconcile(_snapshot(spec={"prompt": "a cat", "fps": "fast"}), CONFIG)

    failed = next(c for c in outcome.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec" and "does not parse" in failed["message"]


def test_a_refused_job_fails_the_videojob_as_invalid_spec() -> None:
    outcome = reconciler.job_refused(_snapshot(), "script_gen", "spec.template: Invalid")

    assert outcome.status["phase"] == Phase.FAILED
    assert "rejected the script_gen Job: spec.template: Invalid" in outcome.events[0][2]


def test_a_finished_videojob_needs_no_spec_and_only_settles() -> None:
    done = {s: _job(s, "Complete") for s in ("script_gen", "voice_gen", "video_gen")}
    done["compositing"] = _job("compositing", "Complete")
    pods = {"compositing": status.ObservedPod(finished=True, summary={"videoUri": "s3://b/v"})}
    succeeded = reconciler.reconcile(_snapshot(done, pods=pods), CONFIG)
    assert succeeded.status["phase"] == Phase.SUCCEEDED

    # Its Jobs and pods gone (a TTL, a person), without the spec: nothing to do.
    settled = reconciler.reconcile(
        _then(_snapshot(), succeeded, spec=None, jobs={}, pods={}), CONFIG
    )

    assert settled.patch == {} and settled.idle
    assert settled.status["outputs"] == {"videoUri": "s3://b/v"}


def test_after_a_failure_what_still_runs_is_suspended_and_then_shows_suspended() -> None:
    jobs = {
        "script_gen": _job("script_gen", "Complete"),
        "voice_gen": _job("voice_gen", "Failed", failed=1, reason="PodFailurePolicy"),
        "video_gen": _job("video_gen"),
    }
    failed = reconciler.reconcile(_snapshot(jobs), CONFIG)
    assert failed.status["phase"] == Phase.FAILED
    assert failed.suspend == {"cat-video-gen": True}

    jobs["video_gen"] = _job("video_gen", suspended=True)
    settled = reconciler.reconcile(_then(_snapshot(jobs), failed, spec=None), CONFIG)

    video = next(s for s in settled.status["stages"] if s["name"] == "video_gen")
    assert video["phase"] == Phase.SUSPENDED
    assert settled.suspend == {} and settled.status["phase"] == Phase.FAILED
    assert settled.status["completionTime"] == failed.status["completionTime"]


def test_the_ttl_falls_due_after_completion_and_not_before() -> None:
    running = reconciler.reconcile(_snapshot(ttl=60), CONFIG)
    assert running.ttl_due is None

    invalid = reconciler.reconcile(_snapshot(spec={"prompt": "a", "fps": "x"}, ttl=60), CONFIG)
    assert invalid.ttl_due == NOW + datetime.timedelta(seconds=60)


def test_a_refused_status_is_written_again_without_the_stage_outputs() -> None:
    done = {s: _job(s, "Complete") for s in ("script_gen", "voice_gen", "video_gen")}
    pods = {"video_gen": status.ObservedPod(finished=True, summary={"frames": 480})}
    snapshot = _snapshot(done, pods=pods)
    outcome = reconciler.reconcile(snapshot, CONFIG)

    again = reconciler.status_refused(snapshot, outcome, "the API server refused it (HTTP 422)")

    video = next(s for s in again.status["stages"] if s["name"] == "video_gen")
    assert "outputs" not in video
    assert video["message"] == "outputs left out: the API server refused it (HTTP 422)"
    assert again.status["phase"] == outcome.status["phase"]
    assert again.events == outcome.events


def test_a_summary_the_contract_refuses_is_named_on_the_succeeded_stage() -> None:
    done = {"script_gen": _job("script_gen", "Complete")}
    pod = status.observe_pod(
        {
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 0, "message": "[" * 2048}}}
                ]
            }
        }
    )

    outcome = reconciler.reconcile(_snapshot(done, pods={"script_gen": pod}), CONFIG)

    script = next(s for s in outcome.status["stages"] if s["name"] == "script_gen")
    assert script["phase"] == Phase.SUCCEEDED and "outputs" not in script
    assert script["message"] == "its summary was left out: it nests deeper than 8 levels"
    assert [job.stage for job in outcome.create] == ["voice_gen", "video_gen"]


def test_merge_patch_of_the_outcome_is_from_the_snapshot_status() -> None:
    first = reconciler.reconcile(_snapshot(), CONFIG)
    jobs = {"script_gen": _job("script_gen", "Complete")}

    second = reconciler.reconcile(_then(_snapshot(jobs), first), CONFIG)

    assert second.patch["progress"] == "1/4"
    assert "startTime" not in second.patch


def test_a_job_seen_failing_is_kept_longer_and_only_once() -> None:
    jobs = {
        "script_gen": _job("script_gen", "Complete"),
        "voice_gen": _job("voice_gen", "Failed", failed=1, reason="PodFailurePolicy"),
        "video_gen": _job("video_gen", "Complete"),
    }
    failed = reconciler.reconcile(_snapshot(jobs), CONFIG)

    assert failed.keep_failed == {"cat-voice-gen": 604800}
    again = reconciler.reconcile(_then(_snapshot(jobs), failed, spec=None), CONFIG)
    assert again.keep_failed == {} and again.idle


def test_no_failed_ttl_to_set_when_it_is_the_same_as_the_succeeded_one() -> None:
    same = config.from_mapping(
        {"finishedJobs": {"succeededTtlSeconds": None, "failedTtlSeconds": None}}
    )
    jobs = {"script_gen": _job("script_gen", "Failed", failed=1, reason="PodFailurePolicy")}

    outcome = reconciler.reconcile(_snapshot(jobs), same)

    assert outcome.status["phase"] == Phase.FAILED and outcome.keep_failed == {}
    assert (
        "ttlSecondsAfterFinished"
        not in reconciler.reconcile(_snapshot(), same).create[0].manifest["spec"]
    )


def test_a_suspended_videojob_takes_its_copy_only_when_a_stage_starts() -> None:
    suspended = {**ON_PIPELINE, "suspend": True}
    first = _snapshot(spec=suspended, pipeline=TWO_STAGES)
    waiting = reconciler.reconcile(first, CONFIG)

    # Not started (no startTime, so its spec can still change): no copy yet,
    # so what it runs is what the pipeline says when it is resumed.
    assert waiting.create == () and "pipeline" not in waiting.status
    assert "startTime" not in waiting.status
    edited = dataclasses.replace(TWO_STAGES, generation=4)
    resumed = reconciler.reconcile(_then(first, waiting, spec=ON_PIPELINE, pipeline=edited), CONFIG)
    assert [job.stage for job in resumed.create] == ["render"]
    assert resumed.status["pipeline"]["generation"] == 4
    assert resumed.status["startTime"]


def test_a_suspended_videojob_waiting_for_its_pipeline_says_suspended() -> None:
    outcome = reconciler.reconcile(_snapshot(spec={**ON_PIPELINE, "suspend": True}), CONFIG)

    assert outcome.status["phase"] == Phase.SUSPENDED
    assert outcome.status["conditions"][0]["reason"] == "PipelineNotFound"
