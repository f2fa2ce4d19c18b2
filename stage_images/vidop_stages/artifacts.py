"""Where each reference stage keeps its outputs, under ``<artifact prefix><stage>/``.

The one place that names the files, so a stage that writes one and the stages
that read it agree. Used by every stage's ``main``. Pure.

    script_gen/script.json       the scene script (vidop_stages.scenescript)
    voice_gen/narration.wav      16-bit mono PCM, exactly durationSeconds long
    voice_gen/subtitles.srt      one cue per narration sentence, as spoken
    video_gen/video.mp4          H.264 video only, durationSeconds * fps frames
    compositing/video.mp4        the final H.264 + AAC + mov_text MP4 (faststart)
    compositing/thumbnail.jpg    one frame of it

A stage a custom pipeline adds may write a file of the same name under its
own name: the loudness stage writes ``loudness/narration.wav`` (voice_gen's
narration at a target loudness, same format and length), which compositing
reads instead when ``NARRATION_STAGE`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Artifact:
    stage: str
    name: str
    content_type: str


SCRIPT = Artifact("script_gen", "script.json", "application/json")
NARRATION = Artifact("voice_gen", "narration.wav", "audio/wav")
SUBTITLES = Artifact("voice_gen", "subtitles.srt", "application/x-subrip")
SCENE_VIDEO = Artifact("video_gen", "video.mp4", "video/mp4")
FINAL_VIDEO = Artifact("compositing", "video.mp4", "video/mp4")
THUMBNAIL = Artifact("compositing", "thumbnail.jpg", "image/jpeg")
