"""The stage result cache's key, from the operator's side: what goes in (and
what stays out), when there is none, and how it reaches the stage's Job and
comes back in the status."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from vid_operator import cache, config, contract, jobs, pipeline, status
from vid_operator.api.models import Phase, VideoJobSpec
from vid_operator.api.pipelines import VideoPipelineSpec
from vid_operator.runtime import reconciler
from vid_operator.runtime.reconciler import Snapshot
from vidop_stages.cache import outputs_digest

CONFIG = config.OperatorConfig()
SPEC = {"prompt": "a cat surfing", "durationSeconds": 6}
DIGESTS = {"script_gen": "a" * 64, "voice_gen": "b" * 64, "video_gen": "c" * 64}


def _key(
    stage: str = "compositing",
    spec: dict[str, Any] | None = None,
    digests: dict[str, str | None] | None = None,
    configured: config.OperatorConfig = CONFIG,
) -> str | None:
    parsed = VideoJobSpec.model_validate(spec or SPEC)
    stages = {s.name: s for s in pipeline.resolve(parsed, configured)}
    summaries = {
        name: {"frames": 1, contract.SUMMARY_DIGEST: digest} if digest else {"frames": 1}
        for name, digest in (DIGESTS if digests is None else digests).items()
    }
    return cache.stage_key(parsed, stages[stage], stages, summaries)


def _stage_config(**changes: Any) -> config.OperatorConfig:
    return config.from_mapping({"stages": {"compositing": changes}})


def test_the_same_inputs_give_the_same_key() -> None:
    key = _key()

    assert key is not None and len(key) == 64
    assert _key() == key
    assert _key(spec={**SPEC, "priority": "high", "suspend": True}) == key


@pytest.mark.parametrize(
    "changed",
    [
        {"spec": {**SPEC, "prompt": "a dog surfing"}},
        {"spec": {**SPEC, "durationSeconds": 7}},
        {"spec": {**SPEC, "resolution": "640x360"}},
        {"spec": {**SPEC, "fps": 25}},
        {"spec": {**SPEC, "voice": "en-us"}},
        {"digests": {**DIGESTS, "video_gen": "d" * 64}},
        {"digests": {**DIGESTS, "voice_gen": "d" * 64}},
        # Compositing does not depend on script_gen directly, but may read its files.
        {"digests": {**DIGESTS, "script_gen": "d" * 64}},
        {"configured": _stage_config(image="registry.example/compositing:0.2.0")},
        {"configured": _stage_config(command=["compose"])},
        {"configured": _stage_config(args=["--fast"])},
        {"configured": _stage_config(env=[{"name": "NARRATION_STAGE", "value": "loudness"}])},
        {"spec": {**SPEC, "stages": {"compositing": {"env": [{"name": "CRF", "value": "20"}]}}}},
        {
            "configured": _stage_config(
                env=[{"name": "T", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "t"}}}]
            )
        },
    ],
)
def test_each_input_changes_the_key(changed: dict[str, Any]) -> None:
    assert _key(**changed) != _key()


def test_each_stage_has_its_own_key() -> None:
    assert len({_key("script_gen"), _key("voice_gen"), _key("video_gen"), _key()}) == 4


def test_the_key_leaves_the_videojob_name_uid_and_namespace_out() -> None:
    def first_key(name: str, uid: str, namespace: str) -> str:
        snapshot = Snapshot(
            namespace=namespace,
            name=name,
            uid=uid,
            generation=1,
            spec=SPEC,
            ttl_seconds_after_finished=None,
            status={},
            jobs={},
            pods={},
            now=datetime.datetime(2026, 11, 22, tzinfo=datetime.UTC),
        )
        (created,) = reconciler.reconcile(snapshot, CONFIG).create
        return _env(created.manifest)[contract.ENV_CACHE_KEY]

    assert first_key("cat", "uid-1", "media") == first_key("kitten", "uid-2", "other")


def test_no_key_when_the_videojob_or_the_stage_says_no() -> None:
    assert _key(spec={**SPEC, "cache": False}) is None
    assert _key(configured=_stage_config(cache=False)) is None
    assert _key("video_gen", configured=_stage_config(cache=False)) is not None


def test_no_key_when_a_stage_before_it_has_no_digest() -> None:
    assert _key(digests={**DIGESTS, "script_gen": None}) is None
    assert _key("script_gen", digests={}) is not None


def test_a_videopipelines_stage_is_cached_only_when_its_author_says_so() -> None:
    spec = VideoPipelineSpec.model_validate(
        {
            "stages": [
                {"name": "render", "image": "r:1"},
                {"name": "upscale", "image": "u:1", "dependsOn": ["render"], "cache": True},
            ]
        }
    )
    parsed = VideoJobSpec.model_validate({**SPEC, "pipeline": "two"})
    source = pipeline.pipeline_source("two", spec)
    stages = {s.name: s for s in pipeline.resolve(parsed, CONFIG, source)}
    outputs = {"render": {contract.SUMMARY_DIGEST: "a" * 64}}

    assert cache.stage_key(parsed, stages["render"], stages, outputs) is None
    assert cache.stage_key(parsed, stages["upscale"], stages, outputs) is not None


def _env(manifest: dict[str, Any]) -> dict[str, str]:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_the_job_gets_the_key_and_its_namespaces_location() -> None:
    parsed = VideoJobSpec.model_validate(SPEC)
    (stage, *_) = pipeline.resolve(parsed, CONFIG)
    owner = jobs.Owner(name="cat", namespace="media", uid="uid-1")

    env = _env(jobs.build_stage_job(owner, parsed, stage, CONFIG, cache_key="f" * 64))
    without = _env(jobs.build_stage_job(owner, parsed, stage, CONFIG))

    assert env[contract.ENV_CACHE_KEY] == "f" * 64
    assert (
        env[contract.ENV_CACHE_LOCATION] == f"s3://vid-operator/videojobs/media/_cache/{'f' * 64}/"
    )
    assert contract.ENV_CACHE_KEY not in without and contract.ENV_CACHE_LOCATION not in without


def test_the_next_stage_is_keyed_on_the_summary_of_the_one_before() -> None:
    def voice_gen_key(digest: str) -> str:
        done = status.ObservedJob(
            name="cat-script-gen",
            created="2026-11-22T05:59:00Z",
            suspended=False,
            finished="Complete",
            finished_at="2026-11-22T05:59:30Z",
        )
        pod = status.ObservedPod(
            finished=True, summary={contract.SUMMARY_DIGEST: digest, "scenes": 2}
        )
        snapshot = Snapshot(
            namespace="media",
            name="cat",
            uid="uid-1",
            generation=1,
            spec=SPEC,
            ttl_seconds_after_finished=None,
            status={},
            jobs={"script_gen": done},
            pods={"script_gen": pod},
            now=datetime.datetime(2026, 11, 22, 6, tzinfo=datetime.UTC),
        )
        created = {job.stage: job for job in reconciler.reconcile(snapshot, CONFIG).create}
        return _env(created["voice_gen"].manifest)[contract.ENV_CACHE_KEY]

    assert voice_gen_key("a" * 64) != voice_gen_key("b" * 64)


@pytest.mark.parametrize(("said", "shown"), [(True, True), (False, False), ("yes", None)])
def test_the_status_says_whether_a_stage_was_reused(said: Any, shown: bool | None) -> None:
    spec = VideoJobSpec.model_validate(SPEC)
    stages = pipeline.resolve(spec, CONFIG)
    at = "2026-11-22T06:00:00Z"
    done = status.ObservedJob(
        name="cat-script-gen", created=at, suspended=False, finished="Complete", finished_at=at
    )
    pod = status.ObservedPod(finished=True, summary={contract.SUMMARY_CACHED: said})

    planned = status.plan(
        spec, 1, status.VideoJobStatus(), stages, {"script_gen": done}, {"script_gen": pod}, at
    )

    script = next(s for s in planned.status.stages if s.name == "script_gen")
    assert script.phase == Phase.SUCCEEDED and script.cached is shown


def test_the_outputs_digest_is_of_names_and_contents_only() -> None:
    files = {"video.mp4": "1" * 64, "thumbnail.jpg": "2" * 64}

    assert outputs_digest(files) == outputs_digest(dict(reversed(files.items())))
    assert outputs_digest(files) != outputs_digest({**files, "video.mp4": "3" * 64})
    assert outputs_digest(files) != outputs_digest(
        {"video2.mp4": "1" * 64, "thumbnail.jpg": "2" * 64}
    )


def test_the_cache_location_is_beside_the_namespaces_videojobs() -> None:
    assert (
        contract.cache_location("b", "/videojobs/", "media", "k")
        == "s3://b/videojobs/media/_cache/k/"
    )
    assert contract.cache_location("b", "", "media", "k") == "s3://b/media/_cache/k/"
