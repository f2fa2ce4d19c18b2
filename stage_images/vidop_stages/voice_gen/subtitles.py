"""SubRip (SRT) subtitles from the narration's measured sentence timings.

voice_gen's ``main`` passes the cues that :mod:`vidop_stages.voice_gen.fitting`
placed (one per sentence, where it is really heard); compositing muxes the
file as a mov_text stream. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cue:
    start_seconds: float
    end_seconds: float
    text: str


def format_timestamp(seconds: float) -> str:
    """``HH:MM:SS,mmm``, rounded to the millisecond."""
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d},{milliseconds:03d}"


def format_srt(cues: Iterable[Cue]) -> str:
    blocks = []
    for number, cue in enumerate(cues, start=1):
        # A blank line ends a cue, so a cue's text must not contain one.
        text = " ".join(cue.text.split())
        timing = f"{format_timestamp(cue.start_seconds)} --> {format_timestamp(cue.end_seconds)}"
        blocks.append(f"{number}\n{timing}\n{text}\n")
    return "\n".join(blocks)
