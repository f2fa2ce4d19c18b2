"""The VideoJob API (group ``vidop.io``, version ``v1alpha1``) as pydantic models.

These models are the single source of truth: :mod:`vid_operator.api.crd`
generates the CRD's OpenAPI schema (and its CEL rules) from them, and the
operator parses every VideoJob it sees with them. Field docstrings become the
descriptions ``kubectl explain`` shows. Pure: no Kubernetes client here.
"""

from __future__ import annotations

import enum
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from vid_operator import contract
from vid_operator.api.common import (
    CamelModel,
    Condition,
    DNSSubdomain,
    EnvVar,
    LabelKey,
    OverridableField,
    Resources,
    Toleration,
)
from vid_operator.api.pipelines import MAX_STAGES, VideoPipelineSpec

GROUP = "vidop.io"
VERSION = "v1alpha1"
KIND = "VideoJob"
PLURAL = "videojobs"
SINGULAR = "videojob"
SHORT_NAMES = ["vj"]

# The stages of the built-in default pipeline, in a valid order. Without
# spec.pipeline, overrides may name only these.
STAGE_NAMES = ("script_gen", "voice_gen", "video_gen", "compositing")
# Characters of a stage override's command, args, env values and pod annotations
# together (a CEL rule): each is bounded alone, and without this a VideoJob
# could be over a megabyte.
MAX_STAGE_OVERRIDE_CHARS = 16384

TENANT_RESERVED_ENV_PREFIXES = (
    contract.CONTRACT_ENV_PREFIX,
    "AWS_",
    "NVIDIA_",
    "LD_",
    "PYTHON",
    "OPENSSL_",
)
"""A VideoJob's env may not set these (compared in upper case): the contract's
variables, the S3 client's settings (AWS_ENDPOINT_URL would send the stage's
signed requests elsewhere), the NVIDIA container runtime's
(NVIDIA_VISIBLE_DEVICES=all would show the container every GPU of its node),
and what changes the code a process loads."""
TENANT_RESERVED_ENV_NAMES = (
    "PATH",
    "HOME",
    "BASH_ENV",
    "ENV",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "NODE_OPTIONS",
    "JAVA_TOOL_OPTIONS",
    "PERL5OPT",
    "RUBYOPT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    contract.ENV_ITEM_INDEX,
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
)
"""...nor these, nor where it sends traffic and which certificates it trusts
(the API server's address: the stage's progress token goes there), nor which
item of a fanned-out stage a pod runs."""


def tenant_env_refusal(name: str) -> str | None:
    """Why a VideoJob may not set the variable ``name``, or None."""
    upper = name.upper()
    if upper in TENANT_RESERVED_ENV_NAMES or upper.startswith(TENANT_RESERVED_ENV_PREFIXES):
        return f"{name} is reserved for the operator and the platform"
    return None


def _has_text(prompt: str) -> str:
    # Spaces of any script (NBSP, em space, ideographic space), separators,
    # control and format characters are not text; RE2's \S in the CRD's own
    # rule is ASCII-only, so the CRD says the same with Unicode classes.
    if not any(not ch.isspace() and unicodedata.category(ch)[0] not in ("Z", "C") for ch in prompt):
        raise ValueError("prompt must contain some text, not only spaces")
    return prompt


class Priority(enum.StrEnum):
    """Scheduling priority, mapped to a PriorityClass by the operator's configuration."""

    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


def _tenant_env(variable: EnvVar) -> EnvVar:
    if why := tenant_env_refusal(variable.name):
        raise ValueError(why)
    return variable


class StageOverride(CamelModel):
    """Per-stage settings that take precedence over the pipeline's, each only
    where the override policy allows it (by default: resources, gpus,
    backoffLimit, activeDeadlineSeconds and env). Every field is optional."""

    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Container image of the stage."""
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, max_length=32
    )
    """Container entrypoint (replaces the image's ENTRYPOINT); taken literally."""
    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(default=None, max_length=64)
    """Arguments to the entrypoint; taken literally."""
    env: list[Annotated[EnvVar, AfterValidator(_tenant_env)]] | None = Field(
        default=None, max_length=64
    )
    """Extra literal environment variables (the contract's, AWS_*, LD_*,
    PYTHON*, proxies and a few more are reserved); taken literally."""
    resources: Resources | None = None
    """CPU and memory requests and limits, within the pipeline's maxResources."""
    gpus: int | None = Field(default=None, ge=0, le=8)
    """Number of nvidia.com/gpu, up to the pipeline's maxGpus."""
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=16
    )
    """Node labels the stage's pod must match."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=16)
    """Tolerations of the stage's pod (replace the pipeline's)."""
    backoff_limit: int | None = Field(default=None, ge=0, le=20)
    """Retries of the stage's Job before the VideoJob fails."""
    active_deadline_seconds: int | None = Field(default=None, ge=1, le=604800)
    """Wall-clock limit of each of the stage's Jobs, its retries included."""
    service_account_name: DNSSubdomain | None = None
    """Run the stage as this ServiceAccount of the VideoJob's namespace."""
    pod_annotations: dict[LabelKey, Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None, max_length=16
    )
    """Annotations added to the stage's pods, of the keys the policy allows."""


