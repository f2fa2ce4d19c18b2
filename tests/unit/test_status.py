"""status.plan: the VideoJob's status and next actions from the observed Jobs and pods."""

from vid_operator import config, pipeline, status
from vid_operator.api.models import Phase, StageStatus, VideoJobSpec, VideoJobStatus

NOW = "2026-11-22T06:00:00Z"
STAGES = pipeline.resolve(VideoJobSpec(prompt="x"), config.OperatorConfig())


def _job(
    stage: str,
    finished: str | None = None,
    *,
    failed: int = 0,
    reason: str | None = None,
    suspended: bool = False,
) -> status.ObservedJob:
    return status.ObservedJob(
        name=f"vj-{stage}",
        created="2026-11-22T05:59:00Z",
        suspended=suspended,
        failed=failed,
        finished=finished,
        reason=reason,
        finished_at=NOW if finished else None,
    )


def _plan(
    jobs: dict[str, status.ObservedJob],
    *,
    suspend: bool = False,
    pods: dict[str, status.ObservedPod] | None = None,
    previous: VideoJobStatus | None = None,
) -> status.Plan:
    return status.plan(
        VideoJobSpec(prompt="x", suspend=suspend),
        1,
        previous or VideoJobStatus(),
        STAGES,
        jobs,
        pods or {},
        NOW,
    )


def _names(starts: list[status.StageStart]) -> set[str]:
    return {s.stage.name for s in starts}


def test_a_new_videojob_starts_only_the_first_stage() -> None:
    plan = _plan({})

    assert _names(plan.start) == {"script_gen"}
    assert plan.status.phase == Phase.RUNNING
    assert plan.status.stage == "script_gen"
    assert plan.status.progress == "0/4"
    assert plan.status.start_time == NOW


def test_voice_and_video_start_together_once_the_script_is_done() -> None:
    plan = _plan({"script_gen": _job("script_gen", "Complete")})

    assert _names(plan.start) == {"voice_gen", "video_gen"}
    assert plan.status.progress == "1/4"


def test_compositing_waits_for_both_of_its_dependencies() -> None:
    plan = _plan(
        {
            "script_gen": _job("script_gen", "Complete"),
            "voice_gen": _job("voice_gen", "Complete"),
            "video_gen": _job("video_gen"),
        }
    )

    assert plan.start == []
    assert plan.status.stage == "video_gen"


def test_a_failed_stage_fails_the_videojob_and_starts_nothing_more() -> None:
    plan = _plan(
        {
            "script_gen": _job("script_gen", "Complete"),
            "voice_gen": _job("voice_gen", "Failed", failed=4, reason="BackoffLimitExceeded"),
            "video_gen": _job("video_gen", "Complete"),
        }
    )

    assert plan.start == []
    assert plan.status.phase == Phase.FAILED
    assert plan.status.stage == "voice_gen"
    voice = next(s for s in plan.status.stages if s.name == "voice_gen")
    assert voice.attempts == 4
    assert voice.message is not None and voice.message.startswith("BackoffLimitExceeded")
    failed = next(c for c in plan.status.conditions if c.type == "Failed")
    assert failed.status == "True" and "voice_gen" in failed.message
    assert ("Warning", "Failed", "VideoJob is Failed") in plan.events


def test_success_copies_the_final_stage_outputs() -> None:
    jobs = {
        name: _job(name, "Complete")
        for name in ("script_gen", "voice_gen", "video_gen", "compositing")
    }
    summary = {
        "videoUri": "s3://b/v.mp4",
        "thumbnailUri": "s3://b/t.jpg",
        "durationSeconds": 29.96,
        "codec": "h264",
    }

    plan = _plan(jobs, pods={"compositing": status.ObservedPod(finished=True, summary=summary)})

    assert plan.status.phase == Phase.SUCCEEDED
    assert plan.status.stage is None and plan.status.progress == "4/4"
    assert plan.status.completion_time == NOW
    assert plan.status.outputs is not None
    assert plan.status.outputs.video_uri == "s3://b/v.mp4"
    assert plan.status.outputs.duration_seconds == 29.96
    succeeded = next(c for c in plan.status.conditions if c.type == "Succeeded")
    assert succeeded.status == "True"


