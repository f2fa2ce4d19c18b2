"""Queueing without a cluster: the cap's line-up, Kueue's labels on stage Jobs,
and what status.plan makes of a turn in the queue and of Kueue's Workloads."""

from __future__ import annotations

import pytest

from vid_operator import config, jobs, pipeline, queueing, status
from vid_operator.api.models import Phase, Priority, VideoJobSpec, VideoJobStatus
from vid_operator.config import Kueue, OperatorConfig, Queueing
from vid_operator.queueing import Contender, Turn, line_up

NOW = "2026-12-03T10:00:00Z"
STAGES = pipeline.resolve(VideoJobSpec(prompt="x"), config.OperatorConfig())


def _contender(
    uid: str,
    *,
    namespace: str = "team-a",
    priority: Priority = Priority.DEFAULT,
    created: str = "2026-12-03T09:00:00Z",
    running: bool = False,
) -> Contender:
    return Contender(
        uid=uid,
        namespace=namespace,
        name=uid,
        priority=priority,
        created=created,
        running=running,
    )


# -- line_up: who starts, who waits, in which order ----------------------------


def test_without_a_cap_everyone_starts() -> None:
    turns = line_up([_contender(str(i)) for i in range(5)], Queueing())

    assert turns == dict.fromkeys(map(str, range(5)))


def test_the_cap_counts_the_running_and_queues_the_rest_first_come_first_served() -> None:
    contenders = [
        _contender("running", running=True),
        _contender("second", created="2026-12-03T09:00:02Z"),
        _contender("first", created="2026-12-03T09:00:01Z"),
        _contender("third", created="2026-12-03T09:00:03Z"),
    ]

    turns = line_up(contenders, Queueing(max_running=2))

    assert "running" not in turns  # it holds its slot: no turn to take
    assert turns["first"] is None
    assert turns["second"] == Turn(
        1,
        "position 1 in the queue: 2 VideoJobs running, the most the operator runs at once"
        " (queueing.maxRunning)",
    )
    assert turns["third"] is not None and turns["third"].position == 2


def test_high_priority_goes_before_older_default_and_low_ones() -> None:
    contenders = [
        _contender("low", priority=Priority.LOW, created="2026-12-03T08:00:00Z"),
        _contender("default", created="2026-12-03T08:30:00Z"),
        _contender("high", priority=Priority.HIGH, created="2026-12-03T09:30:00Z"),
    ]

    turns = line_up(contenders, Queueing(max_running=1))

    assert turns["high"] is None
    assert [turns[u].position for u in ("default", "low") if turns[u]] == [1, 2]


def test_a_namespace_at_its_cap_lets_other_namespaces_go_first() -> None:
    flood = [
        _contender(f"a{i}", created=f"2026-12-03T09:00:{i:02d}Z", running=i < 2) for i in range(10)
    ]
    other = _contender("b0", namespace="team-b", created="2026-12-03T09:59:00Z")

    turns = line_up([*flood, other], Queueing(max_running=5, max_running_per_namespace=2))

    assert turns["b0"] is None
    waiting = [turns[f"a{i}"] for i in range(2, 10)]
    assert all(t is not None for t in waiting)
    first = waiting[0]
    assert first is not None and first.position == 1
    assert "namespace team-a" in first.message and "maxRunningPerNamespace" in first.message


def test_the_cluster_cap_holds_even_when_each_namespace_has_room() -> None:
    contenders = [_contender(f"{ns}-{i}", namespace=ns) for ns in "abc" for i in range(2)]

    turns = line_up(contenders, Queueing(max_running=3, max_running_per_namespace=5))

    assert sum(t is None for t in turns.values()) == 3


# -- Kueue's labels on stage Jobs ----------------------------------------------


def _kueue_config(**kueue: object) -> OperatorConfig:
    return OperatorConfig(queueing=Queueing(kueue=Kueue.model_validate(kueue)))


