"""video_gen's entry point (``vidop-stage-video-gen``): the scenes as H.264 video.

Reads script_gen's scene script, draws each scene's keyframe with Pillow
(:mod:`vidop_stages.video_gen.keyframes`) and has ffmpeg animate and encode
them in one run (:mod:`vidop_stages.video_gen.encoding`): every scene gets
exactly the frames of its planned window, so the video is ``durationSeconds``
long to the frame and matches the narration voice_gen fits to the same
windows in parallel. Encodes with NVENC when a working NVIDIA GPU is there,
otherwise with libx264.

Writes ``video_gen/video.mp4`` (video only, :mod:`vidop_stages.artifacts`);
the summary gives its URI, frame count, encoder and size. Fanned out (one pod
per scene, ``vid_operator.contract``: items), each pod renders only its scene
into ``video_gen/items/<index>/video.mp4``, exactly that scene's frames, and
compositing joins them.
"""

from __future__ import annotations

import sys
import time

import structlog

from vidop_stages import artifacts
from vidop_stages.media import probe
from vidop_stages.runtime import StageContext, Summary, run_stage
from vidop_stages.scenescript import SceneScript
from vidop_stages.tools import ToolFailed, run_tool
from vidop_stages.video_gen.encoding import (
    NVENC,
    SceneClip,
    choose_encoder,
    listed_encoders,
    nvenc_probe_command,
    render_command,
)
from vidop_stages.video_gen.keyframes import draw_keyframe

# Keyframes are read once by ffmpeg: fast compression beats small files.
_PNG_COMPRESSION = 1


def main() -> None:
    sys.exit(run_stage(render_video))


def render_video(context: StageContext) -> Summary:
    params = context.params
    script_path = context.store.fetch(artifacts.SCRIPT, context.workdir / artifacts.SCRIPT.name)
    script = SceneScript.from_json(script_path.read_text(encoding="utf-8"))
    script.check_planned_for(params.duration_seconds, params.fps)
    encoder = pick_encoder(params.width, params.height, context.log)

    scenes = list(zip(script.scenes, script.windows(params.fps), strict=True))
    if context.item is not None:
        # One pod per scene: this one renders its own, the compositing
        # stage joins them.
        if context.item.count != len(scenes):
            raise ValueError(
                f"the stage runs over {context.item.count} scenes, the script has {len(scenes)}"
            )
        scenes = [scenes[context.item.index]]

    started = time.monotonic()
    clips = []
    for drawn_count, (scene, (first, end)) in enumerate(scenes):
        # Drawing is the first fifth of the work, encoding the rest.
        context.progress(20 * drawn_count / len(scenes), f"drawing scene {scene.index + 1}")
        keyframe = context.workdir / f"keyframe-{scene.index:03d}.png"
        draw_keyframe(scene, params.width, params.height).save(
            keyframe, compress_level=_PNG_COMPRESSION
        )
        clips.append(SceneClip(keyframe, end - first, scene.motion))
    drawn = time.monotonic()
    output = context.workdir / artifacts.SCENE_VIDEO.name
    context.progress(20, f"encoding {sum(clip.frames for clip in clips)} frames")
    run_tool(render_command(clips, params.width, params.height, params.fps, encoder, output))
    context.log.info(
        "video rendered",
        encoder=encoder,
        scenes=[scene.index for scene, _ in scenes],
        keyframes_seconds=round(drawn - started, 2),
        encode_seconds=round(time.monotonic() - drawn, 2),
    )

    frames = sum(clip.frames for clip in clips)
    video = probe(output).first("video")
    expected = (frames, params.width, params.height)
    if video is None or (video.frames, video.width, video.height) != expected:
        raise ValueError(f"ffmpeg wrote {video}, expected frames, width, height {expected}")
    return {
        "video": context.store.publish(output, artifacts.SCENE_VIDEO),
        "frames": frames,
        "fps": params.fps,
        "durationSeconds": frames / params.fps,
        "resolution": params.resolution,
        "scenes": len(scenes),
        "sceneIndexes": [scene.index for scene, _ in scenes],
        "encoder": encoder,
    }


def pick_encoder(width: int, height: int, log: structlog.typing.FilteringBoundLogger) -> str:
    listed = listed_encoders(run_tool(["ffmpeg", "-hide_banner", "-encoders"], timeout=60))
    probe_succeeded = False
    if NVENC in listed:
        try:
            run_tool(nvenc_probe_command(width, height), timeout=60)
            probe_succeeded = True
        except ToolFailed as failure:
            log.info(
                "NVENC is listed but does not work here; encoding on the CPU", reason=str(failure)
            )
    return choose_encoder(listed, probe_succeeded)
