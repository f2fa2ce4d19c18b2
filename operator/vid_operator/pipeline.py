"""A VideoJob's pipeline: its stages with every setting resolved, in DAG order.

Called by the reconciler for each VideoJob it handles, and by the controller
to check each VideoPipeline it sees. The stages come from a :class:`Source`:
the VideoPipeline the VideoJob started on (its snapshot), or the operator's
default pipeline. Precedence per field: the VideoJob's ``spec.stages.<name>``
(only what the override policy allows) > the pipeline's stage > the
operator's ``stageDefaults`` > built-in defaults. What the CRD schema cannot
catch (a dependency cycle, an override the policy refuses, a resource above
the stage's ceiling) raises :class:`InvalidSpec`, whose message names the
field; the reconciler turns that into a ``Failed`` VideoJob. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from graphlib import CycleError, TopologicalSorter
from typing import Any

from vid_operator.api.common import (
    EnvFromSource,
    FanOut,
    OnOOM,
    PipelineEnvVar,
    Resources,
    StageTemplate,
    Toleration,
    Volume,
    VolumeMount,
    quantity_value,
)
from vid_operator.api.models import OVERRIDE_FIELD_NAMES, StageOverride, VideoJobSpec
from vid_operator.api.pipelines import PipelineOverridePolicy, VideoPipelineSpec
from vid_operator.config import OperatorConfig
from vid_operator.contract import MAX_ITEMS


class InvalidSpec(ValueError):
    """The spec passed the CRD schema but cannot be run; the message says why."""


@dataclass(frozen=True)
class Stage:
    """One stage with its settings resolved; what the Job builder needs."""

    name: str
    image: str
    command: list[str]
    args: list[str]
    env: list[PipelineEnvVar]
    env_from: list[EnvFromSource]
    resources: Resources
    gpus: int
    node_selector: dict[str, str]
    tolerations: list[Toleration]
    backoff_limit: int
    active_deadline_seconds: int | None
    depends_on: list[str] = field(default_factory=list)
    affinity: dict[str, Any] | None = None
    termination_grace_period_seconds: int | None = None
    volumes: list[Volume] = field(default_factory=list)
    volume_mounts: list[VolumeMount] = field(default_factory=list)
    service_account_name: str | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    pending_timeout_seconds: int | None = None
    image_pull_timeout_seconds: int | None = None
    on_oom: OnOOM | None = None
    cache: bool = False
    """Its result may be reused (see :mod:`vid_operator.cache`)."""
    fan_out: FanOut | None = None
    """It runs once per item of an upstream stage's output (an Indexed Job)."""


@dataclass(frozen=True)
class Source:
    """Where a VideoJob's stages come from."""

    stages: Mapping[str, StageTemplate]
    """The stages by name, as their author wrote them."""
    pipeline: str | None = None
    """The VideoPipeline's name; None for the operator's default pipeline."""
    policy: PipelineOverridePolicy | None = None
    """How the pipeline narrows the operator's override policy."""

    @property
    def title(self) -> str:
        return f"VideoPipeline {self.pipeline}" if self.pipeline else "the default pipeline"


def default_source(config: OperatorConfig) -> Source:
    """The operator's default pipeline."""
    return Source(stages=dict(config.stages))


def pipeline_source(name: str, spec: VideoPipelineSpec) -> Source:
    """A VideoPipeline's stages (its spec as the VideoJob started on it)."""
    return Source(
        stages={stage.name: stage for stage in spec.stages},
        pipeline=name,
        policy=spec.override_policy,
    )


def order(stages: Mapping[str, Iterable[str]]) -> list[str]:
    """Stage names so that each follows its dependencies (stage -> the
    stages it depends on); InvalidSpec for a cycle or an unknown stage."""
    for name, depends_on in stages.items():
        missing = [d for d in depends_on if d not in stages]
        if missing:
            raise InvalidSpec(f"stage {name} depends on unknown stage(s) {', '.join(missing)}")
    try:
        return list(TopologicalSorter({n: list(d) for n, d in stages.items()}).static_order())
    except CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise InvalidSpec(f"the stages' dependencies form a cycle: {cycle}") from None


MAX_PIPELINE_BYTES = 256 * 1024
"""The most a pipeline's spec may hold as JSON: each VideoJob on it keeps a
copy in its status, which must stay well inside what the API server stores."""


