"""The ffmpeg commands the loudness stage runs, and how to read their reports. Pure.

Called by :mod:`vidop_stages.loudness.main`, in two passes over the narration
and one over the result:

1. :func:`measure_command` meters it with the ``ebur128`` filter (ITU-R
   BS.1770 / EBU R128: integrated loudness, its gate, loudness range, true
   peak), read back by :func:`parse_measurement`;
2. :func:`normalise_command` runs ``loudnorm`` with those figures as its
   ``measured_*`` options, so it can apply one linear gain (the whole
   narration moves by ``target - measured``, its dynamics untouched) where
   that keeps the true peak under the ceiling, and falls back to its dynamic
   mode (a gain that follows the speech, with a limiter) where it does not;
   :func:`parse_normalization_type` reads which one it chose;
3. :func:`measure_command` again, on the result: the figure the stage reports.

Why ``ebur128`` meters rather than a first ``loudnorm`` pass: ``loudnorm``
measures at the 192 kHz it resamples to in its dynamic mode, and on espeak-ng's
22.05 kHz speech that reads about 0.4 LU quieter than ``ebur128``, which meters
at 48 kHz as the standard's filters are defined; the gain computed from it then
misses the target by as much. With one meter for before, after and the gain,
the result lands on the target.

The result keeps what compositing's mux and the narration artifact promise
(:mod:`vidop_stages.artifacts`): a 16-bit PCM WAV at the narration's own
sample rate and channels, exactly as many samples long (``loudnorm``'s dynamic
mode works at 192 kHz, and resampling back may be a sample off).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from vidop_stages.tools import FFMPEG_REPORTING

SILENCE_LUFS = -70.0
"""BS.1770's absolute gate: ``ebur128`` reports this when no block is louder,
i.e. the narration is silent and there is nothing to normalise."""

_SUMMARY = "Summary:"
_INTEGRATED = re.compile(r"Integrated loudness:\s+I:\s+(\S+) LUFS\s+Threshold:\s+(\S+) LUFS")
_RANGE = re.compile(r"Loudness range:\s+LRA:\s+(\S+) LU\b")
_TRUE_PEAK = re.compile(r"True peak:\s+Peak:\s+(\S+) dBFS")
_NORMALIZATION_TYPES = ("linear", "dynamic")


@dataclass(frozen=True)
class Loudness:
    """What ``ebur128`` measured over a whole file."""

    integrated_lufs: float
    threshold_lufs: float
    """The relative gate (integrated minus 10 LU, over the blocks above -70)."""
    range_lu: float
    true_peak_dbtp: float
    """``-inf`` for digital silence."""

    @property
    def silent(self) -> bool:
        return self.integrated_lufs <= SILENCE_LUFS


def measure_command(audio: Path) -> list[str]:
    """Decode ``audio`` to nowhere through ``ebur128``; its summary goes to stderr."""
    return [
        *FFMPEG_REPORTING,
        "-i", str(audio),
        "-map", "0:a:0",
        # peak=true: the 4x-oversampled true peak loudnorm's ceiling is about.
        # framelog=verbose keeps the ten lines a second off info level, so the
        # log holds the summary and little else.
        "-filter:a", "ebur128=peak=true:framelog=verbose",
        "-f", "null", "-",
    ]  # fmt: skip


def parse_measurement(log: str) -> Loudness:
    """``log`` is :func:`measure_command`'s stderr. ValueError when it holds
    no summary: ffmpeg changed its format, which no retry fixes but a
    person must see."""
    _, found, summary = log.rpartition(_SUMMARY)
    integrated, loudness_range, true_peak = (
        pattern.search(summary) for pattern in (_INTEGRATED, _RANGE, _TRUE_PEAK)
    )
    if not (found and integrated and loudness_range and true_peak):
        raise ValueError(f"no ebur128 summary in ffmpeg's log: {log[-300:]!r}")
    return Loudness(
        integrated_lufs=float(integrated[1]),
        threshold_lufs=float(integrated[2]),
        range_lu=float(loudness_range[1]),
        true_peak_dbtp=float(true_peak[1]),
    )


def normalise_command(
    narration: Path,
    measured: Loudness,
    target_lufs: float,
    true_peak_dbtp: float,
    range_lu: float,
    sample_rate: int,
    channels: int,
    samples: int,
    output: Path,
) -> list[str]:
    """``loudnorm`` told what :func:`measure_command` found, then back to the
    narration's rate, padded and trimmed to its ``samples``."""
    if measured.silent or not math.isfinite(measured.true_peak_dbtp):
        raise ValueError("silence has no loudness to normalise")
    loudnorm = ":".join(
        [
            f"loudnorm=I={target_lufs:.2f}",
            f"TP={true_peak_dbtp:.2f}",
            f"LRA={range_lu:.2f}",
            f"measured_I={measured.integrated_lufs:.2f}",
            f"measured_TP={measured.true_peak_dbtp:.2f}",
            f"measured_LRA={measured.range_lu:.2f}",
            f"measured_thresh={measured.threshold_lufs:.2f}",
            # Linear where the measurements allow it; loudnorm decides.
            "linear=true",
            # Only to learn which mode it chose (parse_normalization_type).
            "print_format=json",
        ]
    )
    audio_filter = ",".join(
        [
            loudnorm,
            f"aresample={sample_rate}",
            f"apad=whole_len={samples}",
            f"atrim=end_sample={samples}",
        ]
    )
    return [
        *FFMPEG_REPORTING,
        "-i", str(narration),
        "-map", "0:a:0",
        "-filter:a", audio_filter,
        "-c:a", "pcm_s16le",
        "-ar", str(sample_rate),
        "-ac", str(channels),
        # A bare RIFF header, as voice_gen writes: no LIST chunk naming ffmpeg.
        "-map_metadata", "-1",
        "-fflags", "+bitexact",
        str(output),
    ]  # fmt: skip


def parse_normalization_type(log: str) -> str:
    """``linear`` or ``dynamic``, from the JSON ``loudnorm`` logs at the end of
    :func:`normalise_command`'s stderr; ValueError when it is not there."""
    start, end = log.rfind("{"), log.rfind("}")
    try:
        report = json.loads(log[start : end + 1]) if 0 <= start < end else None
    except ValueError:
        report = None
    kind = report.get("normalization_type") if isinstance(report, dict) else None
    if kind not in _NORMALIZATION_TYPES:
        raise ValueError(f"no loudnorm report in ffmpeg's log: {log[-300:]!r}")
    return str(kind)
