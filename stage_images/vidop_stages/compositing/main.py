"""compositing's entry point (``vidop-stage-compositing``): the final MP4.

The last stage: muxes video_gen's video, voice_gen's narration and subtitles
(:mod:`vidop_stages.compositing.commands`), takes a JPEG thumbnail, checks
the result with ffprobe (:mod:`vidop_stages.compositing.validation`) and
uploads both. Writes ``compositing/video.mp4`` and
``compositing/thumbnail.jpg`` (:mod:`vidop_stages.artifacts`).

A video_gen that fanned out (one pod per scene) left one clip per scene;
they are joined end to end without re-encoding first.

The narration may come from another stage than voice_gen, one a custom
pipeline runs over it (the loudness stage): ``NARRATION_STAGE`` names it
(:mod:`vidop_stages.compositing.sources`); the subtitles stay voice_gen's.

The summary carries ``videoUri``, ``thumbnailUri`` and ``durationSeconds``
(measured by ffprobe): the operator copies those into the VideoJob's
``status.outputs``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vidop_stages import artifacts
from vidop_stages.compositing.commands import (
    concat_command,
    concat_list,
    mux_command,
    thumbnail_command,
)
from vidop_stages.compositing.sources import narration_artifact
from vidop_stages.compositing.validation import final_video_problems
from vidop_stages.media import probe
from vidop_stages.runtime import StageContext, Summary, run_stage
from vidop_stages.tools import run_tool


def main() -> None:
    sys.exit(run_stage(composite))


def composite(context: StageContext) -> Summary:
    params = context.params
    workdir = context.workdir
    # Before any download: a bad stage name is the user's, and fails at once.
    narration_source = narration_artifact(os.environ)
    context.log.info("narration source", stage=narration_source.stage)
    video = _scene_video(context)
    narration = context.store.fetch(narration_source, workdir / narration_source.name)
    subtitles = context.store.fetch(artifacts.SUBTITLES, workdir / artifacts.SUBTITLES.name)

    scenes = probe(video).first("video")
    if scenes is None or scenes.duration is None:
        raise ValueError("video_gen's video has no video stream with a duration")
    output = workdir / artifacts.FINAL_VIDEO.name
    run_tool(mux_command(video, narration, subtitles, scenes.duration, output))
    thumbnail = workdir / artifacts.THUMBNAIL.name
    run_tool(thumbnail_command(output, scenes.duration, thumbnail))

    info = probe(output)
    problems = final_video_problems(info, params.width, params.height, params.duration_seconds)
    if problems or info.duration is None:
        raise ValueError("the final video is wrong: " + "; ".join(problems or ["no duration"]))
    return {
        "videoUri": context.store.publish(output, artifacts.FINAL_VIDEO),
        "thumbnailUri": context.store.publish(thumbnail, artifacts.THUMBNAIL),
        "durationSeconds": round(info.duration, 3),
        "resolution": params.resolution,
        "sizeBytes": output.stat().st_size,
    }


def _scene_video(context: StageContext) -> Path:
    """video_gen's video: its one file, or its scene clips joined in order."""
    joined = context.workdir / "scenes.mp4"
    clips_folder = context.workdir / "clips"
    clips_folder.mkdir()
    clips = context.store.fetch_items(artifacts.SCENE_VIDEO, clips_folder)
    if not clips:
        return context.store.fetch(artifacts.SCENE_VIDEO, joined)
    list_file = context.workdir / "clips.txt"
    list_file.write_text(concat_list(clips), encoding="utf-8")
    run_tool(concat_command(list_file, joined))
    # A clip missing or cut short would otherwise show only as a video a
    # few frames short, which the final check's tolerance might let pass.
    video = probe(joined).first("video")
    expected = context.params.total_frames
    if video is None or video.frames != expected:
        frames = video.frames if video else None
        raise ValueError(
            f"video_gen's {len(clips)} scene clips hold {frames} frames together, not {expected}"
        )
    context.log.info("scene clips joined", clips=len(clips), frames=expected)
    return joined
