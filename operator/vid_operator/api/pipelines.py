"""The VideoPipeline API: a platform team's pipeline, as pydantic models.

A VideoPipeline lists the stages a VideoJob in its namespace runs (when the
VideoJob names it in ``spec.pipeline``) and may narrow what those VideoJobs
may override. :mod:`vid_operator.api.crd` generates its CRD from these
models; the operator parses every VideoPipeline it sees with them and writes
their ``status``. Pure.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vid_operator.api.common import (
    MAX_STAGE_NAME_LENGTH,
    STAGE_NAME_PATTERN,
    CamelModel,
    Condition,
    OverridableField,
    StageTemplate,
)

KIND = "VideoPipeline"
PLURAL = "videopipelines"
SINGULAR = "videopipeline"
SHORT_NAMES = ["vp"]

MAX_STAGES = 16
MAX_STAGE_CHARS = 65536
"""Characters of a stage's command, args, env values and pod annotations
together (a CEL rule), so a pipeline, and the copy each VideoJob keeps of it,
stays small."""

StageName = Annotated[
    str, Field(min_length=1, max_length=MAX_STAGE_NAME_LENGTH, pattern=STAGE_NAME_PATTERN)
]


class PipelineStage(StageTemplate):
    """One stage: a name, the stages it waits for, and how it runs."""

    name: StageName
    """Lower-case letters, digits, - and _; the stage's Job is
    ``<videojob>-<name>`` and its artifacts are under ``<name>/``."""
    depends_on: list[StageName] | None = Field(default=None, max_length=MAX_STAGES - 1)
    """Stages that must succeed before this one starts; their outputs are
    under their names in the artifact prefix."""
    image: str = Field(min_length=1, max_length=512)
    """Container image. Required."""


class PipelineOverridePolicy(CamelModel):
    """What VideoJobs on this pipeline may override, within the operator's
    policy (a field allowed here but not there stays refused)."""

    allowed_fields: list[OverridableField] | None = Field(default=None, max_length=16)
    """Fields of ``spec.stages.<name>`` a VideoJob may set; absent: whatever
    the operator's policy allows."""
    allowed_pod_annotations: list[Annotated[str, Field(max_length=317)]] | None = Field(
        default=None, max_length=32
    )
    """Annotation keys (or prefixes ending in /) a VideoJob may put on pods;
    absent: the operator's list."""


class VideoPipelineSpec(CamelModel):
    """The stages, in any order: ``dependsOn`` makes the graph."""

    stages: list[PipelineStage] = Field(min_length=1, max_length=MAX_STAGES)
    """At most 16 stages with unique names; the graph must have no cycle."""
    override_policy: PipelineOverridePolicy | None = None
    """Narrows what VideoJobs may override."""


class VideoPipelineStatus(CamelModel):
    """What the operator found; written only through the status subresource."""

    conditions: list[Condition] = Field(default_factory=list, max_length=4)
    """Ready: whether VideoJobs can run on it; Stalled (kstatus' failed):
    that they cannot until it is fixed."""
    observed_generation: int | None = None
    """The .metadata.generation the operator last checked."""
    stage_count: int | None = None
    """How many stages it has."""
