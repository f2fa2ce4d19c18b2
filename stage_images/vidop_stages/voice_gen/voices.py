"""Which ``spec.voice`` values espeak-ng can speak.

voice_gen's ``main`` lists the installed voices (``espeak-ng --voices`` and
``--voices=variant``) and checks the job's voice here before any synthesis: an
unknown voice is bad input (exit 2), because espeak-ng would fail, or worse
fall back silently, on every retry. Pure.

A voice is a language code as espeak-ng lists it (``en-us``, also the codes in
its "Other Languages" column, such as ``en``), optionally followed by
``+variant`` (``en+f3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vidop_stages.errors import InvalidInput

_OTHER_LANGUAGE = re.compile(r"\(([^\s()]+)")
_VARIANT_FILE_PREFIX = "!v/"


@dataclass(frozen=True)
class InstalledVoices:
    languages: frozenset[str]
    variants: frozenset[str]


def parse_voice_list(voices: str, variants: str) -> InstalledVoices:
    """``voices`` and ``variants`` are what ``espeak-ng --voices`` and
    ``espeak-ng --voices=variant`` print."""
    languages: set[str] = set()
    for columns in _rows(voices):
        languages.add(columns[1].lower())
        # Columns: Pty, Language, Age/Gender, VoiceName, File, Other Languages.
        languages.update(code.lower() for code in _OTHER_LANGUAGE.findall(" ".join(columns[5:])))
    variant_names = {
        columns[4].removeprefix(_VARIANT_FILE_PREFIX).lower()
        for columns in _rows(variants)
        if columns[4].startswith(_VARIANT_FILE_PREFIX)
    }
    return InstalledVoices(frozenset(languages), frozenset(variant_names))


def check_voice(voice: str, installed: InstalledVoices) -> str:
    """``voice`` if espeak-ng has it; InvalidInput naming some that it has."""
    language, _, variant = voice.lower().partition("+")
    if language not in installed.languages:
        examples = ", ".join(
            sorted(code for code in installed.languages if code.startswith("en"))[:5]
        )
        raise InvalidInput(f"voice {voice!r} is not an espeak-ng voice (there are {examples}, …)")
    if variant and variant not in installed.variants:
        raise InvalidInput(f"voice {voice!r}: espeak-ng has no variant {variant!r}")
    return voice


def _rows(listing: str) -> list[list[str]]:
    """The table's rows after its header, split into columns."""
    return [line.split() for line in listing.splitlines()[1:] if len(line.split()) >= 5]
