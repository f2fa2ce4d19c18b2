"""The job's parameters as a stage receives them (``contract.ENV_PARAMS``), checked.

:mod:`vidop_stages.runtime` parses them for every stage before the stage's own
code runs, so a value no stage can work with (a prompt without words, a frame
size H.264 cannot encode) fails the first stage at once with
:class:`~vidop_stages.errors.InvalidInput` instead of wasting later ones. The
API's schema already checks most of this at ``kubectl apply`` time; a stage
checks again because it may be run by hand, and because some limits (even
frame sizes) are the encoder's, not the API's. Pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from vidop_stages.errors import InvalidInput

WORD = re.compile(r"[^\W_]+")
"""A run of letters or digits in any script: what counts as a word."""

MAX_DURATION_SECONDS = 600
MAX_FPS = 60
# yuv420p halves both dimensions for chroma, so H.264 needs even sizes; below
# 64 pixels nothing is legible, above 4096 most encoders (NVENC's H.264 among
# them) refuse.
MIN_DIMENSION = 64
MAX_DIMENSION = 4096
_RESOLUTION = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")
_VOICE = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")

_Value = TypeVar("_Value")


@dataclass(frozen=True)
class JobParams:
    prompt: str
    duration_seconds: int
    width: int
    height: int
    fps: int
    voice: str

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def total_frames(self) -> int:
        return self.duration_seconds * self.fps


def parse_params(raw: str) -> JobParams:
    """``raw`` is the JSON the operator puts in ``contract.ENV_PARAMS``."""
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise InvalidInput(f"the job parameters are not JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidInput("the job parameters are not a JSON object")
    width, height = parse_resolution(_field(document, "resolution", str))
    return JobParams(
        prompt=check_prompt(_field(document, "prompt", str)),
        duration_seconds=_bounded(document, "durationSeconds", 1, MAX_DURATION_SECONDS),
        width=width,
        height=height,
        fps=_bounded(document, "fps", 1, MAX_FPS),
        voice=_voice(_field(document, "voice", str)),
    )


def check_prompt(prompt: str) -> str:
    if not WORD.search(prompt):
        raise InvalidInput("the prompt has no words")
    return prompt


def parse_resolution(resolution: str) -> tuple[int, int]:
    match = _RESOLUTION.match(resolution)
    if not match:
        raise InvalidInput(f"resolution {resolution!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    width, height = int(match[1]), int(match[2])
    for name, size in (("width", width), ("height", height)):
        if not MIN_DIMENSION <= size <= MAX_DIMENSION:
            raise InvalidInput(
                f"resolution {resolution}: {name} {size} is outside "
                f"{MIN_DIMENSION}..{MAX_DIMENSION} pixels"
            )
        if size % 2:
            raise InvalidInput(f"resolution {resolution}: H.264 needs an even {name}, not {size}")
    return width, height


def _voice(voice: str) -> str:
    if not _VOICE.match(voice):
        raise InvalidInput(f"voice {voice!r} is not a voice name such as en or en-us")
    return voice


def _field(document: dict[str, Any], name: str, kind: type[_Value]) -> _Value:
    value = document.get(name)
    # bool is an int in Python; a JSON true is no number of seconds.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInput(f"job parameter {name} must be a {kind.__name__}, not {value!r}")
    return value


def _bounded(document: dict[str, Any], name: str, low: int, high: int) -> int:
    value = _field(document, name, int)
    if not low <= value <= high:
        raise InvalidInput(f"job parameter {name} is {value}, outside {low}..{high}")
    return value
