"""Every manifest under examples/ is what the API accepts and the operator can
run: VideoPipelines parse and have no cycle, VideoJobs parse and resolve on
the pipeline they name within its override policy."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from vid_operator import config, pipeline
from vid_operator.api.models import VideoJobSpec
from vid_operator.api.pipelines import VideoPipelineSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PIPELINES = {
    path.stem: yaml.safe_load(path.read_text())
    for path in sorted((EXAMPLES / "pipelines").glob("*.yaml"))
}


def _source(name: str) -> pipeline.Source:
    return pipeline.pipeline_source(name, VideoPipelineSpec.model_validate(PIPELINES[name]["spec"]))


@pytest.mark.parametrize("name", list(PIPELINES))
def test_each_example_pipeline_is_valid(name: str) -> None:
    manifest: dict[str, Any] = PIPELINES[name]

    assert manifest["kind"] == "VideoPipeline" and manifest["metadata"]["name"] == name
    spec = VideoPipelineSpec.model_validate(manifest["spec"])
    pipeline.check(spec)
    job = VideoJobSpec(prompt="an example", pipeline=name)
    assert pipeline.resolve(job, config.OperatorConfig(), _source(name))


def test_the_default_pipeline_example_is_the_built_in_default() -> None:
    job = VideoJobSpec(prompt="an example")
    built_in = pipeline.resolve(job, config.OperatorConfig())
    written_out = pipeline.resolve(job, config.OperatorConfig(), _source("default"))

    assert written_out == built_in


def test_the_longer_example_fans_in_through_a_stage_the_default_lacks() -> None:
    stages = pipeline.resolve(
        VideoJobSpec(prompt="x", pipeline="narrated-loudness"),
        config.OperatorConfig(),
        _source("narrated-loudness"),
    )

    by_name = {s.name: s for s in stages}
    assert by_name["compositing"].depends_on == ["loudness", "video_gen"]
    assert {e.name: e.value for e in by_name["compositing"].env}["NARRATION_STAGE"] == "loudness"
    assert [s.name for s in stages].index("loudness") < [s.name for s in stages].index(
        "compositing"
    )


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("videojob*.yaml")), ids=lambda p: p.name)
def test_each_example_videojob_runs_on_its_pipeline(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    spec = VideoJobSpec.model_validate(manifest["spec"])

    source = _source(spec.pipeline) if spec.pipeline else None
    assert pipeline.resolve(spec, config.OperatorConfig(), source)
