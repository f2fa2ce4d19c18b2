"""The ffmpeg command that animates and encodes the keyframes, and the choice
of encoder. Pure: argument lists in, nothing run.

Called by :mod:`vidop_stages.video_gen.main`. One ffmpeg run encodes the
whole video: each scene's keyframe is an input, ``zoompan`` turns it into
exactly the scene's frame count with a Ken Burns move, ``fade`` dips it in
from black and out to black again (:func:`scene_filter`), and ``concat``
joins the scenes, so the frame count is ``durationSeconds * fps`` by
construction (the scene windows come from the script,
:meth:`SceneScript.windows`). Each scene's chain stands alone (its fades are
inside its own frames, never a crossfade with its neighbour), so a scene
rendered as a clip of its own (``render_command`` with one clip) joins the
others by stream copy and the video looks the same.

The encoder is NVIDIA's ``h264_nvenc`` only when ffmpeg lists it *and* a tiny
encode with it succeeds (ffmpeg builds list it on machines without a GPU);
otherwise ``libx264``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vidop_stages.scenescript import Motion
from vidop_stages.tools import FFMPEG

NVENC = "h264_nvenc"
X264 = "libx264"
GOP_SECONDS = 2
"""A keyframe every two seconds: seekable without bloating the file."""
FADE_SECONDS = 0.3
"""Each scene fades in from black and out to black over this long."""


@dataclass(frozen=True)
class SceneClip:
    keyframe: Path
    frames: int
    motion: Motion


def listed_encoders(listing: str) -> set[str]:
    """Encoder names from ``ffmpeg -encoders``: after its legend and a line of
    dashes, rows like `` V....D libx264  libx264 H.264 ...``."""
    lines = [line.split() for line in listing.splitlines()]
    separator = next(
        (i for i, columns in enumerate(lines) if columns and set(columns[0]) == {"-"}), None
    )
    if separator is None:
        return set()
    return {columns[1] for columns in lines[separator + 1 :] if len(columns) >= 2}


def nvenc_probe_command(width: int, height: int) -> list[str]:
    """Encode one black frame at the job's size with NVENC, output discarded:
    it fails unless a usable NVIDIA GPU (and driver) is there and NVENC
    accepts this frame size."""
    return [
        *FFMPEG,
        "-f", "lavfi", "-i", f"color=c=black:s={width}x{height}:r=1",
        "-frames:v", "1", "-c:v", NVENC, "-f", "null", "-",
    ]  # fmt: skip


def choose_encoder(listed: set[str], nvenc_probe_succeeded: bool) -> str:
    return NVENC if NVENC in listed and nvenc_probe_succeeded else X264


def encoder_options(encoder: str, fps: int) -> list[str]:
    gop = ["-g", str(GOP_SECONDS * fps)]
    if encoder == NVENC:
        # Constant quality (VBR with -cq and no bitrate cap), p4 = balanced.
        quality = ["-preset", "p4", "-rc", "vbr", "-cq", "23", "-b:v", "0"]
    else:
        # veryfast keeps a 20 s 720p render to seconds on two cores; the
        # pictures are smooth, so CRF 21 still looks clean.
        quality = ["-preset", "veryfast", "-crf", "21"]
    return ["-c:v", encoder, *quality, *gop, "-profile:v", "high", "-pix_fmt", "yuv420p"]


def zoompan_filter(motion: Motion, frames: int, width: int, height: int, fps: int) -> str:
    """``zoompan`` producing ``frames`` frames from one still: the zoom goes
    linearly from ``zoom_from`` to ``zoom_to`` while the view slides between
    the two pan points (fractions of the room the zoom leaves)."""
    # ``on`` counts this filter's output frames from 0, so the move ends
    # exactly on the scene's last frame.
    progress = f"on/{frames - 1}" if frames > 1 else "0"
    zoom = f"{motion.zoom_from}+({motion.zoom_to - motion.zoom_from:.6f})*{progress}"
    (x_from, y_from), (x_to, y_to) = motion.pan_from, motion.pan_to
    x = f"(iw-iw/zoom)*({x_from}+({x_to - x_from:.6f})*{progress})"
    y = f"(ih-ih/zoom)*({y_from}+({y_to - y_from:.6f})*{progress})"
    return f"zoompan=z='{zoom}':x='{x}':y='{y}':d={frames}:s={width}x{height}:fps={fps}"


def fade_frames(frames: int, fps: int) -> int:
    """Frames of each fade: :data:`FADE_SECONDS`, at most a quarter of the
    scene each way so its middle stays in full view; 0 for a scene too short
    to fade."""
    return min(round(FADE_SECONDS * fps), frames // 4)


def scene_filter(clip: SceneClip, width: int, height: int, fps: int) -> str:
    """The filters that turn a scene's keyframe into exactly its frames: the
    Ken Burns move, then a fade in over the first frames and out over the
    last (``fade`` counts frames, so the count is unchanged)."""
    chain = [zoompan_filter(clip.motion, clip.frames, width, height, fps)]
    fade = fade_frames(clip.frames, fps)
    if fade:
        chain += [f"fade=t=in:s=0:n={fade}", f"fade=t=out:s={clip.frames - fade}:n={fade}"]
    return ",".join([*chain, "setsar=1"])


def render_command(
    clips: Sequence[SceneClip], width: int, height: int, fps: int, encoder: str, output: Path
) -> list[str]:
    inputs: list[str] = []
    chains: list[str] = []
    for index, clip in enumerate(clips):
        inputs += ["-i", str(clip.keyframe)]
        chains.append(f"[{index}:v]{scene_filter(clip, width, height, fps)}[scene{index}]")
    joined = "".join(f"[scene{index}]" for index in range(len(clips)))
    graph = ";".join([*chains, f"{joined}concat=n={len(clips)}:v=1:a=0,format=yuv420p[video]"])
    total = sum(clip.frames for clip in clips)
    return [
        *FFMPEG,
        *inputs,
        "-filter_complex", graph,
        "-map", "[video]",
        "-frames:v", str(total),
        "-r", str(fps),
        *encoder_options(encoder, fps),
        "-movflags", "+faststart",
        str(output),
    ]  # fmt: skip
