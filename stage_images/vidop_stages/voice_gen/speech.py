"""espeak-ng for voice_gen: the installed voices, speaking a sentence, and
reading and writing 16-bit mono WAV.

Called by :mod:`vidop_stages.voice_gen.main`; the decisions (how fast, where)
are :mod:`vidop_stages.voice_gen.fitting`'s.
"""

from __future__ import annotations

import os
import sys
import tempfile
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

from vidop_stages.tools import run_tool
from vidop_stages.voice_gen.fitting import trim_silence
from vidop_stages.voice_gen.voices import InstalledVoices, parse_voice_list

ENGINE = "espeak-ng"
_SAMPLE_BYTES = 2


@dataclass(frozen=True)
class Speech:
    samples: array[int]
    """Signed 16-bit mono samples, silence around the words trimmed."""
    rate: int


def installed_voices() -> InstalledVoices:
    return parse_voice_list(
        run_tool([ENGINE, "--voices"], timeout=30),
        run_tool([ENGINE, "--voices=variant"], timeout=30),
    )


def speak(text: str, voice: str, words_per_minute: int, workdir: Path) -> Speech:
    path = _scratch_wav(workdir)
    # The text goes in on stdin, as UTF-8 (-b 1) whatever the locale, so
    # nothing in it can be taken for an option.
    run_tool(
        [ENGINE, "-v", voice, "-s", str(words_per_minute), "-b", "1", "--stdin", "-w", path],
        text_input=text,
        timeout=120,
    )
    return _trimmed(read_wav(path))


def read_wav(path: Path) -> Speech:
    with wave.open(str(path), "rb") as reader:
        if reader.getnchannels() != 1 or reader.getsampwidth() != _SAMPLE_BYTES:
            raise ValueError(f"{path.name} is not 16-bit mono")
        samples = array("h", reader.readframes(reader.getnframes()))
        rate = reader.getframerate()
    if sys.byteorder == "big":  # WAV is little-endian
        samples.byteswap()
    return Speech(samples, rate)


def write_wav(path: Path, samples: array[int], rate: int) -> None:
    data = array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(_SAMPLE_BYTES)
        writer.setframerate(rate)
        writer.writeframes(data.tobytes())


def _trimmed(speech: Speech) -> Speech:
    return Speech(trim_silence(speech.samples), speech.rate)


def _scratch_wav(workdir: Path) -> Path:
    handle, name = tempfile.mkstemp(suffix=".wav", dir=workdir)
    os.close(handle)
    return Path(name)
