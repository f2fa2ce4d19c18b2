"""The operator's configuration: the default pipeline, GPU placement, S3 and priorities.

Loaded once at start-up by :mod:`vid_operator.main` from the YAML file named by
``$VIDOP_CONFIG`` (the Helm chart renders it from its values). The file is an
overlay: whatever it leaves out keeps the built-in default below, field by
field, so precedence is VideoJob spec > VideoPipeline > this file > built-in defaults
(applied by :mod:`vid_operator.pipeline`). Pure: no API calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator

from vid_operator.api.common import (
    CamelModel,
    DNSSubdomain,
    FanOut,
    LabelKey,
    LocalObjectReference,
    OverridableField,
    Resources,
    StageTemplate,
    Toleration,
)
from vid_operator.api.models import STAGE_NAMES, Priority

DEFAULT_IMAGE_REPOSITORY = "ghcr.io/vid-operator"


class StageConfig(StageTemplate):
    """A stage of the default pipeline, which VideoJobs without
    ``spec.pipeline`` run."""

    image: str = Field(min_length=1)
    cache: bool = True
    """The reference stages' outputs are a function of their inputs, so they
    are cached unless the configuration says ``cache: false``."""


class StageDefaults(CamelModel):
    """What every stage of every pipeline gets for a field it leaves out."""

    backoff_limit: int = Field(default=3, ge=0)
    active_deadline_seconds: int | None = Field(default=3600, ge=1)
    pending_timeout_seconds: int | None = Field(default=None, ge=1)
    """None: a stage may stay Pending until its activeDeadlineSeconds."""
    image_pull_timeout_seconds: int = Field(default=300, ge=1)
    """How long a stage's container may fail to get its image (ErrImagePull,
    ImagePullBackOff, InvalidImageName, ErrImageNeverPull) before the stage
    fails, not retried: the kubelet retries a pull for ever, and a name that
    is wrong stays wrong."""
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    """None keeps Kubernetes' 30 s."""
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    pod_labels: dict[LabelKey, str] = Field(default_factory=dict)
    pod_annotations: dict[LabelKey, str] = Field(default_factory=dict)


DEFAULT_OVERRIDABLE = [
    OverridableField.RESOURCES,
    OverridableField.GPUS,
    OverridableField.BACKOFF_LIMIT,
    OverridableField.ACTIVE_DEADLINE_SECONDS,
    OverridableField.ENV,
]


class OverridePolicy(CamelModel):
    """What a VideoJob's ``spec.stages.<name>`` may set; a VideoPipeline may
    narrow it further, never widen it."""

    allowed_fields: list[OverridableField] = Field(default_factory=lambda: DEFAULT_OVERRIDABLE)
    """By default resources (within the stage's maxResources), gpus (up to its
    maxGpus), backoffLimit, activeDeadlineSeconds and env literals of
    names that are not reserved. image, command, args, nodeSelector,
    tolerations and serviceAccountName only when listed."""
    allowed_images: list[str] = Field(default_factory=list)
    """Where image is allowed: image names must start with one of these
    (e.g. ``registry.example.com/models/``); empty allows any image."""
    allowed_pod_annotations: list[str] = Field(default_factory=list)
    """Pod annotation keys a VideoJob may set, or prefixes ending in /;
    empty: none (annotations drive sidecar injectors and AppArmor)."""


class GPUPlacement(CamelModel):
    """Where GPU stages go: the resource to request and the nodes that have it."""

    resource_name: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"}
    )
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [
            Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        ]
    )


class S3Config(CamelModel):
    """Where artifacts go and how stages reach the store."""

    endpoint_url: str | None = None
    """None means the provider's default endpoint."""
    region: str = "us-east-1"
    bucket: str = "vid-operator"
    prefix: str = "videojobs"
    allowed_buckets: list[str] = Field(default_factory=list)
    """Buckets a VideoJob's ``spec.output.bucket`` may name besides ``bucket``."""
    credentials_secret: str | None = "vid-operator-s3"
    """A Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, mounted into
    stage pods as environment variables; the operator itself never reads it."""