def test_suspend_starts_nothing_and_suspends_running_jobs() -> None:
    plan = _plan(
        {"script_gen": _job("script_gen", "Complete"), "voice_gen": _job("voice_gen")}, suspend=True
    )

    assert plan.start == []
    assert plan.set_suspend == {"vj-voice_gen": True}
    assert plan.status.phase == Phase.SUSPENDED


def test_resume_unsuspends_suspended_jobs() -> None:
    plan = _plan({"script_gen": _job("script_gen", suspended=True)})

    assert plan.set_suspend == {"vj-script_gen": False}


def test_a_finished_stage_whose_job_vanished_is_not_run_again() -> None:
    previous = VideoJobStatus(stages=[StageStatus(name="script_gen", phase=Phase.SUCCEEDED)])

    plan = _plan({}, previous=previous)

    assert _names(plan.start) == {"voice_gen", "video_gen"}


def test_an_unschedulable_pod_is_reported_in_plain_words_and_clears() -> None:
    reason = "0/4 nodes are available: 2 Insufficient nvidia.com/gpu."
    waiting = _plan(
        {"script_gen": _job("script_gen")},
        pods={"script_gen": status.ObservedPod(unschedulable=reason)},
    )

    script = waiting.status.stages[0]
    assert script.message == (
        f"waiting for a GPU: no schedulable node has a free nvidia.com/gpu ({reason})"
    )
    unschedulable = next(c for c in waiting.status.conditions if c.type == "Unschedulable")
    assert unschedulable.status == "True"

    scheduled = _plan({"script_gen": _job("script_gen")}, previous=waiting.status)
    assert scheduled.status.stages[0].message is None
    cleared = next(c for c in scheduled.status.conditions if c.type == "Unschedulable")
    assert cleared.status == "False"


def test_condition_times_move_only_when_the_condition_changes() -> None:
    first = _plan({"script_gen": _job("script_gen")})
    later = status.plan(
        VideoJobSpec(prompt="x"),
        1,
        first.status,
        STAGES,
        {"script_gen": _job("script_gen")},
        {},
        "2026-11-22T07:00:00Z",
    )

    assert later.status == first.status
    assert later.events == []


def test_job_observation_normalises_timestamps_and_reads_failure_reasons() -> None:
    observed = status.observe_job(
        {
            "metadata": {"name": "j", "creationTimestamp": "2026-11-22T06:00:00+00:00"},
            "spec": {"suspend": False},
            "status": {
                "failed": 1,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "PodFailurePolicy",
                        "message": "exit code 2",
                        "lastTransitionTime": "2026-11-22T06:01:00Z",
                    }
                ],
            },
        }
    )

    assert observed.created == "2026-11-22T06:00:00Z"
    assert (observed.finished, observed.reason) == ("Failed", "PodFailurePolicy")
    assert observed.finished_at == "2026-11-22T06:01:00Z"


def test_pod_observation_reads_the_summary_only_from_a_clean_exit() -> None:
    def pod(code: int, message: str) -> dict[str, object]:
        return {
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": code, "message": message}}}
                ]
            }
        }

    assert status.observe_pod(pod(0, '{"videoUri": "s3://x"}')).summary == {"videoUri": "s3://x"}
    assert status.observe_pod(pod(1, '{"videoUri": "s3://x"}')).summary is None
    assert status.observe_pod(pod(0, "not json")).summary is None


def test_a_failed_stage_reports_what_its_program_said() -> None:
    def pod(code: int, message: str) -> dict[str, object]:
        terminated = {"exitCode": code, "message": message}
        return {"status": {"containerStatuses": [{"state": {"terminated": terminated}}]}}

    assert status.observe_pod(pod(2, "log line\ninvalid input: no words\n")).failure == (
        "exit code 2: invalid input: no words"
    )
    assert status.observe_pod(pod(3, "")).failure == "exit code 3"
    long = status.observe_pod(pod(1, "x" * 5000)).failure
    assert long == ("exit code 1: " + "x" * 5000)[: status.MAX_FAILURE_CHARS]
    assert status.observe_pod(pod(0, "{}")).failure is None

    plan = _plan(
        {"script_gen": _job("script_gen", "Failed", failed=1, reason="PodFailurePolicy")},
        pods={"script_gen": status.ObservedPod(finished=True, failure="invalid input: no words")},
    )
    message = plan.status.stages[0].message
    assert message is not None
    assert message.startswith("PodFailurePolicy: exited with code 2 (invalid input); not retried")
    assert "invalid input: no words" in message


