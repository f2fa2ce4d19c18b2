"""The VideoJob API (group ``vidop.io``, version ``v1alpha1``) as pydantic models.

These models are the single source of truth: :mod:`vid_operator.api.crd`
generates the CRD's OpenAPI schema (and its CEL rules) from them, and the
operator parses every VideoJob it sees with them. Field docstrings become the
descriptions ``kubectl explain`` shows. Pure: no Kubernetes client here.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "vidop.io"
VERSION = "v1alpha1"
KIND = "VideoJob"
PLURAL = "videojobs"
SINGULAR = "videojob"
SHORT_NAMES = ["vj"]

# The stages of the default pipeline, in a valid order. Overrides may name only these.
STAGE_NAMES = ("script_gen", "voice_gen", "video_gen", "compositing")
# Characters of a stage override's command, args, env values and pod annotations
# together (a CEL rule): each is bounded alone, and without this a VideoJob
# could be over a megabyte.
MAX_STAGE_OVERRIDE_CHARS = 16384

Quantity = Annotated[
    str | int,
    Field(union_mode="left_to_right"),
    # The form structural schemas allow (as controller-gen writes it). A CEL
    # rule rather than a pattern checks the string form, to say it in words.
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64,
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int || isQuantity(self)",
                    "message": "must be a Kubernetes quantity such as 2, 500m, 1.5 or 16Gi",
                }
            ],
        }
    ),
]
"""A resource quantity such as ``2``, ``500m`` or ``16Gi``."""


class CamelModel(BaseModel):
    """Immutable, strict about unknown fields, camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )


class Priority(enum.StrEnum):
    """Scheduling priority, mapped to a PriorityClass by the operator's configuration."""

    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


class Resources(CamelModel):
    """Compute resources of a stage's container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Minimum resources the scheduler reserves, e.g. ``cpu: 2``, ``memory: 8Gi``."""
    limits: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Maximum resources the container may use."""


class EnvVar(CamelModel):
    """An environment variable for a stage's container."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Variable name (letters, digits and underscores; not starting with a digit)."""
    value: str = Field(default="", max_length=4096)
    """Variable value."""