def check(spec: VideoPipelineSpec) -> None:
    """InvalidSpec if no VideoJob could run on the pipeline (what its CRD
    cannot see: a cycle, or a size its schema leaves open: affinity and
    ephemeral volume templates are free-form)."""
    size = len(spec.model_dump_json(by_alias=True, exclude_none=True))
    if size > MAX_PIPELINE_BYTES:
        raise InvalidSpec(
            f"the pipeline is {size // 1024} KiB as JSON, more than the"
            f" {MAX_PIPELINE_BYTES // 1024} KiB a VideoJob can keep a copy of"
        )
    order({stage.name: stage.depends_on or [] for stage in spec.stages})
    for stage in spec.stages:
        _check_fan_out(stage.name, stage)


def _check_fan_out(name: str, template: StageTemplate) -> None:
    """InvalidSpec unless the stage fans out over one of its dependencies,
    and without onOOM (the CRD says so too; the operator's own pipeline has
    no CRD): an OOM kill is seen on a stage's newest pod, which is any one of
    an Indexed Job's, and a raise would start every item again."""
    if template.fan_out is None:
        return
    if template.fan_out.over not in (template.depends_on or []):
        raise InvalidSpec(
            f"stage {name}: fanOut.over names {template.fan_out.over}, which is not one of"
            " its dependsOn"
        )
    if template.on_oom is not None:
        raise InvalidSpec(f"stage {name}: fanOut and onOOM cannot be used together (yet)")


def fan_out_items(
    stage: Stage,
    outputs: Mapping[str, Mapping[str, Any] | None],
    messages: Mapping[str, str | None] | None = None,
) -> int | None:
    """How many items ``stage`` runs over: the count its upstream stage's
    summary gives (None: it does not fan out); InvalidSpec, in words, when
    that summary has no whole number from 1 to ``contract.MAX_ITEMS`` there
    (with what the upstream stage's status says, from ``messages``: why its
    summary was left out, say)."""
    if stage.fan_out is None:
        return None
    over, field_name = stage.fan_out.over, stage.fan_out.count_field
    count = (outputs.get(over) or {}).get(field_name)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ITEMS:
        said = "has none" if count is None else f"has {str(count)[:40]}"
        upstream = (messages or {}).get(over)
        raise InvalidSpec(
            f"stage {stage.name} fans out over the {field_name} of {over}'s summary, which"
            f" {said}: it must be a whole number from 1 to {MAX_ITEMS}"
            + (f" ({over}: {upstream})" if upstream else "")
        )
    return count


def resolve(
    spec: VideoJobSpec, config: OperatorConfig, source: Source | None = None
) -> list[Stage]:
    """The VideoJob's stages (of ``source``, by default the operator's default
    pipeline) in an order where each follows its dependencies."""
    source = source or default_source(config)
    unknown = sorted(set(spec.stages) - set(source.stages))
    if unknown:
        raise InvalidSpec(
            f"spec.stages names {', '.join(unknown)}, which {source.title} does not have"
            f" (it has {', '.join(source.stages)})"
        )
    check_bucket(spec, config)
    check_queue(spec, config)
    stages = {
        name: _resolve(name, template, spec.stages.get(name), config, source)
        for name, template in source.stages.items()
    }
    return [stages[name] for name in order({n: s.depends_on for n, s in stages.items()})]


def check_bucket(spec: VideoJobSpec, config: OperatorConfig) -> None:
    """InvalidSpec unless the VideoJob's bucket is one this operator writes to."""
    bucket = spec.output.bucket if spec.output else None
    allowed = [config.s3.bucket, *config.s3.allowed_buckets]
    if bucket is not None and bucket not in allowed:
        raise InvalidSpec(
            f"spec.output.bucket: {bucket} is not a bucket this operator writes to"
            f" (allowed: {', '.join(allowed)})"
        )


def check_queue(spec: VideoJobSpec, config: OperatorConfig) -> None:
    """InvalidSpec when the VideoJob names a Kueue queue and this operator
    does not use Kueue: its stage Jobs would run unqueued, which is not
    what its author asked for."""
    if spec.queue_name is not None and not config.queueing.kueue.enabled:
        raise InvalidSpec(
            f"spec.queueName: {spec.queue_name} is a Kueue LocalQueue, but this operator"
            " is not configured for Kueue (queueing.kueue.enabled)"
        )


