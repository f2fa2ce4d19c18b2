"""Fitting each scene's narration into its window of the planned timeline.

voice_gen runs beside video_gen, so it cannot wait to see the picture: it
trusts the scene windows script_gen planned (:mod:`vidop_stages.scenescript`).
For each scene, :mod:`vidop_stages.voice_gen.main`

1. speaks every sentence at espeak-ng's normal rate and trims the silence
   around it (:func:`trim_silence`), so its length is what is really heard;
2. asks :func:`speedup_needed` whether the sentences, with the shortest
   pauses, fit the window; if not, speaks them again faster
   (:func:`faster_rate`), first up to :data:`NATURAL_MAX_RATE`, then, if that
   is still too slow, as fast as the window needs: above that rate espeak-ng
   time-compresses its own output (its built-in "sonic" speed-up, what
   ffmpeg's ``atempo`` would do, without needing ffmpeg in this image);
3. places the sentences (:func:`place_sentences`): a short lead-in, pauses
   between sentences, silence after; pauses shrink before anything is cut;
4. mixes all scenes into one track of exactly ``durationSeconds`` (:func:`mix`)
   and derives a subtitle cue per sentence from where it was placed.

Lengths are in samples of the narration's rate. Pure.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LEAD_SECONDS = 0.25
GAP_SECONDS = 0.35
MIN_PAUSE_SECONDS = 0.05
SILENCE_THRESHOLD = 400
"""Peak amplitude (of 32767) below which a 16-bit sample counts as silence."""
NORMAL_RATE = 175
"""espeak-ng's default speaking rate, words per minute."""
NATURAL_MAX_RATE = 450
"""The fastest espeak-ng speaks by itself; above it, it time-compresses."""
MAX_RATE = 3000
"""Beyond this nothing is intelligible; what still overruns is cut."""
SPEEDUP_MARGIN = 1.03
"""A speed-up a little above the measured need, since re-spoken sentences
do not shrink exactly in proportion."""


@dataclass(frozen=True)
class Placement:
    offset: int
    """Samples from the start of the scene's window."""
    length: int
    """Samples of the sentence that are kept (all of them unless the window is
    too short even after every speed-up)."""


def trim_silence(samples: array[int], threshold: int = SILENCE_THRESHOLD) -> array[int]:
    """``samples`` without the quiet before the first and after the last
    audible sample; all of it if nothing is audible."""
    first = 0
    while first < len(samples) and abs(samples[first]) < threshold:
        first += 1
    last = len(samples)
    while last > first and abs(samples[last - 1]) < threshold:
        last -= 1
    return samples[first:last] if first < last else samples


def speedup_needed(window: int, lengths: Sequence[int], rate: int) -> float:
    """How many times faster the sentences must be spoken to fit ``window``
    with the shortest pauses; 1 or less means they fit as they are."""
    if not lengths:
        return 0.0
    room = window - round(MIN_PAUSE_SECONDS * rate) * len(lengths)
    return sum(lengths) / max(room, 1)


def faster_rate(current_rate: int, speedup: float, cap: int) -> int:
    """espeak-ng's ``-s`` for sentences spoken at ``current_rate`` that must
    get ``speedup`` times faster, at most ``cap``."""
    return min(cap, math.ceil(current_rate * speedup * SPEEDUP_MARGIN))


def place_sentences(window: int, lengths: Sequence[int], rate: int) -> list[Placement]:
    """Where each sentence goes in its scene's window. The lead-in and pauses
    are scaled down together when the room is short; only when speech alone
    is longer than the window (after every speed-up, so at most a rounding's
    worth) is the end cut."""
    if not lengths:
        return []
    lead = round(LEAD_SECONDS * rate)
    gap = round(GAP_SECONDS * rate)
    wanted = lead + gap * (len(lengths) - 1)
    slack = max(window - sum(lengths), 0)
    scale = min(1.0, slack / wanted) if wanted else 1.0
    lead, gap = math.floor(lead * scale), math.floor(gap * scale)
    placements = []
    position = lead
    for length in lengths:
        kept = max(0, min(length, window - position))
        placements.append(Placement(position, kept))
        position = min(position + kept + gap, window)
    return placements


def mix(total: int, pieces: Iterable[tuple[int, Sequence[int]]]) -> array[int]:
    """A silent track of ``total`` samples with each piece's samples laid in
    at its offset; pieces never overlap (:func:`place_sentences`)."""
    track = array("h", bytes(2 * total))
    for offset, samples in pieces:
        if offset < 0 or offset + len(samples) > total:
            # A slice assignment past the end would silently grow the track.
            raise ValueError(f"{len(samples)} samples at {offset} overrun a {total}-sample track")
        track[offset : offset + len(samples)] = array("h", samples)
    return track
