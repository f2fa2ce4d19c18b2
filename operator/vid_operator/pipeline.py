"""A VideoJob's pipeline: its stages with every setting resolved, in DAG order.

Called by the reconciler for each VideoJob it handles. Precedence per field:
the VideoJob's ``spec.stages[<name>]`` > the operator configuration (which
already holds the built-in defaults beneath the config file). Problems that
the CRD schema cannot catch, such as a dependency cycle, raise
:class:`InvalidSpec`; the reconciler turns that into a ``Failed`` VideoJob.
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

from vid_operator.api.models import EnvVar, Resources, StageOverride, Toleration, VideoJobSpec
from vid_operator.config import OperatorConfig, StageConfig


class InvalidSpec(ValueError):
    """The spec passed the CRD schema but cannot be run; the message says why."""


@dataclass(frozen=True)
class Stage:
    """One stage with its settings resolved."""

    name: str
    image: str
    command: list[str]
    args: list[str]
    env: list[EnvVar]
    resources: Resources
    gpus: int
    node_selector: dict[str, str]
    tolerations: list[Toleration]
    backoff_limit: int
    active_deadline_seconds: int | None
    depends_on: list[str] = field(default_factory=list)
    pod_annotations: dict[str, str] = field(default_factory=dict)


def _resolve(name: str, configured: StageConfig, override: StageOverride | None) -> Stage:
    # Fields the override leaves unset (None) keep the configured value.
    settings = configured.model_dump()
    if override is not None:
        settings.update(override.model_dump(exclude_none=True))
    return Stage(
        name=name,
        image=settings["image"],
        command=list(settings["command"]),
        args=list(settings["args"]),
        env=[EnvVar.model_validate(e) for e in settings["env"]],
        resources=Resources.model_validate(settings["resources"]),
        gpus=settings["gpus"],
        node_selector=dict(settings["node_selector"]),
        tolerations=[Toleration.model_validate(t) for t in settings["tolerations"]],
        backoff_limit=settings["backoff_limit"],
        active_deadline_seconds=settings["active_deadline_seconds"],
        depends_on=list(settings["depends_on"]),
        # Annotations add up rather than replace: the configured ones usually
        # belong to the platform (monitoring, mesh), the VideoJob's to the user.
        pod_annotations={
            **configured.pod_annotations,
            **(override.pod_annotations if override and override.pod_annotations else {}),
        },
    )


def resolve(spec: VideoJobSpec, config: OperatorConfig) -> list[Stage]:
    """The VideoJob's stages in an order where each follows its dependencies."""
    unknown = sorted(set(spec.stages) - set(config.stages))
    if unknown:
        raise InvalidSpec(
            f"spec.stages names {', '.join(unknown)}, which this operator's pipeline does not"
            f" have (it has {', '.join(config.stages)})"
        )
    stages = {
        name: _resolve(name, configured, spec.stages.get(name))
        for name, configured in config.stages.items()
    }
    for stage in stages.values():
        missing = [d for d in stage.depends_on if d not in stages]
        if missing:
            raise InvalidSpec(
                f"stage {stage.name} depends on unknown stage(s) {', '.join(missing)}"
            )
    try:
        order = list(
            TopologicalSorter(
                {name: stage.depends_on for name, stage in stages.items()}
            ).static_order()
        )
    except CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise InvalidSpec(f"the stages' dependencies form a cycle: {cycle}") from None
    return [stages[name] for name in order]