def _resolve(
    name: str,
    template: StageTemplate,
    override: StageOverride | None,
    config: OperatorConfig,
    source: Source,
) -> Stage:
    defaults = config.stage_defaults
    # The last layer that sets a field wins.
    base = _first_set([defaults.model_dump(), template.model_dump()])
    settings = base
    if override is not None:
        _check_override(name, override, template, config, source, base)
        override = _literal(override)
        settings = _first_set([base, override.model_dump()])
    _check_fan_out(name, template)
    return Stage(
        name=name,
        image=settings["image"],
        command=list(settings.get("command") or []),
        args=list(settings.get("args") or []),
        env=_merged_env(template, override),
        env_from=list(template.env_from or []),
        resources=_merged_resources(base.get("resources"), override),
        gpus=settings.get("gpus") or 0,
        node_selector=dict(settings.get("node_selector") or {}),
        tolerations=[Toleration.model_validate(t) for t in settings.get("tolerations") or []],
        backoff_limit=settings["backoff_limit"],
        active_deadline_seconds=settings.get("active_deadline_seconds"),
        pending_timeout_seconds=settings.get("pending_timeout_seconds"),
        image_pull_timeout_seconds=settings.get("image_pull_timeout_seconds"),
        on_oom=template.on_oom,
        depends_on=list(template.depends_on or []),
        affinity=template.affinity,
        termination_grace_period_seconds=settings.get("termination_grace_period_seconds"),
        volumes=list(template.volumes or []),
        volume_mounts=list(template.volume_mounts or []),
        service_account_name=settings.get("service_account_name"),
        image_pull_secrets=[
            secret.name for secret in template.image_pull_secrets or defaults.image_pull_secrets
        ],
        # Labels and annotations add up rather than replace: the operator's
        # usually belong to the platform (monitoring, mesh), the pipeline's to
        # its stages, the VideoJob's to the user.
        pod_labels={**defaults.pod_labels, **(template.pod_labels or {})},
        pod_annotations={
            **defaults.pod_annotations,
            **(template.pod_annotations or {}),
            **((override.pod_annotations or {}) if override else {}),
        },
        # Only its author knows whether a stage's output is a function of its
        # inputs: a VideoPipeline's stage is cached when it says so.
        cache=bool(template.cache),
        fan_out=template.fan_out,
    )


