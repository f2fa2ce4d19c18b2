"""voice_gen's entry point (``vidop-stage-voice-gen``): narration and subtitles.

Reads script_gen's scene script, speaks each scene's sentences with espeak-ng
in the job's voice (an unknown voice is bad input: exit 2) and fits them into
the scene's planned window (:mod:`vidop_stages.voice_gen.fitting` says how),
so the narration is exactly ``durationSeconds`` long and lines up with the
video that video_gen renders from the same windows at the same time. The
subtitles are cut from where each sentence was really placed.

Writes ``voice_gen/narration.wav`` and ``voice_gen/subtitles.srt``
(:mod:`vidop_stages.artifacts`); the summary names them with the measured
duration, the voice and the engine.
"""

from __future__ import annotations

import sys
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

import structlog

from vidop_stages import artifacts
from vidop_stages.runtime import StageContext, Summary, run_stage
from vidop_stages.scenescript import Scene, SceneScript
from vidop_stages.voice_gen.fitting import (
    MAX_RATE,
    NATURAL_MAX_RATE,
    NORMAL_RATE,
    faster_rate,
    mix,
    place_sentences,
    speedup_needed,
)
from vidop_stages.voice_gen.speech import (
    ENGINE,
    Speech,
    installed_voices,
    speak,
    write_wav,
)
from vidop_stages.voice_gen.subtitles import Cue, format_srt
from vidop_stages.voice_gen.voices import check_voice

# espeak-ng's own rate; only used when the script has nothing to say.
_DEFAULT_SAMPLE_RATE = 22050


@dataclass(frozen=True)
class Narration:
    samples: array[int]
    rate: int
    cues: list[Cue]
    sped_up_scenes: int


def main() -> None:
    sys.exit(run_stage(generate_voice))


def generate_voice(context: StageContext) -> Summary:
    voice = check_voice(context.params.voice, installed_voices())
    script_path = context.store.fetch(artifacts.SCRIPT, context.workdir / artifacts.SCRIPT.name)
    script = SceneScript.from_json(script_path.read_text(encoding="utf-8"))
    script.check_planned_for(context.params.duration_seconds, context.params.fps)
    context.progress(0, f"speaking {len(script.scenes)} scenes")
    narration = narrate(script, voice, context.workdir, context.log)
    context.progress(90, "writing narration and subtitles")

    wav_path = context.workdir / artifacts.NARRATION.name
    write_wav(wav_path, narration.samples, narration.rate)
    with wave.open(str(wav_path), "rb") as written:
        measured = written.getnframes() / written.getframerate()
    srt_path = context.workdir / artifacts.SUBTITLES.name
    srt_path.write_text(format_srt(narration.cues), encoding="utf-8")
    return {
        "narration": context.store.publish(wav_path, artifacts.NARRATION),
        "subtitles": context.store.publish(srt_path, artifacts.SUBTITLES),
        "durationSeconds": round(measured, 3),
        "sentences": len(narration.cues),
        "spedUpScenes": narration.sped_up_scenes,
        "voice": voice,
        "engine": ENGINE,
    }


def narrate(
    script: SceneScript, voice: str, workdir: Path, log: structlog.typing.FilteringBoundLogger
) -> Narration:
    spoken = [
        [speak(sentence, voice, NORMAL_RATE, workdir) for sentence in scene.narration]
        for scene in script.scenes
    ]
    rates = {speech.rate for speeches in spoken for speech in speeches}
    if len(rates) > 1:
        raise ValueError(f"espeak-ng spoke at several sample rates: {sorted(rates)}")
    rate = rates.pop() if rates else _DEFAULT_SAMPLE_RATE
    windows = script.windows(rate)
    pieces: list[tuple[int, array[int]]] = []
    cues: list[Cue] = []
    sped_up = 0
    for scene, speeches, (start, end) in zip(script.scenes, spoken, windows, strict=True):
        fitted = _fit(scene, speeches, end - start, voice, workdir, log)
        sped_up += fitted is not speeches
        placements = place_sentences(end - start, [len(s.samples) for s in fitted], rate)
        for sentence, speech, placement in zip(scene.narration, fitted, placements, strict=True):
            begin = start + placement.offset
            pieces.append((begin, speech.samples[: placement.length]))
            cues.append(Cue(begin / rate, (begin + placement.length) / rate, sentence))
    return Narration(mix(windows[-1][1], pieces), rate, cues, sped_up)


def _fit(
    scene: Scene,
    speeches: list[Speech],
    window: int,
    voice: str,
    workdir: Path,
    log: structlog.typing.FilteringBoundLogger,
) -> list[Speech]:
    """The scene's sentences, spoken again faster while they overrun its
    window: first at most at espeak-ng's natural top rate, then compressed."""
    sample_rate = speeches[0].rate if speeches else _DEFAULT_SAMPLE_RATE
    words_per_minute = NORMAL_RATE
    for cap in (NATURAL_MAX_RATE, MAX_RATE):
        speedup = speedup_needed(window, [len(s.samples) for s in speeches], sample_rate)
        if speedup <= 1 or words_per_minute >= cap:
            continue
        words_per_minute = faster_rate(words_per_minute, speedup, cap)
        log.info(
            "speaking faster to fit",
            scene=scene.index,
            speedup=round(speedup, 3),
            words_per_minute=words_per_minute,
        )
        speeches = [speak(text, voice, words_per_minute, workdir) for text in scene.narration]
    return speeches
