"""Precedence (VideoJob override > pipeline > configuration > built-in
defaults), the override policy and the DAG."""

from pathlib import Path
from typing import Any

import pytest

from vid_operator import config, pipeline
from vid_operator.api.models import VideoJobSpec
from vid_operator.api.pipelines import VideoPipelineSpec


def _spec(**fields: object) -> VideoJobSpec:
    return VideoJobSpec.model_validate({"prompt": "a cat", **fields})


def _source(*stages: dict[str, Any], policy: dict[str, Any] | None = None) -> pipeline.Source:
    raw: dict[str, Any] = {"stages": list(stages)}
    if policy is not None:
        raw["overridePolicy"] = policy
    return pipeline.pipeline_source("custom", VideoPipelineSpec.model_validate(raw))


def _resolved(
    spec: VideoJobSpec,
    configured: config.OperatorConfig | None = None,
    source: pipeline.Source | None = None,
) -> dict[str, pipeline.Stage]:
    stages = pipeline.resolve(spec, configured or config.OperatorConfig(), source)
    return {s.name: s for s in stages}


RENDER = {
    "name": "render",
    "image": "platform/render:1",
    "gpus": 1,
    "maxGpus": 2,
    "resources": {"limits": {"memory": "16Gi", "cpu": "4"}},
    "env": [{"name": "MODEL", "value": "small"}],
}


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
    assert video.resources is not None
    assert video.resources.limits == {"cpu": "4", "memory": "16Gi"}
    assert loaded.s3.bucket == "media" and loaded.s3.region == "us-east-1"
    assert loaded.stages["script_gen"] == config.OperatorConfig().stages["script_gen"]


def test_each_layer_wins_over_the_ones_below_it() -> None:
    configured = config.from_mapping(
        {"stageDefaults": {"backoffLimit": 5, "activeDeadlineSeconds": 600}}
    )
    source = _source({**RENDER, "activeDeadlineSeconds": 900})
    spec = _spec(
        pipeline="custom",
        stages={"render": {"gpus": 2, "env": [{"name": "STYLE", "value": "noir"}]}},
    )

    render = _resolved(spec, configured, source)["render"]

    assert render.gpus == 2  # the VideoJob's override
    assert [(e.name, e.value) for e in render.env] == [("MODEL", "small"), ("STYLE", "noir")]
    assert render.active_deadline_seconds == 900  # the pipeline's
    assert render.backoff_limit == 5  # the configuration's stageDefaults
    assert render.termination_grace_period_seconds is None  # built-in: Kubernetes' 30 s


def test_the_default_pipeline_takes_the_configurations_stages_and_defaults() -> None:
    configured = config.from_mapping(
        {"stages": {"video_gen": {"backoffLimit": 5}}, "stageDefaults": {"backoffLimit": 1}}
    )
    stages = _resolved(_spec(stages={"video_gen": {"activeDeadlineSeconds": 60}}), configured)

    assert stages["video_gen"].backoff_limit == 5  # the configured stage
    assert stages["script_gen"].backoff_limit == 1  # stageDefaults
    assert stages["video_gen"].active_deadline_seconds == 60  # the override
    assert stages["script_gen"].active_deadline_seconds == 3600  # built-in


def test_environment_variable_names_the_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("watchNamespaces: [media]\n")
    monkeypatch.setenv("VIDOP_CONFIG", str(path))

    assert config.load().watch_namespaces == ["media"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"image": "docker.io/attacker/cryptominer:latest"}, "image"),
        ({"command": ["sh", "-c", "cat /proc/self/environ"]}, "command"),
        ({"args": ["--steal"]}, "args"),
        ({"nodeSelector": {"team": "b"}}, "nodeSelector"),
        ({"tolerations": [{"operator": "Exists"}]}, "tolerations"),
        ({"serviceAccountName": "admin"}, "serviceAccountName"),
    ],
)
def test_the_default_policy_refuses_what_would_run_other_code_or_go_elsewhere(
    override: dict[str, Any], field: str
) -> None:
    spec = _spec(stages={"video_gen": override})

    with pytest.raises(pipeline.InvalidSpec, match=f"spec.stages.video_gen.{field}: the override"):
        pipeline.resolve(spec, config.OperatorConfig())


def test_the_default_policy_allows_resources_gpus_retries_deadlines_and_env() -> None:
    spec = _spec(
        stages={
            "video_gen": {
                "resources": {"limits": {"memory": "6Gi"}},
                "gpus": 1,
                "backoffLimit": 1,
                "activeDeadlineSeconds": 60,
                "env": [{"name": "STYLE", "value": "noir"}],
            }
        }
    )

    video = _resolved(spec)["video_gen"]

    # Laid over the stage's own, amount by amount: the cpu limit stays.
    assert video.resources.limits == {"cpu": "4", "memory": "6Gi"}
    assert video.resources.requests == {"cpu": "2", "memory": "4Gi"}
    assert (video.backoff_limit, video.active_deadline_seconds) == (1, 60)


