"""Which stage's narration compositing mixes in, read from its environment. Pure.

voice_gen's, unless ``NARRATION_STAGE`` names another stage: a custom pipeline
that runs a stage over the narration (the loudness stage,
:mod:`vidop_stages.loudness`) points compositing at that stage's output, with
the same file name (``<stage>/narration.wav``). The subtitles stay voice_gen's:
such a stage changes how the narration sounds, not when it is spoken.

Called by :mod:`vidop_stages.compositing.main` before anything is fetched, so
a value that cannot be a stage name fails the Job as bad input (exit 2).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from vidop_stages import artifacts
from vidop_stages.artifacts import Artifact
from vidop_stages.errors import InvalidInput

NARRATION_STAGE_ENV = "NARRATION_STAGE"
# A stage name as it can appear in an artifact key and a Job's name: a
# DNS-label-like word, short enough for the Job name the operator derives.
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,23}$")


def narration_artifact(environ: Mapping[str, str]) -> Artifact:
    """voice_gen's narration when the variable is unset or empty (how
    Kubernetes writes a value left blank), else the named stage's."""
    stage = environ.get(NARRATION_STAGE_ENV) or artifacts.NARRATION.stage
    # fullmatch, not match: "$" would let a trailing newline through.
    if not _STAGE_NAME.fullmatch(stage):
        raise InvalidInput(
            f"{NARRATION_STAGE_ENV} {stage!r} is not a stage name "
            "(a lowercase letter, then up to 23 of a-z, 0-9, _ and -)"
        )
    return dataclasses.replace(artifacts.NARRATION, stage=stage)
