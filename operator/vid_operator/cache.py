"""The stage result cache's key: a hash of what determines a stage's output.

Called by the reconciler for each stage it starts; the key goes to the stage
in the contract's environment (:func:`vid_operator.jobs.build_stage_job`),
and the stage runtime (``vidop_stages.runtime``) reuses a result stored under
it or stores its own. Pure.

What goes in: the stage's name, image, command, args and env as its Job gets
them (values from Secrets and ConfigMaps by reference: the operator never
reads them), the job parameters, and the output digests (from their
summaries) of every stage it runs after, its dependencies' dependencies
included, since a stage may read any earlier stage's files. The VideoJob's
name, uid and namespace stay out, so the same work in another VideoJob finds
the result; the namespace is in where results are kept instead
(:func:`vid_operator.contract.cache_location`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from vid_operator import contract
from vid_operator.api.models import VideoJobSpec, job_params
from vid_operator.pipeline import Stage

KEY_VERSION = 1
"""Part of every key: raising it when what the key covers changes makes
every stored result unreachable rather than wrongly reused."""


def stage_key(
    spec: VideoJobSpec,
    stage: Stage,
    stages: Mapping[str, Stage],
    outputs: Mapping[str, Mapping[str, Any] | None],
) -> str | None:
    """The cache key of ``stage`` (hex), or None when it is not to be cached:
    the VideoJob or the stage turns caching off, or a stage it runs after has
    no output digest (a stage image that does not compute one)."""
    if not (spec.cache and stage.cache):
        return None
    digests: dict[str, str] = {}
    for name in sorted(_ancestors(stage, stages)):
        digest = (outputs.get(name) or {}).get(contract.SUMMARY_DIGEST)
        if not isinstance(digest, str) or not digest:
            return None
        digests[name] = digest
    material = {
        "version": KEY_VERSION,
        "stage": stage.name,
        "image": stage.image,
        "command": stage.command,
        "args": stage.args,
        # In order: a later variable may refer to an earlier one as $(NAME).
        "env": [e.model_dump(by_alias=True, exclude_none=True) for e in stage.env],
        "envFrom": [e.model_dump(by_alias=True, exclude_none=True) for e in stage.env_from],
        "params": job_params(spec),
        "inputs": digests,
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _ancestors(stage: Stage, stages: Mapping[str, Stage]) -> set[str]:
    """Every stage ``stage`` runs after (the pipeline has no cycle: it was ordered)."""
    found: set[str] = set()
    pending = list(stage.depends_on)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(stages[name].depends_on)
    return found