def test_a_pipeline_narrows_the_policy_but_cannot_widen_it() -> None:
    narrowed = _source(RENDER, policy={"allowedFields": ["gpus"]})
    widened = _source(RENDER, policy={"allowedFields": ["gpus", "image"]})

    with pytest.raises(pipeline.InvalidSpec, match=r"render\.backoffLimit.*it allows gpus"):
        pipeline.resolve(
            _spec(pipeline="custom", stages={"render": {"backoffLimit": 1}}),
            config.OperatorConfig(),
            narrowed,
        )
    with pytest.raises(pipeline.InvalidSpec, match=r"render\.image"):
        pipeline.resolve(
            _spec(pipeline="custom", stages={"render": {"image": "x/y:1"}}),
            config.OperatorConfig(),
            widened,
        )


def test_an_allowed_image_must_match_the_configured_prefixes() -> None:
    configured = config.from_mapping(
        {"overridePolicy": {"allowedFields": ["image"], "allowedImages": ["registry.example/"]}}
    )

    ok = _resolved(_spec(stages={"video_gen": {"image": "registry.example/v:2"}}), configured)
    assert ok["video_gen"].image == "registry.example/v:2"
    with pytest.raises(pipeline.InvalidSpec, match="not an allowed image"):
        pipeline.resolve(_spec(stages={"video_gen": {"image": "docker.io/x:1"}}), configured)


def test_pod_annotations_are_allowed_key_by_key() -> None:
    configured = config.from_mapping(
        {"overridePolicy": {"allowedPodAnnotations": ["kwok.vidop.io/", "example.com/team"]}}
    )
    allowed = {"kwok.vidop.io/run-time": "1s", "example.com/team": "a"}

    stages = _resolved(_spec(stages={"voice_gen": {"podAnnotations": allowed}}), configured)
    assert stages["voice_gen"].pod_annotations == allowed
    for key in (
        "vault.hashicorp.com/agent-inject",
        "container.apparmor.security.beta.kubernetes.io/stage",
    ):
        with pytest.raises(pipeline.InvalidSpec, match=f"pod annotation {key}"):
            pipeline.resolve(
                _spec(stages={"voice_gen": {"podAnnotations": {key: "x"}}}), configured
            )
        with pytest.raises(pipeline.InvalidSpec, match="pod annotation"):
            pipeline.resolve(
                _spec(stages={"voice_gen": {"podAnnotations": {key: "x"}}}), config.OperatorConfig()
            )


def test_resources_and_gpus_stay_under_the_stages_ceiling() -> None:
    source = _source(RENDER)

    def resolve(override: dict[str, Any]) -> pipeline.Stage:
        spec = _spec(pipeline="custom", stages={"render": override})
        return _resolved(spec, source=source)["render"]

    assert resolve({"gpus": 2}).gpus == 2
    assert resolve({"resources": {"requests": {"memory": "16Gi"}}}).resources.requests == {
        "memory": "16Gi"
    }
    with pytest.raises(pipeline.InvalidSpec, match=r"render.gpus: 3 is more .* \(2\)"):
        resolve({"gpus": 3})
    with pytest.raises(pipeline.InvalidSpec, match=r"limits.memory: 17Gi is more .* \(16Gi\)"):
        resolve({"resources": {"limits": {"memory": "17Gi"}}})
    with pytest.raises(pipeline.InvalidSpec, match=r"no ceiling for nvidia\.com/gpu"):
        resolve({"resources": {"limits": {"nvidia.com/gpu": "8"}}})
    # Without maxGpus the stage's own gpus is the ceiling.
    with pytest.raises(pipeline.InvalidSpec, match=r"video_gen.gpus: 2 is more .* \(1\)"):
        pipeline.resolve(_spec(stages={"video_gen": {"gpus": 2}}), config.OperatorConfig())


def test_max_resources_raise_the_ceiling_above_the_limits() -> None:
    source = _source({**RENDER, "maxResources": {"memory": "64Gi"}})
    spec = _spec(
        pipeline="custom", stages={"render": {"resources": {"limits": {"memory": "64Gi"}}}}
    )

    assert _resolved(spec, source=source)["render"].resources.limits == {
        "memory": "64Gi",
        "cpu": "4",
    }


def test_a_videojobs_variables_only_add_to_the_pipelines() -> None:
    replacing = _spec(
        pipeline="custom", stages={"render": {"env": [{"name": "MODEL", "value": "x"}]}}
    )
    with pytest.raises(pipeline.InvalidSpec, match="MODEL is set by VideoPipeline custom"):
        pipeline.resolve(replacing, config.OperatorConfig(), _source(RENDER))

    with_env_from = _source({**RENDER, "envFrom": [{"secretRef": {"name": "api"}}]})
    adding = _spec(pipeline="custom", stages={"render": {"env": [{"name": "STYLE", "value": "x"}]}})
    with pytest.raises(pipeline.InvalidSpec, match="takes variables from envFrom"):
        pipeline.resolve(adding, config.OperatorConfig(), with_env_from)


