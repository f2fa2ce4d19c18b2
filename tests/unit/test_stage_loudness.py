"""The loudness stage's pure parts: its target from the environment, the
ffmpeg commands it runs and how their reports are read; and compositing's
choice of narration (``NARRATION_STAGE``)."""

import itertools
import math
from pathlib import Path

import pytest

from vidop_stages import artifacts
from vidop_stages.compositing.sources import narration_artifact
from vidop_stages.errors import InvalidInput
from vidop_stages.loudness.commands import (
    Loudness,
    measure_command,
    normalise_command,
    parse_measurement,
    parse_normalization_type,
)
from vidop_stages.loudness.target import DEFAULT_TARGET_LUFS, parse_target, target_lufs

# What ffmpeg 5.1's ebur128 logs at the end of a run (peak=true), after the
# stream listing and the last progress line.
EBUR128_LOG = """\
Output #0, null, to 'pipe:':
  Stream #0:0: Audio: pcm_f32le, 48000 Hz, mono, flt, 1536 kb/s
size=N/A time=00:00:06.00 bitrate=N/A speed= 412x
video:0kB audio:1125kB subtitle:0kB other streams:0kB global headers:0kB muxing overhead: unknown
[Parsed_ebur128_0 @ 0x55bd51dc39c0] Summary:

  Integrated loudness:
    I:         -20.9 LUFS
    Threshold: -31.2 LUFS

  Loudness range:
    LRA:         1.0 LU
    Threshold: -41.1 LUFS
    LRA low:   -21.8 LUFS
    LRA high:  -20.8 LUFS

  True peak:
    Peak:       -2.6 dBFS
"""
SILENCE_LOG = """\
[Parsed_ebur128_0 @ 0x559dd3fe9880] Summary:

  Integrated loudness:
    I:         -70.0 LUFS
    Threshold:   0.0 LUFS

  Loudness range:
    LRA:         0.0 LU
    Threshold:   0.0 LUFS
    LRA low:     0.0 LUFS
    LRA high:    0.0 LUFS

  True peak:
    Peak:       -inf dBFS
"""
LOUDNORM_LOG = """\
[Parsed_loudnorm_0 @ 0x55ead3523cc0]
{
\t"input_i" : "-20.88",
\t"input_tp" : "-2.61",
\t"input_lra" : "0.70",
\t"input_thresh" : "-31.20",
\t"output_i" : "-29.62",
\t"output_tp" : "-11.34",
\t"output_lra" : "0.70",
\t"output_thresh" : "-39.94",
\t"normalization_type" : "linear",
\t"target_offset" : "-0.38"
}
"""
SPEECH = Loudness(-20.9, -31.2, 1.0, -2.6)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("-30", -30.0), ("-16.5", -16.5), ("-70", -70.0), ("-5.0", -5.0), (" -23\n", -23.0)],
)
def test_a_target_is_a_plain_decimal_in_loudnorms_range(raw: str, expected: float) -> None:
    assert parse_target(raw) == expected


def test_an_unset_or_empty_target_is_the_default() -> None:
    assert target_lufs({}) == target_lufs({"LOUDNESS_TARGET_LUFS": ""}) == DEFAULT_TARGET_LUFS
    assert DEFAULT_TARGET_LUFS == -16.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("-4.9", "outside -70..-5 LUFS"),
        ("0", "outside -70..-5 LUFS"),
        ("-70.01", "outside -70..-5 LUFS"),
        ("16", "outside -70..-5 LUFS"),
        ("-" + "9" * 400, "outside -70..-5 LUFS"),
        ("nan", "is not a number of LUFS"),
        ("-inf", "is not a number of LUFS"),
        ("-1e1", "is not a number of LUFS"),
        ("-1_6", "is not a number of LUFS"),
        ("-16 LUFS", "is not a number of LUFS"),
        ("-16,5", "is not a number of LUFS"),
        ("-", "is not a number of LUFS"),
        (" ", "is not a number of LUFS"),
    ],
)
def test_any_other_target_is_invalid_input(raw: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=f"^LOUDNESS_TARGET_LUFS .* {reason}"):
        target_lufs({"LOUDNESS_TARGET_LUFS": raw})