class FinishedJobs(CamelModel):
    """How long a finished stage Job, and so its pods and their logs, stays.
    Its outcome is on the VideoJob's status by then, so nothing needs it; a
    cluster that keeps every Job pays for it in etcd, in the Job controller and
    in every watch of them (the operator's included)."""

    succeeded_ttl_seconds: int | None = Field(default=3600, ge=0)
    """The Job's ttlSecondsAfterFinished, set when it is created; null keeps
    finished Jobs until their VideoJob is deleted."""
    failed_ttl_seconds: int | None = Field(default=604800, ge=0)
    """Set on a Job when the operator sees it fail, so failed pods' logs stay
    longer (a week by default); null keeps failed Jobs until their VideoJob is
    deleted. A Job that fails while no operator runs keeps the succeeded TTL."""


class ArtifactRetention(CamelModel):
    """What becomes of a VideoJob's artifacts in S3 once the VideoJob is deleted."""

    policy: Literal["keep", "delete"] = "keep"
    """keep: leave them (an S3 lifecycle rule on the prefix expires them);
    delete: a short Job in the VideoJob's namespace deletes its prefix, with
    the stages' S3 credentials. delete puts a finalizer on each VideoJob (so
    the operator sees every deletion, also one made while it was down), which
    the operator removes once the VideoJob's stages have stopped and the Job
    exists; VideoJobs made under delete keep it whatever this says later, so
    uninstall the operator only once they are gone."""
    image: str = Field(default=f"{DEFAULT_IMAGE_REPOSITORY}/script-gen:0.1.0", min_length=1)
    """An image with the reference stages' runtime (any of theirs): the Job
    runs its vidop-artifacts-cleanup."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the cleanup pod must match (it needs no GPU)."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of the cleanup pod."""


class Kueue(CamelModel):
    """Admission of stage Jobs by Kueue (kueue.x-k8s.io), for clusters that
    run it: quotas per team, cohorts that borrow, fair sharing, preemption."""

    enabled: bool = False
    """A VideoJob with a queue name (spec.queueName, else the defaults
    below) has its stage Jobs created suspended with Kueue's queue-name
    label, and Kueue starts them; the operator reads their Workloads to say
    why they wait, and suspends them through the Workload (spec.active).
    Needs Kueue installed (its CRDs and its Job integration)."""
    default_queue_name: DNSSubdomain | None = None
    """The LocalQueue of VideoJobs without spec.queueName in namespaces not
    in namespaceQueueNames; none: their stage Jobs do not go through Kueue."""
    namespace_queue_names: dict[str, DNSSubdomain] = Field(default_factory=dict)
    """Namespace -> the LocalQueue of its VideoJobs without spec.queueName."""
    stages: Literal["all", "gpu"] = "all"
    """Which stage Jobs go through Kueue: all, or only those that ask for
    GPUs (the CPU stages then start at once). One queue of Jobs of different
    shapes makes Kueue's BestEffortFIFO try the GPU ones that do not fit
    again at every release of quota before it reaches a CPU one behind them
    (make bench-queueing: 0.4 CPU stages admitted per second behind 1,000
    waiting GPU stages on the development cluster)."""
    workload_priority_classes: dict[Priority, str | None] = Field(
        default_factory=lambda: dict.fromkeys(Priority)
    )
    """WorkloadPriorityClass per VideoJob priority (Kueue's queue order and
    preemption); None leaves Kueue's default (the pods' PriorityClass)."""


class Queueing(CamelModel):
    """How VideoJobs wait their turn: the operator's own cap on VideoJobs
    running at once, Kueue, or both (the cap first)."""

    max_running: int | None = Field(default=None, ge=1)
    """The most VideoJobs running at once in the cluster (the namespaces
    served); beyond it VideoJobs are Queued, high priority first, then first
    come first served. None: no cap."""
    max_running_per_namespace: int | None = Field(default=None, ge=1)
    """The most VideoJobs running at once in one namespace, so one tenant's
    flood does not hold every slot. None: no cap per namespace."""
    kueue: Kueue = Kueue()


def _stage(name: str, **settings: Any) -> StageConfig:
    return StageConfig(
        image=f"{DEFAULT_IMAGE_REPOSITORY}/{name.replace('_', '-')}:0.1.0",
        command=[f"vidop-stage-{name.replace('_', '-')}"],
        **settings,
    )


