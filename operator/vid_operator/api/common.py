"""The shapes both resources share: a stage's container and pod settings.

A VideoPipeline's stages (:mod:`vid_operator.api.pipelines`), the operator's
default pipeline (:mod:`vid_operator.config`) and a VideoJob's per-stage
overrides (:mod:`vid_operator.api.models`) are built from these, so one field
means the same everywhere and the CRDs describe it once. They follow the Pod
API's names and meaning, with only the volume kinds a stage needs. Pure.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

MAX_STAGE_NAME_LENGTH = 32
"""A stage name is the suffix of its Job's name; the VideoJob's name, cut and
hashed when needed, keeps at least 21 of the 63 characters."""
STAGE_NAME_PATTERN = r"^[a-z]([a-z0-9_-]*[a-z0-9])?$"

_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity_value(quantity: str | int) -> Decimal:
    """The amount a Kubernetes quantity stands for (``16Gi`` -> 17179869184),
    so limits can be compared; ValueError for what is not a quantity. Not the
    client library's ``parse_quantity``: the API models never import the
    Kubernetes client (an import-linter contract)."""
    text = str(quantity).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 2, 500m, 1.5 or 16Gi")
    suffix = match.group(3) or ""
    number = Decimal(text[: len(text) - len(suffix)] if suffix else text)
    try:
        if suffix in _BINARY:
            return number * _BINARY[suffix]
        if suffix[:1] in ("e", "E"):
            return number * Decimal(10) ** int(suffix[1:])
        return number.scaleb(_DECIMAL[suffix])
    except InvalidOperation:
        raise ValueError(f"{text!r} is out of range") from None


def _non_negative(quantity: str | int) -> str | int:
    if quantity_value(quantity) < 0:
        raise ValueError(f"{quantity!r} is negative")
    return quantity


Quantity = Annotated[
    str | int,
    Field(union_mode="left_to_right"),
    AfterValidator(_non_negative),
    # The form structural schemas allow (as controller-gen writes it). A CEL
    # rule rather than a pattern checks the string form, to say it in words;
    # Kubernetes' own pattern lets "-1" through, and a negative memory limit
    # would only be refused when the Job is created.
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64,
            "x-kubernetes-validations": [
                {
                    # A quantity's sign can only be its first character.
                    "rule": "type(self) == int ? self >= 0"
                    " : (isQuantity(self) && !self.startsWith('-'))",
                    "message": "must be a non-negative Kubernetes quantity such as 2, 500m,"
                    " 1.5 or 16Gi",
                }
            ],
        }
    ),
]
"""A resource quantity such as ``2``, ``500m`` or ``16Gi``."""

DNSLabel = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
DNSSubdomain = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]
LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]


class CamelModel(BaseModel):
    """Immutable, strict about unknown fields, camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )


class Condition(CamelModel):
    """A condition in the standard Kubernetes shape (metav1.Condition)."""

    type: str = Field(max_length=316)
    """A VideoJob's Succeeded, Failed, Suspended, Unschedulable, Ready,
    Reconciling or Stalled; a VideoPipeline's Ready or Stalled."""
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


class Resources(CamelModel):
    """Compute resources of a stage's container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Minimum resources the scheduler reserves, e.g. ``cpu: 2``, ``memory: 8Gi``."""
    limits: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Maximum resources the container may use."""


class EnvVar(CamelModel):
    """An environment variable with a literal value."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Variable name (letters, digits and underscores; not starting with a digit)."""
    value: str = Field(default="", max_length=4096)
    """Variable value."""


class KeySelector(CamelModel):
    """One key of a Secret or ConfigMap in the stage's namespace."""

    name: DNSSubdomain
    """The Secret's or ConfigMap's name."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """The key whose value the variable takes."""
    optional: bool | None = None
    """Start the pod even if the object or key is missing."""


class FieldSelector(CamelModel):
    """A field of the stage's own pod, e.g. ``metadata.name`` or ``spec.nodeName``."""

    field_path: str = Field(min_length=1, max_length=256)
    """The field, as in the Downward API."""


class EnvVarSource(CamelModel):
    """Where a variable's value comes from; exactly one of the three."""

    secret_key_ref: KeySelector | None = None
    """A key of a Secret (an API token, say); the operator never reads it."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    field_ref: FieldSelector | None = None
    """A field of the pod."""


class PipelineEnvVar(CamelModel):
    """An environment variable of a pipeline's stage: a literal or a reference."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Variable name; the stage contract's own names are refused."""
    value: str | None = Field(default=None, max_length=4096)
    """A literal value (``$(NAME)`` expands other variables, as in a Pod)."""
    value_from: EnvVarSource | None = None
    """A value from a Secret, a ConfigMap or the pod itself."""


class ObjectReference(CamelModel):
    """A ConfigMap or Secret in the stage's namespace."""

    name: DNSSubdomain
    """Its name."""
    optional: bool | None = None
    """Start the pod even if it is missing."""


