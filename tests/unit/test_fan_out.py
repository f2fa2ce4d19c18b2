"""A stage that fans out over items, and progress from inside a stage: the
Indexed Job built for it, its item count, its status, and the write budget."""

import dataclasses
import datetime
import json
from typing import Any

import pytest

from vid_operator import config, contract, jobs, pipeline, status
from vid_operator.api.models import Phase, VideoJobSpec, VideoJobStatus
from vid_operator.api.pipelines import VideoPipelineSpec
from vid_operator.runtime import reconciler
from vidop_stages.runtime import Item, read_item

OWNER = jobs.Owner(name="cat", namespace="media", uid="uid-1")
SPEC = VideoJobSpec(prompt="a cat surfing")
CONFIG = config.OperatorConfig()
STAGES = {s.name: s for s in pipeline.resolve(SPEC, CONFIG)}
NOW = datetime.datetime(2026, 11, 22, 6, tzinfo=datetime.UTC)
NOW_TEXT = "2026-11-22T06:00:00Z"


def _video_gen_job(items: int, **settings: Any) -> dict[str, Any]:
    stage = dataclasses.replace(STAGES["video_gen"], **settings)
    return jobs.build_stage_job(OWNER, SPEC, stage, CONFIG, items=items)


def test_the_default_pipeline_runs_video_gen_once_per_scene_of_the_script() -> None:
    fan_out = STAGES["video_gen"].fan_out
    assert fan_out is not None
    assert (fan_out.over, fan_out.count_field) == ("script_gen", "scenes")
    assert pipeline.fan_out_items(STAGES["video_gen"], {"script_gen": {"scenes": 8}}) == 8
    assert pipeline.fan_out_items(STAGES["voice_gen"], {"script_gen": {"scenes": 8}}) is None


def test_a_fanned_out_stage_is_one_indexed_job_each_item_retried_alone() -> None:
    spec = _video_gen_job(8)["spec"]

    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (8, 8)
    assert spec["backoffLimitPerIndex"] == STAGES["video_gen"].backoff_limit == 3
    assert spec["maxFailedIndexes"] == 0
    assert spec["backoffLimit"] == 8 * 4
    # Exit code 2 still fails the whole Job at once.
    assert spec["podFailurePolicy"] == jobs.pod_failure_policy()
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[contract.ENV_ITEMS] == "8"
    assert contract.ENV_ITEM_INDEX not in env  # the Job controller's to set


def test_parallelism_and_per_item_retries_come_from_the_stage() -> None:
    stage = STAGES["video_gen"]
    assert stage.fan_out is not None
    narrowed = stage.fan_out.model_copy(update={"parallelism": 3, "backoff_limit_per_index": 1})
    spec = _video_gen_job(8, fan_out=narrowed)["spec"]
    assert (spec["parallelism"], spec["backoffLimitPerIndex"], spec["backoffLimit"]) == (3, 1, 16)
    # Never more pods than items.
    assert _video_gen_job(2, fan_out=narrowed)["spec"]["parallelism"] == 2


def test_a_stage_without_fan_out_is_an_ordinary_job() -> None:
    spec = jobs.build_stage_job(OWNER, SPEC, STAGES["voice_gen"], CONFIG)["spec"]
    assert not {"completionMode", "completions", "parallelism", "backoffLimitPerIndex"} & set(spec)


@pytest.mark.parametrize(
    ("summary", "said"),
    [
        (None, "which has none"),
        ({}, "which has none"),
        ({"scenes": 0}, "which has 0"),
        ({"scenes": 65}, "which has 65"),
        ({"scenes": True}, "which has True"),
        ({"scenes": "8"}, "which has 8"),
        ({"scenes": 2.5}, "which has 2.5"),
    ],
)
def test_an_item_count_that_is_not_1_to_64_is_refused_in_words(
    summary: dict[str, Any] | None, said: str
) -> None:
    with pytest.raises(pipeline.InvalidSpec) as refused:
        pipeline.fan_out_items(STAGES["video_gen"], {"script_gen": summary})
    assert str(refused.value) == (
        f"stage video_gen fans out over the scenes of script_gen's summary, {said}:"
        " it must be a whole number from 1 to 64"
    )


def test_a_pipeline_stage_may_only_fan_out_over_a_dependency() -> None:
    spec = VideoPipelineSpec.model_validate(
        {
            "stages": [
                {"name": "plan", "image": "i"},
                {"name": "render", "image": "i", "fanOut": {"over": "plan"}},
            ]
        }
    )
    with pytest.raises(pipeline.InvalidSpec, match=r"fanOut\.over names plan, which is not one"):
        pipeline.check(spec)