@pytest.mark.parametrize(
    ("spec_queue", "kueue", "expected"),
    [
        ("team-a-gpu", {"enabled": True}, "team-a-gpu"),
        (None, {"enabled": True, "defaultQueueName": "shared"}, "shared"),
        (
            None,
            {
                "enabled": True,
                "defaultQueueName": "shared",
                "namespaceQueueNames": {"ns": "ns-queue"},
            },
            "ns-queue",
        ),
        (None, {"enabled": True}, None),
        (None, {"enabled": False, "defaultQueueName": "shared"}, None),
    ],
)
def test_the_queue_name_comes_from_the_spec_then_the_namespace_then_the_default(
    spec_queue: str | None, kueue: dict[str, object], expected: str | None
) -> None:
    spec = VideoJobSpec(prompt="x", queue_name=spec_queue)

    assert queueing.kueue_queue_name(spec, "ns", _kueue_config(**kueue)) == expected


def test_a_stage_job_for_kueue_is_created_suspended_with_its_queue_and_priority_labels() -> None:
    cfg = _kueue_config(enabled=True, workloadPriorityClasses={"high": "premium"})
    spec = VideoJobSpec(prompt="x", queue_name="gpu-team-a", priority=Priority.HIGH)
    owner = jobs.Owner(name="vj", namespace="ns", uid="u1")

    manifest = jobs.build_stage_job(owner, spec, pipeline.resolve(spec, cfg)[0], cfg)

    assert manifest["spec"]["suspend"] is True
    labels = manifest["metadata"]["labels"]
    assert labels[queueing.QUEUE_NAME_LABEL] == "gpu-team-a"
    assert labels[queueing.WORKLOAD_PRIORITY_LABEL] == "premium"
    # Not on the pods: Kueue reads the Job's.
    assert queueing.QUEUE_NAME_LABEL not in manifest["spec"]["template"]["metadata"]["labels"]


def test_a_stage_job_without_kueue_has_no_kueue_labels_and_runs_at_once() -> None:
    spec = VideoJobSpec(prompt="x")
    owner = jobs.Owner(name="vj", namespace="ns", uid="u1")

    manifest = jobs.build_stage_job(owner, spec, STAGES[0], OperatorConfig())

    assert manifest["spec"]["suspend"] is False
    assert not any(k.startswith("kueue.x-k8s.io/") for k in manifest["metadata"]["labels"])


def test_a_queue_name_without_kueue_configured_is_an_invalid_spec() -> None:
    with pytest.raises(pipeline.InvalidSpec, match="not configured for Kueue"):
        pipeline.resolve(VideoJobSpec(prompt="x", queue_name="q"), OperatorConfig())


# -- status.plan with a turn in the queue ----------------------------------------


def _job(
    stage: str, *, finished: str | None = None, suspended: bool = False, queue: str | None = None
) -> status.ObservedJob:
    return status.ObservedJob(
        name=f"vj-{stage}",
        created="2026-12-03T09:59:00Z",
        suspended=suspended,
        finished=finished,
        finished_at=NOW if finished else None,
        queue_name=queue,
    )


def _plan(
    jobs_: dict[str, status.ObservedJob],
    *,
    turn: Turn | None = None,
    suspend: bool = False,
    workloads: dict[str, status.ObservedWorkload] | None = None,
    previous: VideoJobStatus | None = None,
) -> status.Plan:
    return status.plan(
        VideoJobSpec(prompt="x", suspend=suspend),
        1,
        previous or VideoJobStatus(),
        STAGES,
        jobs_,
        {},
        NOW,
        workloads=workloads,
        turn=turn,
    )


def _condition(plan: status.Plan, kind: str) -> tuple[str, str, str]:
    found = next(c for c in plan.status.conditions if c.type == kind)
    return found.status, found.reason, found.message