class EnvFromSource(CamelModel):
    """Every key of a ConfigMap or Secret as variables; exactly one of the two.
    Variables named in ``env`` (the contract's included) win over these."""

    prefix: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Put before each key to make the variable's name."""
    config_map_ref: ObjectReference | None = None
    """The ConfigMap."""
    secret_ref: ObjectReference | None = None
    """The Secret."""


class PersistentVolumeClaimSource(CamelModel):
    """A PersistentVolumeClaim in the stage's namespace, e.g. a model-weight cache."""

    claim_name: DNSSubdomain
    """The claim's name."""
    read_only: bool | None = None
    """Mount it read-only."""


class ConfigMapSource(CamelModel):
    """A ConfigMap's keys as files."""

    name: DNSSubdomain
    """The ConfigMap's name."""
    optional: bool | None = None
    """Start the pod even if it is missing."""
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    """Mode bits of the files."""


class SecretSource(CamelModel):
    """A Secret's keys as files."""

    secret_name: DNSSubdomain
    """The Secret's name."""
    optional: bool | None = None
    """Start the pod even if it is missing."""
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    """Mode bits of the files."""


class EmptyDirSource(CamelModel):
    """A scratch folder that lives as long as the pod; ``medium: Memory`` with a
    ``sizeLimit`` makes a larger /dev/shm for data loaders."""

    medium: str | None = Field(default=None, pattern=r"^(|Memory)$")
    """Empty for the node's disk, Memory for tmpfs."""
    size_limit: Quantity | None = None
    """At most this much, e.g. 8Gi."""


class EphemeralSource(CamelModel):
    """A volume provisioned for the pod and deleted with it."""

    volume_claim_template: dict[str, Any] = Field(
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A PersistentVolumeClaim template (metadata and spec), as in a Pod;
    the API server checks it when the stage's Job is created."""


class Volume(CamelModel):
    """A volume of a stage's pod; exactly one source."""

    name: DNSLabel
    """Its name, for volumeMounts; ``scratch`` is the stage contract's."""
    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    config_map: ConfigMapSource | None = None
    secret: SecretSource | None = None
    empty_dir: EmptyDirSource | None = None
    ephemeral: EphemeralSource | None = None


class VolumeMount(CamelModel):
    """Where a volume appears in the stage's container."""

    name: DNSLabel
    """The volume's name."""
    mount_path: str = Field(min_length=1, max_length=1024, pattern=r"^/")
    """An absolute path; the contract's scratch folder and termination
    message file are refused."""
    read_only: bool | None = None
    """Mount it read-only."""
    sub_path: str | None = Field(default=None, max_length=1024, pattern=r"^[^/]")
    """A path inside the volume to mount instead of its root."""


class LocalObjectReference(CamelModel):
    """A Secret in the stage's namespace, by name."""

    name: DNSSubdomain
    """Its name."""


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


Strings = Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)]


class OnOOM(CamelModel):
    """What to do when the stage's container is killed for running out of
    memory: its next try gets more. Each raise is a new Job (a Job's pod
    template cannot change between retries), and each counts against the
    stage's backoffLimit like any other failed try."""

    memory_factor: float = Field(default=1.5, gt=1, le=8)
    """The memory request and limit of the next try, as a multiple of the
    last one's."""
    max_memory: Quantity
    """The most memory a try may get; an OOM kill at this limit fails the stage."""


class FanOut(CamelModel):
    """Run the stage once per item of an upstream stage's output (video_gen
    once per scene): one Indexed Job whose pods each get their item's index
    (``JOB_COMPLETION_INDEX``) and the count (``VIDOP_ITEMS``), a failed item
    retried alone. The count is read from the upstream stage's summary."""

    over: str = Field(min_length=1, max_length=24)
    """The stage whose output holds the items; one of ``dependsOn``."""
    count_field: str = Field(default="scenes", min_length=1, max_length=64)
    """The key of that stage's summary that holds how many items there are
    (a whole number from 1 to 64)."""
    parallelism: int | None = Field(default=None, ge=1, le=64)
    """The most items that run at once; absent: all of them."""
    backoff_limit_per_index: int | None = Field(default=None, ge=0, le=20)
    """Retries of each item before the stage fails; absent: the stage's
    backoffLimit."""