def test_a_failed_videojob_suspends_the_stages_still_running() -> None:
    plan = _plan(
        {
            "script_gen": _job("script_gen", "Complete"),
            "voice_gen": _job("voice_gen", "Failed", failed=1, reason="PodFailurePolicy"),
            "video_gen": _job("video_gen"),
        }
    )

    assert plan.set_suspend == {"vj-video_gen": True}


def test_success_waits_for_the_pod_that_carries_the_summary() -> None:
    jobs = {"script_gen": _job("script_gen", "Complete")}

    early = _plan(jobs, pods={"script_gen": status.ObservedPod(finished=False)})
    assert early.status.stages[0].phase == Phase.RUNNING and early.start == []

    late = _plan(
        jobs, pods={"script_gen": status.ObservedPod(finished=True, summary={"scenes": 3})}
    )
    assert late.status.stages[0].phase == Phase.SUCCEEDED
    assert late.status.stages[0].outputs == {"scenes": 3}


def test_a_summary_with_a_wrongly_typed_key_keeps_the_good_ones() -> None:
    jobs = {
        name: _job(name, "Complete")
        for name in ("script_gen", "voice_gen", "video_gen", "compositing")
    }
    summary = {"videoUri": "s3://b/v.mp4", "durationSeconds": "long"}

    plan = _plan(jobs, pods={"compositing": status.ObservedPod(finished=True, summary=summary)})

    assert plan.status.phase == Phase.SUCCEEDED
    assert plan.status.outputs is not None
    assert plan.status.outputs.video_uri == "s3://b/v.mp4"
    assert plan.status.outputs.duration_seconds is None


def test_invalid_spec_is_final() -> None:
    failed = status.invalid(VideoJobStatus(), 1, "the stages' dependencies form a cycle", NOW)

    assert failed.phase == Phase.FAILED
    assert failed.start_time == NOW  # makes the spec immutable
    condition = next(c for c in failed.conditions if c.type == "Failed")
    assert (condition.reason, condition.status) == ("InvalidSpec", "True")


def test_a_failure_posts_warnings() -> None:
    running = _plan({"script_gen": _job("script_gen", "Complete")})
    failed = status.plan(
        VideoJobSpec(prompt="x"),
        1,
        running.status,
        STAGES,
        {
            "script_gen": _job("script_gen", "Complete"),
            "voice_gen": _job("voice_gen", "Failed", failed=4, reason="BackoffLimitExceeded"),
        },
        {},
        NOW,
    )

    assert [(kind, reason) for kind, reason, _ in failed.events] == [
        ("Normal", "StageStarted"),  # voice_gen's Job, first seen failed
        ("Warning", "StageFailed"),
        ("Warning", "Failed"),
    ]


def test_attempts_never_drop_when_ignored_disruptions_end_in_a_deadline() -> None:
    running = _plan({"script_gen": _job("script_gen")})
    # Disrupted pods are not counted in the Job's failed count; the Job
    # then fails on its deadline with failed == 0.
    failed = _plan(
        {"script_gen": _job("script_gen", "Failed", reason="DeadlineExceeded")},
        previous=running.status,
    )

    assert running.status.stages[0].attempts == 1
    assert failed.status.stages[0].attempts == 1


def _container_pod(state: dict[str, object], memory: str | None = "2Gi") -> dict[str, object]:
    limits = {"memory": memory} if memory else {}
    return {
        "spec": {"containers": [{"name": "stage", "resources": {"limits": limits}}]},
        "status": {"containerStatuses": [{"name": "stage", "image": "me/voice:1", "state": state}]},
    }


def test_an_out_of_memory_kill_is_named_with_the_limit_and_is_the_stages_reason() -> None:
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    observed = status.observe_pod(_container_pod(oom))

    assert observed.failure == "OOMKilled: out of memory at its memory limit of 2Gi"
    assert observed.cause == "OOMKilled"
    assert status.observe_pod(_container_pod(oom, memory=None)).failure == (
        "OOMKilled: out of memory at no memory limit"
    )
    plan = _plan(
        {"voice_gen": _job("voice_gen", "Failed", failed=4, reason="BackoffLimitExceeded")},
        pods={"voice_gen": observed},
    )
    voice = next(s for s in plan.status.stages if s.name == "voice_gen")
    assert voice.reason == "OOMKilled"
    assert voice.message is not None and "out of memory at its memory limit of 2Gi" in voice.message
    failed = next(c for c in plan.status.conditions if c.type == "Failed")
    assert failed.reason == "OOMKilled"


