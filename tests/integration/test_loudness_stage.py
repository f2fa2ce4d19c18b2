"""The optional loudness stage in a custom pipeline, run for real: script_gen,
then voice_gen and video_gen side by side, then loudness over voice_gen's
narration, then compositing with ``NARRATION_STAGE=loudness`` (compositing
depends on loudness and video_gen). Same processes, S3 server, espeak-ng and
ffmpeg as tests/integration/test_stages.py, whose helpers it uses.

The target, -30 LUFS, is far from where espeak-ng speaks (about -21), so a
stage that published voice_gen's narration untouched, or a compositing that
still read voice_gen's, fails these tests. The loudness is measured here with
ffmpeg's ``ebur128`` (:func:`integrated_lufs`), not with the stage's code.
"""

from __future__ import annotations

import math
import secrets
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_stages import PARAMS, Job, StageRun, run_until_compositing
from tests.support import integrated_lufs
from vid_operator import contract
from vidop_devcluster.s3 import S3Server

TARGET_LUFS = -30.0
TOLERANCE_LU = 1.5
"""What the brief of the stage asks: ±1.5 LU of the target."""
LOUDNESS_STAGE = "loudness"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def loudness_pipeline(
    s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Job, dict[str, StageRun]]]:
    bucket = f"loudness-pipeline-{secrets.token_hex(3)}"
    s3.create_bucket(bucket)
    job = Job(s3, bucket, tmp_path_factory.mktemp("loudness-pipeline"), dict(PARAMS))
    runs = run_until_compositing(job)
    runs[LOUDNESS_STAGE] = job.run(LOUDNESS_STAGE, LOUDNESS_TARGET_LUFS=str(TARGET_LUFS))
    assert runs[LOUDNESS_STAGE].returncode == 0, runs[LOUDNESS_STAGE].stderr
    runs["compositing"] = job.run("compositing", NARRATION_STAGE=LOUDNESS_STAGE)
    assert runs["compositing"].returncode == 0, runs["compositing"].stderr
    print(f"\nloudness summary: {runs[LOUDNESS_STAGE].summary}")
    yield job, runs