def _default_pipeline() -> dict[str, StageConfig]:
    small = Resources(
        requests={"cpu": "500m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
    )
    return {
        "script_gen": _stage("script_gen", resources=small),
        "voice_gen": _stage(
            "voice_gen",
            depends_on=["script_gen"],
            resources=Resources(
                requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "2", "memory": "2Gi"}
            ),
        ),
        "video_gen": _stage(
            "video_gen",
            depends_on=["script_gen"],
            # One pod per scene, on as many GPUs as are free.
            fan_out=FanOut(over="script_gen", count_field="scenes"),
            gpus=1,
            resources=Resources(
                requests={"cpu": "2", "memory": "4Gi"}, limits={"cpu": "4", "memory": "8Gi"}
            ),
        ),
        "compositing": _stage(
            "compositing",
            depends_on=["voice_gen", "video_gen"],
            resources=Resources(
                requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "2", "memory": "2Gi"}
            ),
        ),
    }


class StageProgress(CamelModel):
    """In-stage progress reports (``vid_operator.contract``: the progress
    annotation). Off unless a ServiceAccount is named: it must exist in every
    namespace the operator serves, with the chart's RoleBinding (patch pods)
    and admission policy (only its own pod, only that annotation)."""

    service_account_name: DNSSubdomain | None = None
    """The ServiceAccount stage pods run as to report progress; its token is
    projected pod-bound and short-lived, never automounted. A stage whose
    pipeline names its own ServiceAccount reports no progress."""
    api_server: str | None = Field(default=None, pattern=r"^https://")
    """The API server's URL as the stage pods reach it; unset: the in-cluster
    address (``KUBERNETES_SERVICE_HOST``)."""


class OperatorConfig(CamelModel):
    """Everything the operator is configured with."""

    stages: dict[str, StageConfig] = Field(default_factory=_default_pipeline)
    """The default pipeline; ``dependsOn`` makes the DAG. Its stage names are
    those the CRD knows (VideoJobs can override only those), checked at
    start-up."""
    stage_defaults: StageDefaults = StageDefaults()
    override_policy: OverridePolicy = OverridePolicy()
    gpu: GPUPlacement = GPUPlacement()
    s3: S3Config = S3Config()
    finished_jobs: FinishedJobs = FinishedJobs()
    artifact_retention: ArtifactRetention = ArtifactRetention()
    priority_classes: dict[Priority, str | None] = Field(
        default_factory=lambda: {
            Priority.HIGH: "vid-operator-high",
            Priority.DEFAULT: None,
            Priority.LOW: "vid-operator-low",
        }
    )
    """PriorityClass per VideoJob priority; None leaves the cluster default."""
    queueing: Queueing = Queueing()
    stage_progress: StageProgress = StageProgress()
    watch_namespaces: list[str] = Field(default_factory=list)
    """Namespaces to serve; empty serves the whole cluster."""

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: dict[str, StageConfig]) -> dict[str, StageConfig]:
        unknown = sorted(set(stages) - set(STAGE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown stage(s) {', '.join(unknown)}; the VideoJob API knows "
                f"{', '.join(STAGE_NAMES)}"
            )
        return stages


def _overlay(base: Any, overlay: Any) -> Any:
    """Merge mappings key by key; anything else in ``overlay`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _overlay(base[key], value) if key in base else value
        return merged
    return overlay


def from_mapping(raw: dict[str, Any]) -> OperatorConfig:
    """The built-in defaults with ``raw`` (camelCase, as in the file) laid over them."""
    defaults = OperatorConfig().model_dump(by_alias=True, mode="json")
    return OperatorConfig.model_validate(_overlay(defaults, raw))


def load(path: Path | None = None) -> OperatorConfig:
    """Read the configuration file (``$VIDOP_CONFIG``); built-in defaults without one."""
    if path is None and (env := os.environ.get("VIDOP_CONFIG")):
        path = Path(env)
    if path is None:
        return OperatorConfig()
    return from_mapping(yaml.safe_load(path.read_text()) or {})