def test_a_videojob_held_by_the_cap_starts_nothing_and_says_where_it_stands() -> None:
    turn = Turn(3, "position 3 in the queue: 2 VideoJobs run, ...")

    plan = _plan({}, turn=turn)

    assert plan.start == []
    assert plan.status.phase == Phase.QUEUED
    assert plan.status.queue_position == 3
    assert _condition(plan, "Queued") == ("True", "ConcurrencyLimit", turn.message)
    # kstatus: in progress, not failed.
    assert _condition(plan, "Reconciling")[0] == "True"
    assert _condition(plan, "Stalled")[0] == "False"


def test_a_resumed_videojob_held_by_the_cap_keeps_its_jobs_suspended() -> None:
    done = {"script_gen": _job("script_gen", finished="Complete")}
    held = {**done, "video_gen": _job("video_gen", suspended=True)}

    plan = _plan(held, turn=Turn(1, "position 1 in the queue"))

    assert plan.set_suspend == {}
    assert plan.start == []
    assert plan.status.phase == Phase.QUEUED


def test_once_its_turn_comes_the_queued_condition_clears_and_the_first_stage_starts() -> None:
    queued = _plan({}, turn=Turn(1, "position 1 in the queue")).status

    plan = _plan({}, previous=queued)

    assert [s.stage.name for s in plan.start] == ["script_gen"]
    assert plan.status.phase == Phase.RUNNING
    assert plan.status.queue_position is None
    assert _condition(plan, "Queued")[:2] == ("False", "NotQueued")


# -- status.plan with Kueue's Workloads -------------------------------------------


def test_a_stage_job_kueue_has_not_admitted_is_queued_with_kueues_words() -> None:
    said = "couldn't assign flavors to pod set main: insufficient quota for nvidia.com/gpu"
    waiting = {
        "script_gen": _job("script_gen", finished="Complete"),
        "video_gen": _job("video_gen", suspended=True, queue="gpu-team-a"),
        "voice_gen": _job("voice_gen", finished="Complete"),
    }
    workloads = {"video_gen": status.ObservedWorkload(name="job-vj-video-gen-1", message=said)}

    plan = _plan(waiting, workloads=workloads)

    video = next(s for s in plan.status.stages if s.name == "video_gen")
    assert video.phase == Phase.QUEUED
    assert video.message == f"waiting for quota in LocalQueue gpu-team-a: {said}"
    assert plan.status.phase == Phase.QUEUED
    assert plan.status.stage == "video_gen"
    assert _condition(plan, "Queued")[:2] == ("True", "WaitingForQuota")
    # Kueue resumes it: the operator never does.
    assert plan.set_suspend == {} and plan.set_active == {}


def test_suspending_a_videojob_stops_kueues_jobs_through_their_workloads() -> None:
    running = {"script_gen": _job("script_gen", queue="q")}
    workloads = {"script_gen": status.ObservedWorkload(name="wl", admitted=True)}

    suspended = _plan(running, suspend=True, workloads=workloads)
    stopped = {"script_gen": _job("script_gen", suspended=True, queue="q")}
    inactive = {"script_gen": status.ObservedWorkload(name="wl", active=False)}
    held = _plan(stopped, suspend=True, workloads=inactive)
    resumed = _plan(stopped, workloads=inactive, previous=held.status)

    assert suspended.set_suspend == {} and suspended.set_active == {"wl": False}
    assert held.status.stages[0].phase == Phase.SUSPENDED and held.set_active == {}
    assert resumed.set_suspend == {} and resumed.set_active == {"wl": True}
    # Waiting for Kueue again, not Running: nothing runs until it admits it.
    assert resumed.status.stages[0].phase == Phase.QUEUED
    assert resumed.status.phase == Phase.QUEUED