def _first_set(layers: list[dict[str, Any]]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for layer in layers:
        settings.update({k: v for k, v in layer.items() if v is not None})
    return settings


def _merged_resources(base: Mapping[str, Any] | None, override: StageOverride | None) -> Resources:
    """The stage's requests and limits with the VideoJob's laid over them
    amount by amount: an override of one request keeps every limit."""
    merged: dict[str, dict[str, Any]] = {
        kind: dict(amounts) for kind, amounts in (base or {}).items() if amounts
    }
    if override is not None and override.resources is not None:
        for kind in ("requests", "limits"):
            amounts = getattr(override.resources, kind)
            if amounts:
                merged[kind] = {**merged.get(kind, {}), **amounts}
    # Every amount was validated with the model it came from; this runs on
    # every reconcile of every VideoJob.
    return Resources.model_construct(requests=merged.get("requests"), limits=merged.get("limits"))


def _merged_env(template: StageTemplate, override: StageOverride | None) -> list[PipelineEnvVar]:
    """The pipeline's variables, then the VideoJob's (which only add names,
    see :func:`_check_override`)."""
    env = list(template.env or [])
    if override is not None:
        env += [PipelineEnvVar(name=e.name, value=e.value) for e in override.env or []]
    return env


def literal(text: str) -> str:
    """A tenant's text as Kubernetes takes it literally. Kubernetes expands
    $(NAME) in env values, command and args, and reads $$ as a $: a tenant's
    text must never reach the pod's other variables (the S3 credentials among
    them) through expansion."""
    return text.replace("$", "$$")


def _literal(override: StageOverride) -> StageOverride:
    """The override with every ``$`` taken literally."""
    update: dict[str, Any] = {}
    if override.command is not None:
        update["command"] = [literal(s) for s in override.command]
    if override.args is not None:
        update["args"] = [literal(s) for s in override.args]
    if override.env is not None:
        update["env"] = [e.model_copy(update={"value": literal(e.value)}) for e in override.env]
    return override.model_copy(update=update)


def _check_override(
    name: str,
    override: StageOverride,
    template: StageTemplate,
    config: OperatorConfig,
    source: Source,
    base: Mapping[str, Any],
) -> None:
    """InvalidSpec, naming the field, for what the override policy refuses."""
    where = f"spec.stages.{name}"
    allowed = set(config.override_policy.allowed_fields)
    if source.policy and source.policy.allowed_fields is not None:
        allowed &= set(source.policy.allowed_fields)
    allowed_words = ", ".join(sorted(allowed)) or "nothing"
    for policy_field, attribute in OVERRIDE_FIELD_NAMES.items():
        if getattr(override, attribute) is not None and policy_field not in allowed:
            raise InvalidSpec(
                f"{where}.{policy_field}: the override policy does not let a VideoJob on"
                f" {source.title} set {policy_field} (it allows {allowed_words})"
            )
    if override.image is not None:
        prefixes = config.override_policy.allowed_images
        if prefixes and not override.image.startswith(tuple(prefixes)):
            raise InvalidSpec(
                f"{where}.image: {override.image} is not an allowed image (images must start"
                f" with {', '.join(prefixes)})"
            )
    for key in override.pod_annotations or {}:
        if not _annotation_allowed(key, config, source):
            raise InvalidSpec(
                f"{where}.podAnnotations: the override policy does not let a VideoJob set the"
                f" pod annotation {key}"
            )
    if override.gpus is not None:
        ceiling = base.get("max_gpus")
        if ceiling is None:
            ceiling = base.get("gpus") or 0
        if override.gpus > ceiling:
            raise InvalidSpec(
                f"{where}.gpus: {override.gpus} is more than {source.title} allows for"
                f" {name} ({ceiling})"
            )
    if override.resources is not None:
        _check_resources(where, override.resources, base, source)
    if override.env:
        _check_env(where, override, template, source)


def _check_env(
    where: str, override: StageOverride, template: StageTemplate, source: Source
) -> None:
    """A VideoJob's variables only add to the pipeline's: replacing one (an
    endpoint that travels with a token from a Secret, say) would send what
    the pipeline gives the stage wherever the VideoJob's author likes."""
    if template.env_from:
        raise InvalidSpec(
            f"{where}.env: the stage takes variables from envFrom in {source.title}, which a"
            " VideoJob's variables could replace; it may set none"
        )
    pipeline_names = {variable.name for variable in template.env or []}
    for variable in override.env or []:
        if variable.name in pipeline_names:
            raise InvalidSpec(
                f"{where}.env: {variable.name} is set by {source.title}; a VideoJob may only"
                " add variables"
            )


def _annotation_allowed(key: str, config: OperatorConfig, source: Source) -> bool:
    lists = [config.override_policy.allowed_pod_annotations]
    if source.policy and source.policy.allowed_pod_annotations is not None:
        lists.append(source.policy.allowed_pod_annotations)
    return all(
        any(key == entry or (entry.endswith("/") and key.startswith(entry)) for entry in entries)
        for entries in lists
    )


def _check_resources(
    where: str, resources: Resources, base: Mapping[str, Any], source: Source
) -> None:
    """Every amount the override asks for is at most the stage's ceiling: its
    maxResources, else its own limits."""
    ceiling_raw = base.get("max_resources") or (base.get("resources") or {}).get("limits") or {}
    ceiling: dict[str, Decimal] = {k: quantity_value(v) for k, v in ceiling_raw.items()}
    for kind, amounts in (("requests", resources.requests), ("limits", resources.limits)):
        for resource, amount in (amounts or {}).items():
            field_name = f"{where}.resources.{kind}.{resource}"
            if resource not in ceiling:
                raise InvalidSpec(
                    f"{field_name}: {source.title} sets no ceiling for {resource}, so a VideoJob"
                    " may not ask for it"
                )
            if quantity_value(amount) > ceiling[resource]:
                raise InvalidSpec(
                    f"{field_name}: {amount} is more than {source.title} allows"
                    f" ({ceiling_raw[resource]})"
                )
