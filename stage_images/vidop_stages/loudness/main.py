"""loudness's entry point (``vidop-stage-loudness``): narration at a target loudness.

An optional stage, for custom pipelines: after voice_gen, before compositing
(which then reads the narration from here: ``NARRATION_STAGE=<this stage's
name>`` in compositing's environment). Reads voice_gen's narration, meters it,
normalises it with ffmpeg's ``loudnorm`` to ``LOUDNESS_TARGET_LUFS``
(:mod:`vidop_stages.loudness.target`; -16 LUFS unless set, true peak at most
-1.5 dBTP), meters the result (:mod:`vidop_stages.loudness.commands` says how
and why so) and publishes it under this stage's own name, with voice_gen's
file name (``<stage>/narration.wav``), the same 16-bit PCM at the same sample
rate and exactly as long, so compositing takes it as it takes voice_gen's.

A silent narration (nothing above BS.1770's -70 LUFS gate) is published as it
came: silence has no loudness to move.

The summary: ``narrationUri``, ``targetLufs``, ``inputLufs`` and
``integratedLufs`` (measured before and after; left out for silence) and
``normalization`` (``linear``, ``dynamic`` or ``none``).
"""

from __future__ import annotations

import os
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

from vidop_stages import artifacts
from vidop_stages.loudness.commands import (
    Loudness,
    measure_command,
    normalise_command,
    parse_measurement,
    parse_normalization_type,
)
from vidop_stages.loudness.target import LOUDNESS_RANGE_LU, TRUE_PEAK_DBTP, target_lufs
from vidop_stages.runtime import StageContext, Summary, run_stage
from vidop_stages.tools import run_tool

# The narration artifact's format (vidop_stages.artifacts), which is also what
# this stage writes back.
_SAMPLE_WIDTH_BYTES = 2


@dataclass(frozen=True)
class WavFormat:
    sample_rate: int
    channels: int
    samples: int
    """Per channel: the narration's length in samples."""


def main() -> None:
    sys.exit(run_stage(normalise_loudness))


def normalise_loudness(context: StageContext) -> Summary:
    # Before any download: a bad target is the user's, and fails at once.
    target = target_lufs(os.environ)
    workdir = context.workdir
    source = context.store.fetch(artifacts.NARRATION, workdir / "voice_gen-narration.wav")
    source_format = wav_format(source)
    before = measure(source)
    context.log.info(
        "narration measured",
        integrated_lufs=before.integrated_lufs,
        true_peak_dbtp=before.true_peak_dbtp,
        range_lu=before.range_lu,
        target_lufs=target,
    )
    if before.silent:
        return {
            "narrationUri": context.store.publish(source, artifacts.NARRATION),
            "targetLufs": target,
            "normalization": "none",
        }

    output = workdir / artifacts.NARRATION.name
    log = run_tool(
        normalise_command(
            source,
            before,
            target,
            TRUE_PEAK_DBTP,
            LOUDNESS_RANGE_LU,
            source_format.sample_rate,
            source_format.channels,
            source_format.samples,
            output,
        ),
        output="stderr",
    )
    normalization = parse_normalization_type(log)
    if (written := wav_format(output)) != source_format:
        # The filter graph pads and trims to the sample: anything else is a bug.
        raise ValueError(f"the normalised narration is {written}, not {source_format}")
    after = measure(output)
    context.log.info(
        "narration normalised",
        normalization=normalization,
        integrated_lufs=after.integrated_lufs,
        true_peak_dbtp=after.true_peak_dbtp,
    )
    return {
        "narrationUri": context.store.publish(output, artifacts.NARRATION),
        "targetLufs": target,
        "inputLufs": before.integrated_lufs,
        "integratedLufs": after.integrated_lufs,
        "normalization": normalization,
    }


def measure(audio: Path) -> Loudness:
    return parse_measurement(run_tool(measure_command(audio), output="stderr"))


def wav_format(path: Path) -> WavFormat:
    """The WAV's rate, channels and length; ValueError for anything but the
    16-bit PCM the narration artifact is (a broken upstream stage, retried)."""
    try:
        with wave.open(str(path), "rb") as reader:
            width = reader.getsampwidth()
            found = WavFormat(reader.getframerate(), reader.getnchannels(), reader.getnframes())
    except (wave.Error, EOFError) as error:
        raise ValueError(f"the narration is not a PCM WAV file: {error}") from error
    if width != _SAMPLE_WIDTH_BYTES:
        raise ValueError(f"the narration has {8 * width}-bit samples, not 16-bit")
    return found