def test_the_measurement_is_read_from_ebur128s_summary() -> None:
    assert parse_measurement(EBUR128_LOG) == SPEECH
    assert not SPEECH.silent


def test_silence_measures_at_the_absolute_gate() -> None:
    silence = parse_measurement(SILENCE_LOG)

    assert silence.silent
    assert silence.true_peak_dbtp == -math.inf
    with pytest.raises(ValueError, match="silence"):
        normalise_command(Path("in.wav"), silence, -16, -1.5, 11, 22050, 1, 100, Path("out.wav"))


def test_only_the_last_summary_counts_and_a_log_without_one_is_an_error() -> None:
    louder = EBUR128_LOG.replace("-20.9 LUFS", "-12.0 LUFS")

    assert parse_measurement(EBUR128_LOG + louder).integrated_lufs == -12.0
    with pytest.raises(ValueError, match="no ebur128 summary"):
        parse_measurement(EBUR128_LOG.split("Summary:")[0])
    with pytest.raises(ValueError, match="no ebur128 summary"):
        parse_measurement(EBUR128_LOG.replace("True peak:", "Sample peak:"))


def test_the_measuring_run_logs_ebur128s_summary_and_writes_nothing() -> None:
    command = measure_command(Path("narration.wav"))
    options = dict(itertools.pairwise(command))

    # Info level, where ebur128's summary is logged; no progress lines.
    assert options["-loglevel"] == "info"
    assert "-nostats" in command
    assert options["-i"] == "narration.wav"
    assert options["-filter:a"] == "ebur128=peak=true:framelog=verbose"
    assert command[-3:] == ["-f", "null", "-"]


def test_normalising_hands_loudnorm_the_measurement_and_keeps_the_format() -> None:
    command = normalise_command(
        Path("in.wav"), SPEECH, -30, -1.5, 11, 22050, 1, 132300, Path("out.wav")
    )
    options = dict(itertools.pairwise(command))
    loudnorm, *rest = options["-filter:a"].split(",")

    assert loudnorm.split(":") == [
        "loudnorm=I=-30.00",
        "TP=-1.50",
        "LRA=11.00",
        "measured_I=-20.90",
        "measured_TP=-2.60",
        "measured_LRA=1.00",
        "measured_thresh=-31.20",
        "linear=true",
        "print_format=json",
    ]
    # Back from loudnorm's 192 kHz to the narration's rate, to the sample.
    assert rest == ["aresample=22050", "apad=whole_len=132300", "atrim=end_sample=132300"]
    assert (options["-c:a"], options["-ar"], options["-ac"]) == ("pcm_s16le", "22050", "1")
    assert options["-loglevel"] == "info"
    assert command[-1] == "out.wav"


def test_the_mode_loudnorm_chose_is_read_from_its_json() -> None:
    assert parse_normalization_type("other lines\n" + LOUDNORM_LOG) == "linear"
    dynamic = LOUDNORM_LOG.replace('"linear"', '"dynamic"')
    assert parse_normalization_type(dynamic) == "dynamic"
    for broken in ("", "no json here", LOUDNORM_LOG.replace('"linear"', '"other"'), "{ nope }"):
        with pytest.raises(ValueError, match="no loudnorm report"):
            parse_normalization_type(broken)


def test_compositing_takes_voice_gens_narration_by_default() -> None:
    assert narration_artifact({}) == artifacts.NARRATION
    assert narration_artifact({"NARRATION_STAGE": ""}) == artifacts.NARRATION


@pytest.mark.parametrize("stage", ["loudness", "voice_gen", "de-click2", "a" * 24])
def test_compositing_takes_the_narration_from_the_stage_named(stage: str) -> None:
    narration = narration_artifact({"NARRATION_STAGE": stage})

    assert (narration.stage, narration.name) == (stage, artifacts.NARRATION.name)
    assert narration.content_type == artifacts.NARRATION.content_type


@pytest.mark.parametrize(
    "stage", ["Loudness", "2pass", "_x", "a" * 25, "../voice_gen", "a/b", "loud ness", "x\n"]
)
def test_a_narration_stage_that_is_no_stage_name_is_invalid_input(stage: str) -> None:
    with pytest.raises(InvalidInput, match=r"^NARRATION_STAGE .* is not a stage name"):
        narration_artifact({"NARRATION_STAGE": stage})