class StageTemplate(CamelModel):
    """How one stage runs: its container and its pod. A field left out takes
    the layer below (the operator's ``stageDefaults``, then built-in ones)."""

    depends_on: list[str] | None = Field(default=None, max_length=15)
    """Stages that must succeed before this one starts."""
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Container image."""
    command: Strings | None = None
    """Entrypoint (replaces the image's ENTRYPOINT)."""
    args: Strings | None = None
    """Arguments to the entrypoint."""
    env: list[PipelineEnvVar] | None = Field(default=None, max_length=64)
    """Environment variables besides the stage contract's."""
    env_from: list[EnvFromSource] | None = Field(default=None, max_length=8)
    """ConfigMaps and Secrets whose keys become variables."""
    resources: Resources | None = None
    """CPU and memory requests and limits."""
    max_resources: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """The most a VideoJob may ask for per resource when it overrides
    ``resources`` (default: this stage's limits)."""
    gpus: int | None = Field(default=None, ge=0, le=8)
    """nvidia.com/gpu of the stage's pod (0 runs it on CPU nodes)."""
    max_gpus: int | None = Field(default=None, ge=0, le=8)
    """The most GPUs a VideoJob may ask for (default: ``gpus``)."""
    node_selector: dict[str, LabelValue] | None = Field(default=None, max_length=16)
    """Node labels the stage's pod must match."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=16)
    """Tolerations of the stage's pod."""
    affinity: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Node and pod (anti-)affinity, as in a Pod spec."""
    backoff_limit: int | None = Field(default=None, ge=0, le=20)
    """Retries of the stage's Job before the VideoJob fails."""
    active_deadline_seconds: int | None = Field(default=None, ge=1, le=604800)
    """Wall-clock limit of each of the stage's Jobs, its retries included."""
    pending_timeout_seconds: int | None = Field(default=None, ge=1, le=604800)
    """Fail the stage (reason PendingTimeout, not retried) when its pod has
    not started this long after it was created: no node fits, no quota, the
    admission refuses it. Unset: no limit of its own (activeDeadlineSeconds
    still holds). Time a Job spends suspended does not count."""
    on_oom: OnOOM | None = Field(default=None, alias="onOOM")
    """Raise the memory after an out-of-memory kill (unset: an OOM kill is
    retried at the same memory, as any failure)."""
    termination_grace_period_seconds: int | None = Field(default=None, ge=0, le=3600)
    """The soft time limit: on cancellation or a deadline the stage gets
    SIGTERM, then this long to stop before SIGKILL."""
    volumes: list[Volume] | None = Field(default=None, max_length=16)
    """Volumes of the stage's pod."""
    volume_mounts: list[VolumeMount] | None = Field(default=None, max_length=16)
    """Where they appear in the container."""
    service_account_name: DNSSubdomain | None = None
    """Run as this ServiceAccount (for cloud identity); its token is mounted
    only when one is named."""
    image_pull_secrets: list[LocalObjectReference] | None = Field(default=None, max_length=8)
    """Secrets to pull a private image with."""
    pod_labels: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=16)
    """Labels added to the stage's pods (the operator's own cannot be set)."""
    pod_annotations: dict[LabelKey, Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None, max_length=16
    )
    """Annotations added to the stage's pods (monitoring, a mesh)."""
    fan_out: FanOut | None = None
    """Run once per item of an upstream stage's output, as one Indexed Job."""
    cache: bool | None = None
    """Reuse a stored result of this stage computed from the same image,
    command, args, env, job parameters and inputs instead of computing it
    again. Only for a stage whose output is a function of those: off unless
    set to true in a VideoPipeline; on for the default pipeline's stages."""


class OverridableField(enum.StrEnum):
    """A field of a VideoJob's ``spec.stages.<name>`` that an override policy
    may allow. (``podAnnotations`` are allowed key by key instead.)"""

    IMAGE = "image"
    COMMAND = "command"
    ARGS = "args"
    ENV = "env"
    RESOURCES = "resources"
    GPUS = "gpus"
    NODE_SELECTOR = "nodeSelector"
    TOLERATIONS = "tolerations"
    BACKOFF_LIMIT = "backoffLimit"
    ACTIVE_DEADLINE_SECONDS = "activeDeadlineSeconds"
    SERVICE_ACCOUNT_NAME = "serviceAccountName"
