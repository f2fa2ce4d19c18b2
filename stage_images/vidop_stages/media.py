"""What ffprobe says about a media file, as typed values.

video_gen checks its encode with it and compositing validates the final MP4
(:mod:`vidop_stages.compositing.validation`); the integration tests read their
outputs the same way. :func:`parse_probe` is pure; :func:`probe` runs ffprobe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidop_stages.tools import run_tool


@dataclass(frozen=True)
class Stream:
    kind: str
    """ffprobe's codec_type: video, audio, subtitle, data."""
    codec: str
    duration: float | None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    format_names: tuple[str, ...]
    duration: float | None
    streams: tuple[Stream, ...]

    def first(self, kind: str) -> Stream | None:
        return next((stream for stream in self.streams if stream.kind == kind), None)


def parse_probe(text: str) -> MediaInfo:
    """``text`` is ``ffprobe -show_streams -show_format -of json`` output."""
    document = json.loads(text)
    media_format = document.get("format", {})
    return MediaInfo(
        format_names=tuple(str(media_format.get("format_name", "")).split(",")),
        duration=_float(media_format.get("duration")),
        streams=tuple(_stream(entry) for entry in document.get("streams", [])),
    )


def probe(path: Path) -> MediaInfo:
    return parse_probe(
        run_tool(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", path],
            timeout=120,
        )
    )


def _stream(entry: dict[str, Any]) -> Stream:
    return Stream(
        kind=str(entry.get("codec_type", "")),
        codec=str(entry.get("codec_name", "")),
        duration=_float(entry.get("duration")),
        width=_int(entry.get("width")),
        height=_int(entry.get("height")),
        frames=_int(entry.get("nb_frames")),
        sample_rate=_int(entry.get("sample_rate")),
        channels=_int(entry.get("channels")),
    )


# ffprobe writes many numbers as strings, and "N/A" where it has none.
def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