def test_only_the_loudness_stage_writes_under_its_name(
    loudness_pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, _ = loudness_pipeline

    assert sorted(job.keys()) == [
        job.key("compositing", "thumbnail.jpg"),
        job.key("compositing", "video.mp4"),
        job.key(LOUDNESS_STAGE, "narration.wav"),
        job.key("script_gen", "script.json"),
        job.key("video_gen", "video.mp4"),
        job.key("voice_gen", "narration.wav"),
        job.key("voice_gen", "subtitles.srt"),
    ]


def test_loudness_brings_the_narration_to_the_target(
    loudness_pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, runs = loudness_pipeline
    summary = runs[LOUDNESS_STAGE].summary
    before = integrated_lufs(job.download("voice_gen", "narration.wav"))
    after = integrated_lufs(job.download(LOUDNESS_STAGE, "narration.wav"))
    print(f"\nmeasured here: voice_gen {before} LUFS, loudness {after} LUFS")

    assert summary["narrationUri"] == f"{job.prefix}{LOUDNESS_STAGE}/narration.wav"
    assert summary["targetLufs"] == TARGET_LUFS
    # Far enough from the target that reaching it means something was done.
    assert abs(summary["inputLufs"] - TARGET_LUFS) > 2
    assert abs(summary["integratedLufs"] - TARGET_LUFS) <= TOLERANCE_LU
    # Turning speech down never nears the true-peak ceiling: one gain, no limiter.
    assert summary["normalization"] == "linear"
    # The stage's figures are the ones anyone measures.
    assert summary["inputLufs"] == pytest.approx(before, abs=0.2)
    assert summary["integratedLufs"] == pytest.approx(after, abs=0.2)


def test_the_normalised_narration_is_the_same_speech_in_the_same_format(
    loudness_pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    """Same rate, channels, sample size and number of samples as voice_gen's,
    so it still lines up with the subtitles and the video; and the same
    waveform, only quieter (correlation at lag 0, and the level ratio)."""
    job, _ = loudness_pipeline
    original, original_rate = _wav(job.download("voice_gen", "narration.wav"))
    normalised, normalised_rate = _wav(job.download(LOUDNESS_STAGE, "narration.wav"))

    assert normalised_rate == original_rate
    assert len(normalised) == len(original)
    # A shift of one sample already drops it to about 0.9.
    assert _correlation(original, normalised) > 0.99
    gain_db = 10 * math.log10(_energy(normalised) / _energy(original))
    summary = loudness_pipeline[1][LOUDNESS_STAGE].summary
    assert gain_db == pytest.approx(summary["integratedLufs"] - summary["inputLufs"], abs=0.3)


def test_compositing_mixes_in_the_normalised_narration(
    loudness_pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, runs = loudness_pipeline
    final = integrated_lufs(job.download("compositing", "video.mp4"))
    print(f"\nmeasured here: final MP4 {final} LUFS")

    assert abs(final - TARGET_LUFS) <= TOLERANCE_LU
    # Not voice_gen's narration: that one is more than 2 LU louder.
    assert abs(final - runs[LOUDNESS_STAGE].summary["inputLufs"]) > 2
    assert runs["compositing"].summary["videoUri"] == f"{job.prefix}compositing/video.mp4"


def test_the_default_target_is_minus_16_lufs(
    loudness_pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    """Louder than espeak-ng speaks, so up, where loudnorm may have to limit
    the peaks. Run under another stage name, so the pipeline's files stay."""
    job, _ = loudness_pipeline
    stage = "loudness-default"

    run = job.run(LOUDNESS_STAGE, **{contract.ENV_STAGE: stage})

    assert run.returncode == 0, run.stderr
    assert run.summary["targetLufs"] == -16.0
    assert run.summary["narrationUri"] == f"{job.prefix}{stage}/narration.wav"
    measured = integrated_lufs(job.download(stage, "narration.wav"))
    print(f"\ndefault target: {run.summary}, measured here {measured} LUFS")
    assert abs(measured - -16.0) <= TOLERANCE_LU
    assert run.summary["integratedLufs"] == pytest.approx(measured, abs=0.2)
    original, _ = _wav(job.download("voice_gen", "narration.wav"))
    normalised, _ = _wav(job.download(stage, "narration.wav"))
    assert len(normalised) == len(original)
    # Dynamic mode's gain follows the speech, but the speech stays in place.
    assert _correlation(original, normalised) > 0.95


@pytest.mark.parametrize("target", ["loud", "-3", "-80", "nan", "-inf", "-16 LUFS", "-1e1"])
def test_a_bad_loudness_target_is_invalid_input(
    s3: S3Server, s3_bucket: str, tmp_path: Path, target: str
) -> None:
    job = Job(s3, s3_bucket, tmp_path, dict(PARAMS))

    run = job.run(LOUDNESS_STAGE, LOUDNESS_TARGET_LUFS=target)

    assert run.returncode == contract.EXIT_INVALID_INPUT, run.stderr
    assert run.message.startswith(f"invalid input: LOUDNESS_TARGET_LUFS {target!r} is ")
    assert job.keys() == {}


def test_a_bad_narration_stage_is_invalid_input(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    job = Job(s3, s3_bucket, tmp_path, dict(PARAMS))

    run = job.run("compositing", NARRATION_STAGE="../voice_gen")

    assert run.returncode == contract.EXIT_INVALID_INPUT, run.stderr
    assert run.message.startswith("invalid input: NARRATION_STAGE '../voice_gen' is not")


def test_a_narration_stage_that_wrote_nothing_is_a_retryable_failure(
    loudness_pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    """A pipeline that names a stage compositing does not depend on: the
    Job fails retryably, naming the object it could not read."""
    job, _ = loudness_pipeline

    run = job.run("compositing", NARRATION_STAGE="declick")

    assert run.returncode not in (contract.EXIT_OK, contract.EXIT_INVALID_INPUT)
    assert f"cannot read {job.prefix}declick/narration.wav" in run.message


def _wav(path: Path) -> tuple[array[int], int]:
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        return array("h", reader.readframes(reader.getnframes())), reader.getframerate()


def _energy(samples: array[int]) -> float:
    return float(sum(sample * sample for sample in samples))


def _correlation(a: array[int], b: array[int]) -> float:
    """Normalised cross-correlation at lag 0: 1 for the same waveform at
    any level, near 0 for unrelated or shifted speech."""
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(_energy(a) * _energy(b))