class Toleration(CamelModel):
    """A toleration, as in a Pod spec, letting a stage run on tainted nodes."""

    key: str | None = Field(default=None, max_length=253)
    """Taint key to tolerate; empty with operator Exists tolerates every taint."""
    operator: str | None = Field(default=None, pattern=r"^(Exists|Equal)$")
    """Exists or Equal (default Equal)."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value to match with operator Equal."""
    effect: str | None = Field(default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """How long a NoExecute taint is tolerated before eviction."""


class StageOverride(CamelModel):
    """Per-stage settings that take precedence over the operator's configuration.
    Every field is optional; an absent field keeps the configured value."""

    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Container image of the stage."""
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, max_length=32
    )
    """Container entrypoint (replaces the image's ENTRYPOINT)."""
    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(default=None, max_length=64)
    """Arguments to the entrypoint."""
    env: list[EnvVar] | None = Field(default=None, max_length=64)
    """Extra environment variables, added to the stage contract's variables."""
    resources: Resources | None = None
    """CPU and memory requests and limits."""
    gpus: int | None = Field(default=None, ge=0, le=8)
    """Number of nvidia.com/gpu the stage's pod gets (0 runs it on CPU nodes)."""
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=16
    )
    """Node labels the stage's pod must match."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=16)
    """Tolerations of the stage's pod (replace the configured ones)."""
    backoff_limit: int | None = Field(default=None, ge=0, le=20)
    """Retries of the stage's Job before the VideoJob fails."""
    active_deadline_seconds: int | None = Field(default=None, ge=1, le=604800)
    """Wall-clock limit of the stage's Job, all retries included."""
    depends_on: list[str] | None = Field(default=None, max_length=4)
    """Stages that must succeed before this one starts (replaces the configured ones)."""
    pod_annotations: dict[str, Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None, max_length=16
    )
    """Annotations added to the stage's pods (e.g. for monitoring or mesh sidecars)."""


class OutputLocation(CamelModel):
    """Where the job's artifacts go, overriding the operator's default bucket."""

    bucket: str | None = Field(
        default=None, min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
    )
    """S3 bucket name."""
    prefix: str | None = Field(default=None, max_length=512, pattern=r"^[A-Za-z0-9!_.*'()/-]*$")
    """Key prefix inside the bucket."""


class VideoJobSpec(CamelModel):
    """What video to make and how to run the pipeline that makes it."""

    prompt: str = Field(min_length=1, max_length=4000)
    """What the video is about. Required, not blank."""
    duration_seconds: int = Field(default=30, ge=1, le=600)
    """Length of the final video in seconds."""
    resolution: str = Field(
        default="1280x720", max_length=9, pattern=r"^[1-9][0-9]{1,3}x[1-9][0-9]{1,3}$"
    )
    """Frame size as WIDTHxHEIGHT, e.g. 1280x720."""
    fps: int = Field(default=24, ge=1, le=60)
    """Frames per second."""
    voice: str = Field(default="en", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$")
    """Narration voice, e.g. en or en-us."""
    priority: Priority = Priority.DEFAULT
    """high, default or low: the PriorityClass of the stage pods."""
    suspend: bool = False
    """true pauses the job: running stage Jobs are suspended and no new stage starts."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=31536000)
    """Delete the VideoJob (and so its Jobs) this many seconds after it finishes."""
    output: OutputLocation | None = None
    """Bucket and prefix for the artifacts, instead of the operator's defaults."""
    stages: dict[str, StageOverride] = Field(default_factory=dict, max_length=len(STAGE_NAMES))
    """Per-stage overrides keyed by stage name (script_gen, voice_gen, video_gen, compositing)."""


# Fields of a started job's spec that may still change.
MUTABLE_SPEC_FIELDS = frozenset({"suspend", "ttl_seconds_after_finished"})


class Phase(enum.StrEnum):
    """Where a VideoJob or a stage stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINISHED_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
"""Phases a VideoJob does not leave (members equal their strings, so raw
status values are found in it too)."""


class Condition(CamelModel):
    """A condition in the standard Kubernetes shape (metav1.Condition)."""

    type: str = Field(max_length=316)
    """Succeeded, Failed, Suspended or Unschedulable."""
    status: str = Field(pattern=r"^(True|False|Unknown)$")
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """One CamelCase word saying why."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details."""
    last_transition_time: str
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The .metadata.generation this condition was set for."""


class StageStatus(CamelModel):
    """The state of one stage."""

    name: str
    """Stage name."""
    phase: Phase = Phase.PENDING
    """Pending, Running, Suspended, Succeeded or Failed."""
    job_name: str | None = None
    """The stage's Job."""
    attempts: int = 0
    """Pods started for this stage so far (the first try and its retries)."""
    start_time: str | None = None
    """When the stage's Job was created."""
    completion_time: str | None = None
    """When the stage finished."""
    message: str | None = Field(default=None, max_length=1024)
    """Why the stage is where it is, e.g. waiting for a GPU."""
    outputs: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """The stage's JSON summary (its termination message, at most 4 KiB)."""


class VideoOutputs(CamelModel):
    """Where the finished video is."""

    video_uri: str | None = None
    """The final MP4."""
    thumbnail_uri: str | None = None
    """A JPEG thumbnail."""
    duration_seconds: float | None = None
    """Measured duration of the final video."""


class VideoJobStatus(CamelModel):
    """What the operator observed; written only through the status subresource."""

    phase: Phase = Phase.PENDING
    """Pending, Running, Suspended, Succeeded or Failed."""
    stage: str | None = None
    """The stage(s) running now, or the one that failed."""
    progress: str | None = None
    """Succeeded stages out of all, e.g. 2/4."""
    stages: list[StageStatus] = Field(default_factory=list, max_length=len(STAGE_NAMES))
    """One entry per stage of the pipeline."""
    conditions: list[Condition] = Field(default_factory=list, max_length=8)
    """Succeeded, Failed, Suspended and Unschedulable, for kubectl wait."""
    observed_generation: int | None = None
    """The .metadata.generation the operator last acted on."""
    outputs: VideoOutputs | None = None
    """The finished video, once the job succeeded."""
    start_time: str | None = None
    """When the first stage Job was created."""
    completion_time: str | None = None
    """When the job succeeded or failed."""