def _reconcile(
    jobs_by_stage: dict[str, status.ObservedJob],
    pods: dict[str, status.ObservedPod],
    previous: dict[str, Any] | None = None,
) -> reconciler.Outcome:
    snapshot = reconciler.Snapshot(
        namespace="media",
        name="cat",
        uid="uid-1",
        generation=1,
        spec={"prompt": "a cat surfing"},
        ttl_seconds_after_finished=None,
        status=previous or {},
        jobs=jobs_by_stage,
        pods=pods,
        now=NOW,
    )
    return reconciler.reconcile(snapshot, CONFIG)


def _done(stage: str) -> status.ObservedJob:
    return status.ObservedJob(
        name=f"cat-{stage}", created="2026-11-22T05:59:00Z", suspended=False, finished="Complete"
    )


def test_the_reconciler_creates_the_indexed_job_with_the_scripts_scene_count() -> None:
    script = status.ObservedPod(finished=True, summary={"scenes": 5, "digest": "d" * 64})

    outcome = _reconcile({"script_gen": _done("script_gen")}, {"script_gen": script})

    video = next(job for job in outcome.create if job.stage == "video_gen")
    assert video.manifest["spec"]["completions"] == 5
    assert video.observed.items == 5


def test_a_script_without_a_scene_count_fails_the_videojob_saying_why() -> None:
    script = status.ObservedPod(finished=True, summary={"words": 40})

    outcome = _reconcile({"script_gen": _done("script_gen")}, {"script_gen": script})

    assert outcome.create == ()
    assert outcome.status["phase"] == Phase.FAILED
    (warning,) = [e for e in outcome.events if e[0] == "Warning"]
    assert warning[1] == "InvalidSpec"
    assert "fans out over the scenes of script_gen's summary, which has none" in warning[2]


def _indexed(observed: dict[str, Any]) -> status.ObservedJob:
    manifest = _video_gen_job(8)
    manifest["metadata"]["creationTimestamp"] = "2026-11-22T05:59:00Z"
    return status.observe_job({**manifest, **observed})


def test_items_done_out_of_all_is_the_stages_progress_and_in_the_progress_column() -> None:
    job = _indexed({"status": {"succeeded": 5, "active": 3, "failed": 1}})
    assert (job.items, job.succeeded, job.active) == (8, 5, 3)

    plan = status.plan(
        SPEC, 1, VideoJobStatus(), list(STAGES.values()), {"video_gen": job}, {}, NOW_TEXT
    )

    video = next(s for s in plan.status.stages if s.name == "video_gen")
    assert video.phase == Phase.RUNNING and video.progress == "5/8"
    assert video.attempts == 9  # every pod so far, the failed one included
    assert plan.status.progress == "0/4 (video_gen 5/8)"


def test_a_finished_fan_out_succeeds_with_its_item_count_and_cache_key_as_outputs() -> None:
    complete = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-22T06:00:00Z"}
    manifest = _video_gen_job(8)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": contract.ENV_CACHE_KEY, "value": "k" * 64})
    job = status.observe_job({**manifest, "status": {"succeeded": 8, "conditions": [complete]}})
    # The newest pod may still be finishing: the Job's word is what counts.
    running_pod = status.ObservedPod()

    plan = status.plan(
        SPEC,
        1,
        VideoJobStatus(),
        list(STAGES.values()),
        {"video_gen": job},
        {"video_gen": running_pod},
        NOW_TEXT,
    )

    video = next(s for s in plan.status.stages if s.name == "video_gen")
    assert video.phase == Phase.SUCCEEDED and video.progress is None
    assert video.outputs == {"items": 8, contract.SUMMARY_DIGEST: "k" * 64}


def test_an_item_out_of_retries_fails_the_stage_as_out_of_retries() -> None:
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "MaxFailedIndexesExceeded",
        "message": "Job has exceeded the specified maximal number of failed indexes",
    }
    job = _indexed({"status": {"failed": 4, "conditions": [failed]}})

    plan = status.plan(
        SPEC, 1, VideoJobStatus(), list(STAGES.values()), {"video_gen": job}, {}, NOW_TEXT
    )

    video = next(s for s in plan.status.stages if s.name == "video_gen")
    assert video.phase == Phase.FAILED and video.reason == "BackoffLimitExceeded"
    assert video.message is not None and video.message.startswith(
        "MaxFailedIndexesExceeded: an item failed on every retry (backoffLimitPerIndex reached)"
    )


