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
ONE_JOB_PER_STAGE = config.from_mapping({"stages": {"video_gen": {"fanOut": None}}})
"""The default pipeline without its fan-out: video_gen needs no scene count."""


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


def test_each_start_and_success_posts_one_normal_event_with_the_write_that_says_it() -> None:
    snapshot = _snapshot()
    jobs: dict[str, status.ObservedJob] = {}

    def step(*done: str, flush: bool = False, **pods: status.ObservedPod) -> reconciler.Outcome:
        nonlocal snapshot
        for stage in done:
            jobs[stage] = dataclasses.replace(
                jobs[stage], finished="Complete", finished_at="2026-11-22T06:00:42Z"
            )
        snapshot = dataclasses.replace(snapshot, jobs=dict(jobs), pods=pods, flush=flush)
        outcome = reconciler.reconcile(snapshot, CONFIG)
        jobs.update({job.stage: job.observed for job in outcome.create})
        if not outcome.hold_back:
            snapshot = _then(snapshot, outcome)
        return outcome

    def said(outcome: reconciler.Outcome) -> list[tuple[str, str]]:
        assert all(kind == "Normal" for kind, _, _ in outcome.events)
        return [(reason, message.split(":")[0]) for _, reason, message in outcome.events]

    assert said(step()) == [
        ("Started", "VideoJob started"),
        ("StageStarted", "stage script_gen started"),
    ]
    script = status.ObservedPod(finished=True, summary={"scenes": 2})
    assert said(step("script_gen", script_gen=script)) == [
        ("StageSucceeded", "stage script_gen succeeded in 42 s"),
        ("StageStarted", "stage voice_gen started"),
        ("StageStarted", "stage video_gen started"),
    ]
    held = step("voice_gen")
    assert held.hold_back  # progress alone: its Event waits with it
    assert said(step(flush=True)) == [("StageSucceeded", "stage voice_gen succeeded in 42 s")]
    assert said(step("video_gen")) == [
        ("StageSucceeded", "stage video_gen succeeded in 42 s"),
        ("StageStarted", "stage compositing started"),
    ]
    summary = {"videoUri": "s3://b/cat.mp4"}
    finished = step("compositing", compositing=status.ObservedPod(finished=True, summary=summary))
    assert said(finished) == [
        ("StageSucceeded", "stage compositing succeeded in 42 s"),
        ("Succeeded", "VideoJob succeeded in 0 s"),
    ]
    assert finished.events[-1][2].endswith(": s3://b/cat.mp4")
    assert step().events == ()  # and none twice


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
    conditions = {c["type"]: c for c in waiting.status["conditions"]}
    for kind, state in (("Succeeded", "False"), ("Reconciling", "True"), ("Ready", "False")):
        assert conditions[kind]["status"] == state
        assert conditions[kind]["reason"] == "PipelineNotFound"
        assert "waiting for VideoPipeline two" in conditions[kind]["message"]
    assert conditions["Stalled"]["status"] == "False"  # GitOps may apply it later
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

    outcome = reconciler.reconcile(_snapshot(done, pods={"script_gen": pod}), ONE_JOB_PER_STAGE)

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


# --- limits on a stage that does not start, OOM successors, retry ---------------


def _oom_config(**on_oom: Any) -> config.OperatorConfig:
    """voice_gen (1Gi request, 2Gi limit) raises its memory after an OOM kill."""
    return config.from_mapping(
        {"stages": {"voice_gen": {"onOOM": {"memoryFactor": 1.5, "maxMemory": "4Gi", **on_oom}}}}
    )


def _at_voice(**voice: Any) -> dict[str, status.ObservedJob]:
    """script_gen done, voice_gen's Job as given, video_gen running."""
    return {
        "script_gen": _job("script_gen", "Complete"),
        "voice_gen": _job("voice_gen", **voice),
        "video_gen": _job("video_gen"),
    }


OOM_POD = status.ObservedPod(
    finished=True, failure="OOMKilled: out of memory at its memory limit of 2Gi", cause="OOMKilled"
)


