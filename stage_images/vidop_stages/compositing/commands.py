"""The ffmpeg commands compositing runs: the join of a fanned-out
video_gen's scene clips, the mux and the thumbnail. Pure.

Called by :mod:`vidop_stages.compositing.main`. The mux copies video_gen's
H.264 as it is, encodes the narration to AAC (48 kHz, stereo) and the SRT to
mov_text, and writes an MP4 with its index first (``+faststart``) so players
start before the download ends.

No ``-shortest``: with a subtitle stream it can end the output at the last
cue and cut the video. Instead the audio is padded and trimmed to exactly the
video's length (``apad``, ``atrim``), which it already is when voice_gen and
video_gen both kept to the script's timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vidop_stages.compositing.validation import AUDIO_CHANNELS, AUDIO_SAMPLE_RATE
from vidop_stages.tools import FFMPEG

AUDIO_BITRATE = "128k"
THUMBNAIL_MAX_WIDTH = 640
THUMBNAIL_AT_FRACTION = 1 / 3
"""Where the thumbnail is taken: past the first scene's opening, usually."""


def concat_command(list_file: Path, output: Path) -> list[str]:
    """Join clips of the same encoding end to end without re-encoding: the
    concat demuxer reads ``list_file`` (one ``file '<path>'`` line per clip,
    :func:`concat_list`) and copies their packets."""
    return [
        *FFMPEG,
        "-f", "concat",
        # The list names absolute paths in the stage's own scratch folder.
        "-safe", "0",
        "-i", str(list_file),
        "-c", "copy",
        "-movflags", "+faststart",
        str(output),
    ]  # fmt: skip


def concat_list(clips: Sequence[Path]) -> str:
    """The concat demuxer's list of ``clips``, quoted as it reads them."""
    quoted = (str(clip).replace("'", "'\\''") for clip in clips)
    return "".join(f"file '{path}'\n" for path in quoted)


def mux_command(
    video: Path, narration: Path, subtitles: Path, video_seconds: float, output: Path
) -> list[str]:
    audio_samples = round(video_seconds * AUDIO_SAMPLE_RATE)
    audio_filter = (
        f"aformat=sample_rates={AUDIO_SAMPLE_RATE}:channel_layouts=stereo,"
        f"apad,atrim=end_sample={audio_samples}"
    )
    return [
        *FFMPEG,
        "-i", str(video),
        "-i", str(narration),
        "-i", str(subtitles),
        "-map", "0:v:0",
        "-map", "1:a:0",
        "-map", "2:s:0",
        "-c:v", "copy",
        "-filter:a", audio_filter,
        "-c:a", "aac",
        # Twice as fast as the default search, and speech at 128k sounds the same.
        "-aac_coder", "fast",
        "-b:a", AUDIO_BITRATE,
        "-ar", str(AUDIO_SAMPLE_RATE),
        "-ac", str(AUDIO_CHANNELS),
        "-c:s", "mov_text",
        "-movflags", "+faststart",
        str(output),
    ]  # fmt: skip


def thumbnail_command(video: Path, video_seconds: float, output: Path) -> list[str]:
    return [
        *FFMPEG,
        # Seeking before the input is fast and, since ffmpeg 2.1, exact.
        "-ss", f"{video_seconds * THUMBNAIL_AT_FRACTION:.3f}",
        "-i", str(video),
        "-frames:v", "1",
        "-vf", f"scale='min({THUMBNAIL_MAX_WIDTH},iw)':-2",
        "-q:v", "3",
        str(output),
    ]  # fmt: skip