def test_a_stage_reports_its_own_percent_and_words_through_its_pod() -> None:
    pod = status.observe_pod(
        {
            "metadata": {
                "annotations": {
                    contract.PROGRESS_ANNOTATION: contract.encode_progress(42.7, "mixing  voices")
                }
            },
            "status": {"phase": "Running"},
        }
    )
    job = status.ObservedJob(name="cat-voice-gen", created="2026-11-22T05:59:00Z", suspended=False)

    plan = status.plan(
        SPEC,
        1,
        VideoJobStatus(),
        list(STAGES.values()),
        {"voice_gen": job},
        {"voice_gen": pod},
        NOW_TEXT,
    )

    voice = next(s for s in plan.status.stages if s.name == "voice_gen")
    assert (voice.progress, voice.message) == ("42%", "mixing voices")
    assert plan.status.progress == "0/4 (voice_gen 42%)"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "40",
        "[40]",
        '{"percent": 101}',
        '{"percent": -1}',
        '{"percent": true}',
        '{"percent": 4.5}',
        '{"percent": 4, "message": 7}',
        json.dumps({"percent": 4, "message": "x" * 400}),
    ],
)
def test_a_progress_annotation_that_is_not_what_the_contract_writes_is_ignored(
    value: str | None,
) -> None:
    assert contract.read_progress(value) is None


def test_progress_is_encoded_clamped_and_short_enough_for_the_admission_bound() -> None:
    assert contract.read_progress(contract.encode_progress(150, "done")) == contract.Progress(
        100, "done"
    )
    long_cjk = contract.encode_progress(50, "渲染场景" * 100)
    assert len(long_cjk.encode()) <= contract.MAX_PROGRESS_BYTES
    read = contract.read_progress(long_cjk)
    assert read is not None and read.percent == 50 and read.message.startswith("渲染场景")


def test_only_counter_moves_are_held_longer_a_stage_transition_is_not() -> None:
    script = status.ObservedPod(finished=True, summary={"scenes": 8})
    jobs_now = {"script_gen": _done("script_gen"), "video_gen": _indexed({"status": {}})}
    pods = {"script_gen": script}
    started = _reconcile(jobs_now, pods)
    jobs_now["voice_gen"] = dataclasses.replace(_done("voice_gen"), finished=None)
    before = _reconcile(jobs_now, pods, started.status)

    jobs_now["video_gen"] = _indexed({"status": {"succeeded": 3, "active": 5}})
    counted = _reconcile(jobs_now, pods, before.status)
    jobs_now["voice_gen"] = _done("voice_gen")
    finished = _reconcile(jobs_now, pods, before.status)

    assert counted.hold_back and counted.counters_only
    assert counted.patch["progress"] == "1/4 (video_gen 3/8)"
    assert finished.hold_back and not finished.counters_only


def test_a_pod_reads_its_item_from_the_job_controllers_index() -> None:
    both = {contract.ENV_ITEMS: "8", contract.ENV_ITEM_INDEX: "7"}
    assert read_item(both) == Item(index=7, count=8)
    assert read_item({}) is None
    for wrong in ({contract.ENV_ITEMS: "8"}, {**both, contract.ENV_ITEM_INDEX: "8"}):
        with pytest.raises(ValueError):
            read_item(wrong)
    assert contract.item_folder(7) == "items/0007/"


def _queued(items: int, parallelism: int | None = None) -> dict[str, Any]:
    configured = config.from_mapping(
        {"queueing": {"kueue": {"enabled": True, "defaultQueueName": "gpus"}}}
    )
    stage = STAGES["video_gen"]
    assert stage.fan_out is not None
    stage = dataclasses.replace(
        stage, fan_out=stage.fan_out.model_copy(update={"parallelism": parallelism})
    )
    return jobs.build_stage_job(OWNER, SPEC, stage, configured, items=items)


def test_kueue_may_admit_a_fan_out_on_fewer_gpus_only_where_it_accepts_that() -> None:
    partial = "kueue.x-k8s.io/job-min-parallelism"
    assert _queued(8)["metadata"]["annotations"] == {partial: "1"}
    assert _queued(8)["spec"]["suspend"] is True
    # Kueue refuses a minimum that is not below the Job's parallelism.
    assert "annotations" not in _queued(1)["metadata"]
    assert "annotations" not in _queued(8, parallelism=1)["metadata"]