def test_a_workload_kueue_deactivated_fails_the_stage_and_is_not_reactivated() -> None:
    running = _plan(
        {"script_gen": _job("script_gen", queue="q")},
        workloads={"script_gen": status.ObservedWorkload(name="wl", admitted=True)},
    )
    said = "exceeded the maximum execution time"
    deactivated = {"script_gen": status.ObservedWorkload(name="wl", active=False, message=said)}

    plan = _plan(
        {"script_gen": _job("script_gen", suspended=True, queue="q")},
        workloads=deactivated,
        previous=running.status,
    )

    stage = plan.status.stages[0]
    assert stage.phase == Phase.FAILED and stage.reason == "WorkloadDeactivated"
    assert stage.message == f"WorkloadDeactivated: its Kueue Workload wl was deactivated: {said}"
    assert plan.status.phase == Phase.FAILED
    assert plan.set_active == {}


def test_a_failed_videojob_stops_its_other_kueue_jobs_through_their_workloads() -> None:
    failed = status.ObservedJob(
        name="vj-voice_gen", created=NOW, suspended=False, finished="Failed", queue_name="q"
    )
    jobs_ = {
        "script_gen": _job("script_gen", finished="Complete"),
        "voice_gen": failed,
        "video_gen": _job("video_gen", queue="q"),
    }
    workloads = {"video_gen": status.ObservedWorkload(name="wl-video", admitted=True)}

    plan = _plan(jobs_, workloads=workloads)

    assert plan.status.phase == Phase.FAILED
    assert plan.set_active == {"wl-video": False}
    assert plan.set_suspend == {}


def test_a_workload_is_read_for_why_it_waits() -> None:
    workload = {
        "metadata": {"name": "job-x-1"},
        "spec": {"active": True},
        "status": {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "False",
                    "reason": "Pending",
                    "message": "insufficient quota for nvidia.com/gpu in flavor gpu",
                }
            ]
        },
    }
    admitted = {
        "metadata": {"name": "job-y-1"},
        "spec": {"active": False},
        "status": {"conditions": [{"type": "Admitted", "status": "True"}]},
    }

    assert status.observe_workload(workload) == status.ObservedWorkload(
        name="job-x-1", message="insufficient quota for nvidia.com/gpu in flavor gpu"
    )
    assert status.observe_workload(admitted) == status.ObservedWorkload(
        name="job-y-1", active=False, admitted=True
    )


# -- the scheduler's words, and what to say first ----------------------------------


@pytest.mark.parametrize(
    ("said", "gpus", "first"),
    [
        (
            "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) were"
            " unschedulable. preemption: 0/4 nodes are available: 4 Preemption is not helpful.",
            1,
            "waiting for a GPU: no schedulable node has 1 free nvidia.com/gpu",
        ),
        (
            "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.",
            0,
            "waiting for a node: no schedulable node has enough free cpu, memory",
        ),
        (
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
            0,
            "waiting for a node: no node matches its node selector or affinity",
        ),
        ("no nodes available to schedule pods", 0, "waiting for a node"),
    ],
)
def test_an_unschedulable_stage_says_what_it_waits_for_then_the_schedulers_words(
    said: str, gpus: int, first: str
) -> None:
    assert status.unschedulable_in_words(said, gpus) == f"{first} ({said})"


def test_only_gpu_stages_go_through_kueue_where_the_configuration_says_so() -> None:
    cfg = _kueue_config(enabled=True, defaultQueueName="gpu", stages="gpu")
    spec = VideoJobSpec(prompt="x")
    owner = jobs.Owner(name="vj", namespace="ns", uid="u1")

    built = {s.name: jobs.build_stage_job(owner, spec, s, cfg) for s in pipeline.resolve(spec, cfg)}

    assert built["video_gen"]["metadata"]["labels"][queueing.QUEUE_NAME_LABEL] == "gpu"
    assert built["video_gen"]["spec"]["suspend"] is True
    assert queueing.QUEUE_NAME_LABEL not in built["script_gen"]["metadata"]["labels"]
    assert built["script_gen"]["spec"]["suspend"] is False