def test_the_stage_reason_names_each_failure_of_the_job() -> None:
    for job_reason, stage_reason in (
        ("BackoffLimitExceeded", "BackoffLimitExceeded"),
        ("PodFailurePolicy", "InvalidInput"),
        ("DeadlineExceeded", "DeadlineExceeded"),
    ):
        plan = _plan({"script_gen": _job("script_gen", "Failed", failed=1, reason=job_reason)})
        assert plan.status.stages[0].reason == stage_reason
        failed = next(c for c in plan.status.conditions if c.type == "Failed")
        assert failed.reason == stage_reason


def test_an_image_that_cannot_be_pulled_shows_on_the_running_stage() -> None:
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    observed = status.observe_pod(_container_pod(waiting))

    assert (
        observed.waiting == "ImagePullBackOff: cannot pull image me/voice:1: Back-off pulling image"
    )
    plan = _plan({"script_gen": _job("script_gen")}, pods={"script_gen": observed})
    script = plan.status.stages[0]
    assert script.phase == Phase.RUNNING and script.reason == "ImagePullBackOff"
    assert script.message == observed.waiting
    # Only waits that need someone to fix something: a container being created is not one.
    creating = {"waiting": {"reason": "ContainerCreating"}}
    assert status.observe_pod(_container_pod(creating)).waiting is None


def test_a_pod_the_admission_refuses_shows_on_the_running_stage() -> None:
    refused = status.refused_pod(
        'pods "x" is forbidden: exceeded quota: no-pods', "2026-11-22T05:59:50Z"
    )

    plan = _plan({"script_gen": _job("script_gen")}, pods={"script_gen": refused})

    script = plan.status.stages[0]
    assert script.phase == Phase.RUNNING and script.reason == "PodCreationRefused"
    assert script.message == (
        "PodCreationRefused: the Job controller cannot create its pod:"
        ' pods "x" is forbidden: exceeded quota: no-pods'
    )


def _health(plan_status: VideoJobStatus) -> dict[str, tuple[str, str]]:
    return {
        c.type: (c.status, c.reason)
        for c in plan_status.conditions
        if c.type in status.HEALTH_CONDITIONS
    }


def test_health_conditions_follow_the_phase_as_kstatus_reads_them() -> None:
    all_done = {n: _job(n, "Complete") for n in ("script_gen", "voice_gen", "video_gen")}
    running = _plan({"script_gen": _job("script_gen")})
    suspended = _plan({}, suspend=True)
    succeeded = _plan({**all_done, "compositing": _job("compositing", "Complete")})
    failed = _plan(
        {"script_gen": _job("script_gen", "Failed", failed=4, reason="DeadlineExceeded")}
    )
    invalid = status.invalid(VideoJobStatus(), 1, "a cycle", NOW)

    assert _health(running.status) == {
        "Ready": ("False", "StageRunning"),
        "Reconciling": ("True", "StageRunning"),
        "Stalled": ("False", "NotStalled"),
    }
    assert _health(suspended.status) == {
        "Ready": ("False", "Suspended"),
        "Reconciling": ("False", "Suspended"),
        "Stalled": ("False", "NotStalled"),
    }
    assert _health(succeeded.status) == {
        "Ready": ("True", "Succeeded"),
        "Reconciling": ("False", "Succeeded"),
        "Stalled": ("False", "NotStalled"),
    }
    assert _health(failed.status)["Stalled"] == ("True", "DeadlineExceeded")
    assert _health(failed.status)["Reconciling"] == ("False", "Failed")
    assert _health(invalid)["Stalled"] == ("True", "InvalidSpec")
    reconciling = next(c for c in running.status.conditions if c.type == "Reconciling")
    assert reconciling.message == "running script_gen"


def test_a_videojob_that_finished_before_health_conditions_gets_them_once() -> None:
    old = VideoJobStatus(phase=Phase.SUCCEEDED, stages=[], progress="4/4")

    settled = status.settle(old, 1, {}, {}, NOW)
    again = status.settle(settled.status, 1, {}, {}, "2026-11-22T07:00:00Z")

    assert _health(settled.status)["Ready"] == ("True", "Succeeded")
    assert again.status == settled.status  # nothing more to write