def test_an_image_that_cannot_be_pulled_ends_the_stage_after_the_pull_limit() -> None:
    pulling = status.ObservedPod(
        waiting="ImagePullBackOff: cannot pull image x: back-off",
        cause="ImagePullBackOff",
        pending_since="2026-11-22T05:59:00Z",
        pull_failing_since="2026-11-22T05:59:00Z",
    )
    soon = reconciler.reconcile(_snapshot(_at_voice(), pods={"voice_gen": pulling}), CONFIG)
    assert soon.end == {} and soon.status["phase"] == Phase.RUNNING
    # Five minutes after it was scheduled (the default), not before.
    assert soon.recheck_at == datetime.datetime(2026, 11, 22, 6, 4, tzinfo=datetime.UTC)

    late = _snapshot(_at_voice(), pods={"voice_gen": pulling}, previous=soon.status).__dict__ | {
        "now": NOW + datetime.timedelta(minutes=5)
    }
    ended = reconciler.reconcile(Snapshot(**late), CONFIG)

    why = ended.end["cat-voice-gen"]
    assert why.startswith("ImagePullBackOff: cannot pull image x")
    assert "imagePullTimeoutSeconds (300 s)" in why
    voice = ended.status["stages"][1]
    assert (voice["phase"], voice["reason"]) == (Phase.FAILED, "ImagePullBackOff")
    assert ended.status["phase"] == Phase.FAILED
    # The other running stage is suspended; the one ended is left to its deadline.
    assert ended.suspend == {"cat-video-gen": True}
    failed = next(c for c in ended.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ImagePullBackOff"


def test_an_ended_job_keeps_its_reason_over_the_deadline_that_ends_it() -> None:
    why = "PendingTimeout: its pod did not start within pendingTimeoutSeconds (60 s): no node"
    ended = _at_voice(finished="Failed", reason="DeadlineExceeded", ended=why)

    outcome = reconciler.reconcile(_snapshot(ended), CONFIG)

    voice = outcome.status["stages"][1]
    assert (voice["phase"], voice["reason"], voice["message"]) == (
        Phase.FAILED,
        "PendingTimeout",
        why,
    )
    assert outcome.end == {}


def test_a_stage_pending_past_its_pending_timeout_fails_with_that_reason() -> None:
    cfg = config.from_mapping({"stages": {"voice_gen": {"pendingTimeoutSeconds": 60}}})
    unschedulable = status.ObservedPod(
        unschedulable="0/4 nodes are available", pending_since="2026-11-22T05:58:30Z"
    )
    outcome = reconciler.reconcile(_snapshot(_at_voice(), pods={"voice_gen": unschedulable}), cfg)

    why = outcome.end["cat-voice-gen"]
    assert why == (
        "PendingTimeout: its pod did not start within pendingTimeoutSeconds (60 s):"
        " 0/4 nodes are available"
    )
    assert outcome.status["stages"][1]["reason"] == "PendingTimeout"
    # A pod that runs is not pending, however old its Job.
    running = reconciler.reconcile(
        _snapshot(_at_voice(), pods={"voice_gen": status.ObservedPod()}), cfg
    )
    assert running.end == {} and running.recheck_at is None


def test_a_job_the_admission_refuses_is_pending_since_the_refusal_was_read() -> None:
    cfg = config.from_mapping({"stages": {"voice_gen": {"pendingTimeoutSeconds": 30}}})
    refused = status.refused_pod("exceeded quota: no-pods", "2026-11-22T05:59:00Z")
    outcome = reconciler.reconcile(_snapshot(_at_voice(), pods={"voice_gen": refused}), cfg)

    assert "exceeded quota: no-pods" in outcome.end["cat-voice-gen"]
    # A Job that has no pod for no known reason (its pod was just evicted, its
    # replacement is yet to come) has no clock, however long ago it started.
    podless = reconciler.reconcile(_snapshot(_at_voice()), cfg)
    assert podless.end == {} and podless.recheck_at is None


def test_an_oom_kill_ends_the_job_and_starts_the_next_with_more_memory() -> None:
    cfg = _oom_config()
    killed = _at_voice(failed=1, backoff_limit=3, memory_limit="2Gi")

    outcome = reconciler.reconcile(_snapshot(killed, pods={"voice_gen": OOM_POD}), cfg)

    assert outcome.end == {"cat-voice-gen": OOM_POD.failure}
    (successor,) = outcome.create
    manifest = successor.manifest
    assert manifest["metadata"]["name"].startswith("cat-voice-gen-2-")
    assert manifest["metadata"]["labels"]["vidop.io/run"] == "1"
    resources = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"]["memory"] == "3Gi"
    assert resources["requests"]["memory"] == "1536Mi"  # 1Gi, raised as much as the limit
    assert manifest["spec"]["backoffLimit"] == 2  # the retry the OOM kill used is gone
    voice = outcome.status["stages"][1]
    assert voice["phase"] == Phase.RUNNING and voice["run"] == 1
    assert voice["jobName"] == manifest["metadata"]["name"]
    assert voice["memoryLimit"] == "3Gi"
    assert voice["history"] == [
        {"jobName": "cat-voice-gen", "attempts": 1, "reason": "OOMKilled", "memoryLimit": "2Gi"}
    ]
    assert outcome.status["phase"] == Phase.RUNNING
    assert ("Warning", "OOMKilled") in {(kind, reason) for kind, reason, _ in outcome.events}


def test_the_successor_is_the_stage_from_then_on_and_the_raise_stops_at_the_maximum() -> None:
    cfg = _oom_config()
    first = _snapshot(
        _at_voice(failed=1, backoff_limit=3, memory_limit="2Gi"), pods={"voice_gen": OOM_POD}
    )
    raised = reconciler.reconcile(first, cfg)
    successor = raised.create[0].observed
    # The ended Job fails by its deadline; the watch now has both, the newest stands.
    jobs = _at_voice(finished="Failed", reason="DeadlineExceeded", ended="OOMKilled: x")
    jobs["voice_gen"] = dataclasses.replace(successor, failed=1, backoff_limit=2)
    pods = {"voice_gen": dataclasses.replace(OOM_POD, failure="OOMKilled at 3Gi")}
    again = reconciler.reconcile(_then(first, raised, jobs=jobs, pods=pods), cfg)

    (third,) = again.create
    limits = third.manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "4Gi"  # 1.5 x 3Gi is past maxMemory: 4Gi
    assert again.status["stages"][1]["run"] == 2
    assert [h["memoryLimit"] for h in again.status["stages"][1]["history"]] == ["2Gi", "3Gi"]

    jobs["voice_gen"] = dataclasses.replace(
        third.observed,
        finished="Failed",
        reason="BackoffLimitExceeded",
        failed=2,
        backoff_limit=1,
    )
    at_most = reconciler.reconcile(_then(first, again, jobs=jobs, pods=pods), cfg)
    assert at_most.create == ()
    voice = at_most.status["stages"][1]
    assert (voice["phase"], voice["reason"], voice["memoryLimit"]) == (
        Phase.FAILED,
        "OOMKilled",
        "4Gi",
    )
    assert at_most.status["phase"] == Phase.FAILED


def test_an_oom_kill_with_no_retries_left_fails_the_stage() -> None:
    killed = _at_voice(
        finished="Failed", reason="BackoffLimitExceeded", failed=1, memory_limit="2Gi"
    )
    outcome = reconciler.reconcile(_snapshot(killed, pods={"voice_gen": OOM_POD}), _oom_config())

    assert outcome.create == () and outcome.end == {}
    assert outcome.status["stages"][1]["reason"] == "OOMKilled"
    assert outcome.status["phase"] == Phase.FAILED


def test_an_oom_kill_is_retried_at_the_same_memory_without_on_oom() -> None:
    killed = _at_voice(failed=1, backoff_limit=3, memory_limit="2Gi")
    outcome = reconciler.reconcile(_snapshot(killed, pods={"voice_gen": OOM_POD}), CONFIG)

    assert outcome.create == () and outcome.end == {}


def _failed_at_compositing() -> tuple[Snapshot, reconciler.Outcome]:
    jobs = {
        "script_gen": _job("script_gen", "Complete"),
        "voice_gen": _job("voice_gen", "Complete"),
        "video_gen": _job("video_gen", "Complete"),
        "compositing": _job("compositing", "Failed", reason="BackoffLimitExceeded", failed=4),
    }
    failing = _snapshot(jobs)
    return failing, reconciler.reconcile(failing, CONFIG)


def test_raising_retry_runs_a_failed_videojob_again_from_its_failed_stage() -> None:
    failing, failed = _failed_at_compositing()
    assert failed.status["phase"] == Phase.FAILED and failed.status.get("retries", 0) == 0

    retried = reconciler.reconcile(
        _then(failing, failed, spec={"prompt": "a cat", "retry": 1}), CONFIG
    )

    (compositing,) = retried.create
    assert compositing.stage == "compositing"
    assert compositing.manifest["metadata"]["name"].startswith("cat-compositing-2-")
    assert retried.status["phase"] == Phase.RUNNING
    assert retried.status["retries"] == 1
    assert "completionTime" not in retried.status
    stages = {s["name"]: s for s in retried.status["stages"]}
    assert [stages[s]["phase"] for s in ("script_gen", "voice_gen", "video_gen")] == [
        Phase.SUCCEEDED
    ] * 3
    assert stages["compositing"]["run"] == 1
    assert stages["compositing"]["history"] == [
        {"jobName": "cat-compositing", "attempts": 4, "reason": "BackoffLimitExceeded"}
    ]
    failed_condition = next(c for c in retried.status["conditions"] if c["type"] == "Failed")
    assert failed_condition["status"] == "False"
    assert ("Normal", "Retrying", "retry 1: running compositing again") in retried.events


def test_a_retry_is_acted_on_once_and_a_lower_or_equal_one_not_at_all() -> None:
    failing, failed = _failed_at_compositing()
    same = reconciler.reconcile(
        _then(failing, failed, spec={"prompt": "a cat", "retry": 0}), CONFIG
    )
    assert same.create == () and same.status["phase"] == Phase.FAILED

    retried = reconciler.reconcile(
        _then(failing, failed, spec={"prompt": "a cat", "retry": 2}), CONFIG
    )
    # Its Job is created and seen: nothing more to do, the retry was acted on.
    jobs = {**failing.jobs, "compositing": retried.create[0].observed}
    again = reconciler.reconcile(
        _then(failing, retried, spec={"prompt": "a cat", "retry": 2}, jobs=jobs), CONFIG
    )
    assert again.create == () and again.idle
    assert again.status["stages"][3]["phase"] == Phase.RUNNING
    assert again.status["retries"] == 2


def test_a_retry_raised_while_running_is_only_recorded() -> None:
    outcome = reconciler.reconcile(_snapshot(spec={"prompt": "a cat", "retry": 3}), CONFIG)

    assert outcome.status["retries"] == 3


def test_an_oom_kill_while_suspended_waits_and_resumes_with_the_memory_raised() -> None:
    cfg = _oom_config()
    killed = _at_voice(failed=1, backoff_limit=3, memory_limit="2Gi", ended="OOMKilled: x")
    killed["voice_gen"] = dataclasses.replace(
        killed["voice_gen"], finished="Failed", reason="DeadlineExceeded"
    )
    suspended = _snapshot(
        killed, spec={"prompt": "a cat", "suspend": True}, pods={"voice_gen": OOM_POD}
    )

    held = reconciler.reconcile(suspended, cfg)

    assert held.create == ()
    voice = held.status["stages"][1]
    assert (voice["phase"], voice["run"], voice["memoryLimit"]) == (Phase.PENDING, 1, "3Gi")
    assert held.status["phase"] == Phase.SUSPENDED

    resumed = reconciler.reconcile(_then(suspended, held, spec={"prompt": "a cat"}), cfg)

    (successor,) = resumed.create
    container = successor.manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "3Gi"
    assert successor.manifest["spec"]["backoffLimit"] == 2


def test_a_retry_of_an_invalid_spec_is_acted_on_once_and_says_why_nothing_runs() -> None:
    invalid = reconciler.reconcile(_snapshot(spec={"prompt": "a cat", "pipeline": "gone"}), CONFIG)
    failed = reconciler.job_refused(_snapshot(), "script_gen", "spec.template: Invalid value")
    assert failed.status["phase"] == Phase.FAILED
    assert invalid.status["phase"] == Phase.PENDING  # waits for its pipeline

    retried = reconciler.reconcile(
        _then(_snapshot(), failed, spec={"prompt": "a cat", "retry": 1}), CONFIG
    )

    assert retried.status["phase"] == Phase.FAILED and retried.status["retries"] == 1
    assert retried.create == ()
    assert [reason for _, reason, _ in retried.events] == ["NothingToRetry"]
    once_more = reconciler.reconcile(
        _then(_snapshot(), retried, spec={"prompt": "a cat", "retry": 1}), CONFIG
    )
    assert once_more.patch == {} and once_more.events == ()