def test_fan_out_and_on_oom_are_refused_together() -> None:
    spec = VideoPipelineSpec.model_validate(
        {
            "stages": [
                {"name": "plan", "image": "i"},
                {
                    "name": "render",
                    "image": "i",
                    "dependsOn": ["plan"],
                    "fanOut": {"over": "plan"},
                    "onOOM": {"maxMemory": "8Gi"},
                },
            ]
        }
    )
    with pytest.raises(pipeline.InvalidSpec, match="fanOut and onOOM cannot be used together"):
        pipeline.check(spec)


def test_a_refused_upstream_summary_is_named_when_the_count_is_missing() -> None:
    with pytest.raises(pipeline.InvalidSpec) as refused:
        pipeline.fan_out_items(
            STAGES["video_gen"],
            {"script_gen": None},
            {"script_gen": "its summary was left out: it is not JSON"},
        )
    assert str(refused.value).endswith("(script_gen: its summary was left out: it is not JSON)")


def test_a_stage_that_reports_progress_gets_a_pod_bound_token_and_nothing_more() -> None:
    configured = config.from_mapping({"stageProgress": {"serviceAccountName": "progress"}})
    voice = {s.name: s for s in pipeline.resolve(SPEC, configured)}
    job = jobs.build_stage_job(OWNER, SPEC, voice["voice_gen"], configured)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert pod["serviceAccountName"] == "progress"
    assert pod["automountServiceAccountToken"] is False
    (volume,) = [v for v in pod["volumes"] if v["name"] == contract.PROGRESS_VOLUME]
    token, ca = volume["projected"]["sources"]
    assert token == {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}
    assert ca["configMap"]["name"] == "kube-root-ca.crt"
    assert {
        "name": contract.PROGRESS_VOLUME,
        "mountPath": contract.PROGRESS_DIR,
        "readOnly": True,
    } in container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env[contract.ENV_POD_NAME]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[contract.ENV_PROGRESS_TOKEN_FILE]["value"] == "/var/run/vidop/progress/token"
    assert contract.ENV_API_SERVER not in env  # the in-cluster address


def test_no_progress_token_for_a_fan_out_a_pipelines_own_account_or_when_off() -> None:
    configured = config.from_mapping({"stageProgress": {"serviceAccountName": "progress"}})
    stages = {s.name: s for s in pipeline.resolve(SPEC, configured)}
    own_account = dataclasses.replace(stages["voice_gen"], service_account_name="renderer")
    for stage, configuration, items in (
        (stages["video_gen"], configured, 8),
        (own_account, configured, None),
        (stages["voice_gen"], CONFIG, None),
    ):
        pod = jobs.build_stage_job(OWNER, SPEC, stage, configuration, items=items)["spec"][
            "template"
        ]["spec"]
        assert all(v["name"] != contract.PROGRESS_VOLUME for v in pod["volumes"]), stage.name
        assert pod.get("serviceAccountName") != "progress"


def test_an_indexed_jobs_name_leaves_room_for_its_pods_hostnames() -> None:
    long_owner = jobs.Owner(name="a" * 240 + "-long-name", namespace="media", uid="uid-1")
    job = jobs.build_stage_job(long_owner, SPEC, STAGES["video_gen"], CONFIG, items=64)
    name = job["metadata"]["name"]
    # Pods of an Indexed Job are called <job>-<index> as hosts: a DNS label.
    assert len(f"{name}-{contract.MAX_ITEMS - 1}") <= 63
    assert (
        len(jobs.build_stage_job(long_owner, SPEC, STAGES["voice_gen"], CONFIG)["metadata"]["name"])
        == 63
    )


def test_an_indexed_jobs_name_has_no_dots_and_stays_apart_from_the_dashed_one() -> None:
    dotted = jobs.Owner(name="odd.name", namespace="media", uid="uid-1")
    dashed = jobs.Owner(name="odd-name", namespace="media", uid="uid-2")
    names = [
        jobs.build_stage_job(owner, SPEC, STAGES["video_gen"], CONFIG, items=2)["metadata"]["name"]
        for owner in (dotted, dashed)
    ]
    assert "." not in names[0] and names[0].startswith("odd-name-")
    assert names[0] != names[1] == "odd-name-video-gen"
    # A Job that is not indexed keeps the VideoJob's name as it is.
    plain = jobs.build_stage_job(dotted, SPEC, STAGES["voice_gen"], CONFIG)
    assert plain["metadata"]["name"] == "odd.name-voice-gen"
