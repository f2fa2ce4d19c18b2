"""The loudness stage's target, read from its environment. Pure.

:mod:`vidop_stages.loudness.main` reads ``LOUDNESS_TARGET_LUFS`` (set per
stage in the operator's pipeline configuration) before it fetches anything,
so a bad value fails the Job at once as bad input (exit 2) instead of being
retried. The true-peak ceiling and loudness range are fixed: they suit speech
and are what most platforms ask for beside their integrated target.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vidop_stages.errors import InvalidInput

TARGET_ENV = "LOUDNESS_TARGET_LUFS"
DEFAULT_TARGET_LUFS = -16.0
"""The usual figure for speech on streaming and podcast platforms (AES
TD1004); EBU R128's broadcast programmes sit at -23."""
# loudnorm's own bounds for its I option: outside them ffmpeg refuses to start.
MIN_TARGET_LUFS = -70.0
MAX_TARGET_LUFS = -5.0
TRUE_PEAK_DBTP = -1.5
LOUDNESS_RANGE_LU = 11.0
# Plain decimals only: float() also takes "nan", "inf", "1e1" and "-1_6",
# none of which anyone means as a loudness.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def target_lufs(environ: Mapping[str, str]) -> float:
    """The integrated loudness to reach; :data:`DEFAULT_TARGET_LUFS` when the
    variable is unset or empty (how Kubernetes writes a value left blank)."""
    return parse_target(environ.get(TARGET_ENV) or None)


def parse_target(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_TARGET_LUFS
    # Surrounding whitespace is forgiven: a value read from a file ends in a newline.
    text = raw.strip()
    if not _DECIMAL.fullmatch(text):
        raise InvalidInput(f"{TARGET_ENV} {raw!r} is not a number of LUFS, e.g. -16")
    value = float(text)
    if not MIN_TARGET_LUFS <= value <= MAX_TARGET_LUFS:
        raise InvalidInput(
            f"{TARGET_ENV} {raw!r} is outside {MIN_TARGET_LUFS:g}..{MAX_TARGET_LUFS:g} LUFS"
        )
    return value