def test_a_tenants_text_is_taken_literally() -> None:
    configured = config.from_mapping(
        {"overridePolicy": {"allowedFields": ["command", "args", "env"]}}
    )
    spec = _spec(
        stages={
            "script_gen": {
                "command": ["echo", "$(AWS_SECRET_ACCESS_KEY)"],
                "args": ["$$(X)"],
                "env": [{"name": "A", "value": "$(VIDOP_ARTIFACT_PREFIX)"}],
            }
        }
    )

    script = _resolved(spec, configured)["script_gen"]

    assert script.command == ["echo", "$$(AWS_SECRET_ACCESS_KEY)"]
    assert script.args == ["$$$$(X)"]
    assert script.env[-1].value == "$$(VIDOP_ARTIFACT_PREFIX)"


def test_a_pipelines_own_text_may_expand_variables() -> None:
    source = _source({**RENDER, "args": ["--out=$(VIDOP_SCRATCH_DIR)/x"]})

    assert _resolved(_spec(pipeline="custom"), source=source)["render"].args == [
        "--out=$(VIDOP_SCRATCH_DIR)/x"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "VIDOP_ARTIFACT_PREFIX",
        "AWS_ENDPOINT_URL",
        "aws_secret_access_key",
        "LD_PRELOAD",
        "PYTHONPATH",
        "https_proxy",
        "PATH",
    ],
)
def test_a_videojob_cannot_set_reserved_variables(name: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        _spec(stages={"script_gen": {"env": [{"name": name, "value": "x"}]}})


def test_the_output_bucket_is_held_to_the_allowlist() -> None:
    configured = config.from_mapping({"s3": {"bucket": "media", "allowedBuckets": ["team-b"]}})

    pipeline.resolve(_spec(output={"bucket": "team-b"}), configured)
    pipeline.resolve(_spec(output={"bucket": "media"}), configured)
    with pytest.raises(pipeline.InvalidSpec, match=r"spec\.output\.bucket: other-team"):
        pipeline.resolve(_spec(output={"bucket": "other-team"}), configured)


def test_overrides_may_name_only_the_pipelines_stages() -> None:
    spec = _spec(pipeline="custom", stages={"video_gen": {"gpus": 1}})

    with pytest.raises(
        pipeline.InvalidSpec, match="video_gen, which VideoPipeline custom does not"
    ):
        pipeline.resolve(spec, config.OperatorConfig(), _source(RENDER))


def test_a_pipeline_runs_in_dependency_order() -> None:
    source = _source(
        {"name": "mux", "image": "m:1", "dependsOn": ["voice", "loud"]},
        {"name": "loud", "image": "l:1", "dependsOn": ["voice"]},
        {"name": "voice", "image": "v:1"},
    )

    assert list(_resolved(_spec(pipeline="custom"), source=source)) == ["voice", "loud", "mux"]


def test_a_dependency_cycle_is_an_invalid_pipeline() -> None:
    spec = VideoPipelineSpec.model_validate(
        {
            "stages": [
                {"name": "a", "image": "x:1", "dependsOn": ["b"]},
                {"name": "b", "image": "x:1", "dependsOn": ["a"]},
            ]
        }
    )

    with pytest.raises(pipeline.InvalidSpec, match="form a cycle"):
        pipeline.check(spec)


def test_a_dependency_on_a_stage_the_pipeline_lacks_is_an_invalid_pipeline() -> None:
    spec = VideoPipelineSpec.model_validate(
        {"stages": [{"name": "a", "image": "x:1", "dependsOn": ["upscale"]}]}
    )

    with pytest.raises(pipeline.InvalidSpec, match="upscale"):
        pipeline.check(spec)


def test_a_configuration_with_a_stage_the_api_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        config.from_mapping({"stages": {"upscale": {"image": "x"}}})


def test_a_negative_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        _spec(stages={"voice_gen": {"resources": {"limits": {"memory": "-1"}}}})


@pytest.mark.parametrize("prompt", ["\u00a0\u2003", "\u3000", " \t\n", "\u200b\ufeff"])
def test_a_prompt_of_spaces_in_any_script_is_refused(prompt: str) -> None:
    with pytest.raises(ValueError, match="some text"):
        _spec(prompt=prompt)


@pytest.mark.parametrize("prefix", ["../other", "a/../../b", "./x", "x/."])
def test_an_output_prefix_may_not_climb(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"\. or \.\. segments"):
        _spec(output={"prefix": prefix})


def test_a_pipeline_too_large_to_copy_is_invalid() -> None:
    huge = {"nodeAffinity": {"terms": ["x" * 1000] * 300}}  # free-form, so only the size bounds it
    spec = VideoPipelineSpec.model_validate(
        {"stages": [{"name": "a", "image": "x:1", "affinity": huge}]}
    )

    with pytest.raises(pipeline.InvalidSpec, match="more than the 256 KiB"):
        pipeline.check(spec)