OVERRIDE_FIELD_NAMES = {
    OverridableField(info.alias or name): name
    for name, info in StageOverride.model_fields.items()
    if name != "pod_annotations"
}
"""Each policy field and the StageOverride attribute it allows."""


def _no_dot_segments(prefix: str) -> str:
    # A store that normalises paths would take ../ out of the VideoJob's prefix.
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError("prefix may not have . or .. segments")
    return prefix


class OutputLocation(CamelModel):
    """Where the job's artifacts go, overriding the operator's default bucket."""

    bucket: str | None = Field(
        default=None, min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
    )
    """S3 bucket name."""
    prefix: Annotated[str, AfterValidator(_no_dot_segments)] | None = Field(
        default=None, max_length=512, pattern=r"^[A-Za-z0-9!_.*'()/-]*$"
    )
    """Key prefix inside the bucket, instead of the configured one; the
    namespace, the VideoJob's name and uid always follow it."""


class VideoJobSpec(CamelModel):
    """What video to make and how to run the pipeline that makes it."""

    prompt: Annotated[str, AfterValidator(_has_text)] = Field(min_length=1, max_length=4000)
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
    """high, default or low: the PriorityClass of the stage pods, the
    VideoJob's place in the operator's queue (high first) and, with Kueue,
    the WorkloadPriorityClass of its stage Jobs."""
    queue_name: DNSSubdomain | None = None
    """The Kueue LocalQueue of this namespace that admits the stage Jobs;
    absent: the operator's default for the namespace, if any. Only where
    the operator is configured for Kueue."""
    suspend: bool = False
    """true pauses the job: running stage Jobs are suspended and no new stage starts."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=31536000)
    """Delete the VideoJob (and so its Jobs) this many seconds after it finishes."""
    output: OutputLocation | None = None
    """Bucket (one the operator's configuration allows) and prefix for the
    artifacts, instead of the operator's defaults."""
    pipeline: DNSSubdomain | None = None
    """The VideoPipeline in this namespace to run; absent: the operator's
    default pipeline (script_gen, voice_gen, video_gen, compositing)."""
    stages: dict[str, StageOverride] = Field(default_factory=dict, max_length=MAX_STAGES)
    """Per-stage overrides keyed by the pipeline's stage names."""
    retry: int = Field(default=0, ge=0, le=1000)
    """Raise it (in git, or with kubectl patch) to run a Failed VideoJob
    again from its failed stages: the stages that succeeded keep their
    outputs, the failed ones and what depends on them run again. A raise
    while the VideoJob has not failed is only recorded."""
    cache: bool = True
    """false computes every stage afresh, even one whose result is stored
    from an earlier VideoJob with the same inputs (stages whose pipeline
    caches them reuse such results otherwise)."""


def job_params(spec: VideoJobSpec) -> dict[str, Any]:
    """The job parameters a stage receives (``contract.ENV_PARAMS``), by their
    names on the wire."""
    return spec.model_dump(
        by_alias=True,
        mode="json",
        include={
            name
            for name, info in VideoJobSpec.model_fields.items()
            if (info.alias or name) in contract.PARAM_FIELDS
        },
    )


# Fields of a started job's spec that may still change.
MUTABLE_SPEC_FIELDS = frozenset({"suspend", "ttl_seconds_after_finished", "retry"})


class Phase(enum.StrEnum):
    """Where a VideoJob or a stage stands."""

    PENDING = "Pending"
    QUEUED = "Queued"
    """Waiting its turn: for the operator's cap on running VideoJobs, or,
    for a stage, for Kueue to admit its Job."""
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINISHED_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
"""Phases a VideoJob does not leave (members equal their strings, so raw
status values are found in it too)."""


MAX_STAGE_HISTORY = 4
"""Earlier Jobs of a stage kept in its status (the newest ones)."""


class StageRun(CamelModel):
    """One earlier Job of a stage: why it made way for the next."""

    job_name: str
    """The Job."""
    attempts: int = 0
    """Its pods."""
    reason: str | None = Field(default=None, max_length=64)
    """How it ended: OOMKilled (the next Job got more memory), or the
    stage's failure reason before a retry of the VideoJob."""
    memory_limit: str | None = Field(default=None, max_length=64)
    """Its memory limit, where the stage raises memory after an OOM kill."""


class StageStatus(CamelModel):
    """The state of one stage."""

    name: str
    """Stage name."""
    phase: Phase = Phase.PENDING
    """Pending, Queued (its Job waits for Kueue), Running, Suspended,
    Succeeded or Failed."""
    job_name: str | None = None
    """The stage's Job."""
    attempts: int = 0
    """Pods started for the stage's current Job so far (the first try and
    its retries); its earlier Jobs' are in history."""
    run: int = Field(default=0, ge=0)
    """How many Jobs the stage had before its current one: each OOM kill
    that raised its memory, and each retry of the VideoJob that ran it
    again, starts a new Job (named <videojob>-<stage>-<run+1>-<hash>)."""
    memory_limit: str | None = Field(default=None, max_length=64)
    """The current Job's memory limit, where the stage raises memory after
    an OOM kill (onOOM)."""
    history: list[StageRun] = Field(default_factory=list, max_length=MAX_STAGE_HISTORY)
    """The stage's latest earlier Jobs, newest last."""
    start_time: str | None = None
    """When the stage's Job was created."""
    completion_time: str | None = None
    """When the stage finished."""
    progress: str | None = Field(default=None, max_length=16)
    """While it runs: items done out of all (``5/8``) for a stage that fans
    out, else the percent the stage reports itself (``40%``), if it does."""
    message: str | None = Field(default=None, max_length=1024)
    """Why the stage is where it is, e.g. waiting for a GPU; while it runs,
    what it says it is doing, if it reports progress."""
    reason: str | None = Field(default=None, max_length=64)
    """One word for why it failed or cannot start: OOMKilled,
    BackoffLimitExceeded, DeadlineExceeded, InvalidInput, ImagePullBackOff, ..."""
    outputs: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """The stage's JSON summary (its termination message, at most 4 KiB)."""
    cached: bool | None = None
    """true: the stage's result was copied from one stored by an earlier run
    with the same inputs; false: computed (and stored); absent: not cached."""


class VideoOutputs(CamelModel):
    """Where the finished video is."""

    video_uri: str | None = None
    """The final MP4."""
    thumbnail_uri: str | None = None
    """A JPEG thumbnail."""
    duration_seconds: float | None = None
    """Measured duration of the final video."""


class PipelineSnapshot(CamelModel):
    """A VideoPipeline as a VideoJob started on it."""

    name: str
    """The VideoPipeline's name."""
    generation: int | None = None
    """Its .metadata.generation then."""
    spec: VideoPipelineSpec
    """Its spec then."""


class VideoJobStatus(CamelModel):
    """What the operator observed; written only through the status subresource."""

    phase: Phase = Phase.PENDING
    """Pending, Queued, Running, Suspended, Succeeded or Failed."""
    stage: str | None = None
    """The stage(s) running now, or the one that failed."""
    progress: str | None = None
    """Succeeded stages out of all, with what running stages report of
    themselves, e.g. ``2/4`` or ``1/4 (video_gen 5/8)``."""
    stages: list[StageStatus] = Field(default_factory=list, max_length=MAX_STAGES)
    """One entry per stage of the pipeline."""
    conditions: list[Condition] = Field(default_factory=list, max_length=8)
    """Succeeded, Failed, Suspended, Unschedulable and Queued, for ``kubectl wait``;
    Ready, Reconciling and Stalled with kstatus' meaning, for Flux, Argo CD
    and ``kubectl wait --for=condition=Ready``."""
    observed_generation: int | None = None
    """The .metadata.generation the operator last acted on."""
    outputs: VideoOutputs | None = None
    """The finished video, once the job succeeded."""
    start_time: str | None = None
    """When the first stage Job was created."""
    completion_time: str | None = None
    """When the job succeeded or failed."""
    pipeline: PipelineSnapshot | None = None
    """The VideoPipeline as it was when the job started: the job runs that,
    whatever happens to the VideoPipeline since."""
    retries: int = 0
    """The spec.retry the operator last acted on: how many times the
    VideoJob was run again from its failed stages."""
    queue_position: int | None = Field(default=None, ge=1)
    """While Queued for the operator's cap: how many VideoJobs start before
    it, plus one (refreshed at least every 30 s)."""
