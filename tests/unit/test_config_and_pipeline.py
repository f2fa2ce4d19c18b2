"""Precedence (VideoJob spec > configuration file > built-in defaults) and the DAG."""

from pathlib import Path

import pytest

from vid_operator import config, pipeline
from vid_operator.api.models import StageOverride, VideoJobSpec


def _spec(**fields: object) -> VideoJobSpec:
    return VideoJobSpec.model_validate({"prompt": "a cat", **fields})


def test_built_in_pipeline_runs_script_then_voice_and_video_then_compositing() -> None:
    stages = pipeline.resolve(_spec(), config.OperatorConfig())

    order = [s.name for s in stages]
    assert order[0] == "script_gen" and order[-1] == "compositing"
    assert {s.name: s.depends_on for s in stages}["compositing"] == ["voice_gen", "video_gen"]
    assert [s.name for s in stages if s.gpus] == ["video_gen"]


def test_configuration_file_overrides_built_ins_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "stages:\n"
        "  video_gen:\n"
        "    image: example/video:2\n"
        "    backoffLimit: 5\n"
        "    resources: {limits: {memory: 16Gi}}\n"
        "s3: {bucket: media}\n"
    )

    loaded = config.load(path)

    video = loaded.stages["video_gen"]
    assert video.image == "example/video:2"
    assert video.backoff_limit == 5
    assert video.gpus == 1  # built-in, untouched by the file
    assert video.resources.limits == {"cpu": "4", "memory": "16Gi"}
    assert loaded.s3.bucket == "media" and loaded.s3.region == "us-east-1"
    assert loaded.stages["script_gen"] == config.OperatorConfig().stages["script_gen"]


def test_spec_overrides_configuration_and_unset_fields_keep_it() -> None:
    configured = config.from_mapping({"stages": {"video_gen": {"backoffLimit": 5}}})
    spec = _spec(stages={"video_gen": {"gpus": 2, "image": "mine/video:1"}})

    video = {s.name: s for s in pipeline.resolve(spec, configured)}["video_gen"]

    assert (video.gpus, video.image) == (2, "mine/video:1")  # spec
    assert video.backoff_limit == 5  # configuration
    assert video.active_deadline_seconds == 3600  # built-in


def test_environment_variable_names_the_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("watchNamespaces: [media]\n")
    monkeypatch.setenv("VIDOP_CONFIG", str(path))

    assert config.load().watch_namespaces == ["media"]


def test_a_dependency_cycle_is_an_invalid_spec() -> None:
    spec = _spec(stages={"script_gen": {"dependsOn": ["compositing"]}})

    with pytest.raises(pipeline.InvalidSpec, match="form a cycle"):
        pipeline.resolve(spec, config.OperatorConfig())


def test_a_dependency_on_a_stage_the_pipeline_lacks_is_an_invalid_spec() -> None:
    spec = VideoJobSpec.model_construct(
        prompt="x", stages={"compositing": StageOverride.model_construct(depends_on=["upscale"])}
    )

    with pytest.raises(pipeline.InvalidSpec, match="upscale"):
        pipeline.resolve(spec, config.OperatorConfig())


def test_a_configuration_with_a_stage_the_api_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        config.from_mapping({"stages": {"upscale": {"image": "x"}}})
