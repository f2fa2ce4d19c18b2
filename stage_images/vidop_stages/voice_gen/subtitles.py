"""SubRip (SRT) subtitles from the narration's measured sentence timings.

voice_gen's ``main`` passes the cues that :mod:`vidop_stages.voice_gen.fitting`
placed (one per sentence, where it is really heard); compositing muxes the
file as a mov_text stream. A cue's text is wrapped into lines of at most
:data:`LINE_COLUMNS` columns, balanced in length: at spaces, or between any
two characters in Chinese and Japanese, which have none (a Chinese character
is two columns wide, :func:`vidop_stages.writing.display_width`), never
putting a closing mark such as ``。`` or ``」`` at the start of a line. Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from vidop_stages.writing import UNSPACED_RANGES, can_start_line, display_width

LINE_COLUMNS = 42
"""The usual most for a subtitle line (21 Chinese characters)."""
# A line may break after a space or either side of a character of a script
# written without spaces; spaces at a break are dropped.
_PIECE = re.compile(f"[{UNSPACED_RANGES}]|[^\\s{UNSPACED_RANGES}]+|\\s+")


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
        text = "\n".join(wrap(" ".join(cue.text.split())))
        timing = f"{format_timestamp(cue.start_seconds)} --> {format_timestamp(cue.end_seconds)}"
        blocks.append(f"{number}\n{timing}\n{text}\n")
    return "\n".join(blocks)


def wrap(text: str, columns: int = LINE_COLUMNS) -> list[str]:
    """``text`` in as few lines of at most ``columns`` as it needs, as even
    in width as breaking allows; a word longer than a line gets a line of
    its own."""
    total = display_width(text)
    if total <= columns:
        return [text]
    pieces = _join_unbreakable(_PIECE.findall(text))
    fewest = math.ceil(total / columns)
    # The narrowest width that still needs no more lines than the fewest.
    for width in range(math.ceil(total / fewest), columns):
        lines = _fill(pieces, width)
        if len(lines) <= fewest:
            return lines
    return _fill(pieces, columns)


def _fill(pieces: list[str], width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if line and not piece.isspace() and display_width(line.rstrip() + piece) > width:
            lines.append(line.rstrip())
            line = ""
        if line or not piece.isspace():
            line += piece
    lines.append(line.rstrip())
    return lines


def _join_unbreakable(pieces: list[str]) -> list[str]:
    """Pieces with each mark that may not start a line stuck to the piece
    before it."""
    joined: list[str] = []
    for piece in pieces:
        if joined and not can_start_line(piece[0]) and not joined[-1].isspace():
            joined[-1] += piece
        else:
            joined.append(piece)
    return joined
