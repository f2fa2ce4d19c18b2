"""What the stages need to know about writing systems beyond Latin: which
characters end a sentence, which are written without spaces, how wide a
character is on screen, and which script a character belongs to.

script_gen's planner splits and ends sentences with it, voice_gen's subtitles
wrap lines with it and video_gen's fonts pick a typeface by it. Pure, and
only the standard library (``unicodedata``): cheap rules that cover Chinese,
Japanese, Korean, Arabic, Persian, Urdu, Hebrew and the Indic scripts well
enough for titles and subtitles, not a full Unicode line-breaking algorithm.
"""

from __future__ import annotations

import re
import unicodedata

# The confusable look-alikes below are the point: they are the marks to know.
SENTENCE_ENDS = ".!?…。！？｡؟۔।॥"  # noqa: RUF001
"""Characters that end a sentence: Latin, full-width (CJK), Arabic (``؟``),
Urdu (U+06D4) and Devanagari (``।``, ``॥``)."""
UNAMBIGUOUS_ENDS = "。！？｡؟۔।॥"  # noqa: RUF001
"""The sentence ends that are never an abbreviation's or a number's dot, and
need no space after them."""
CLAUSE_MARKS = ",;:、，；：،؛"  # noqa: RUF001
"""Marks that join clauses and would dangle at the end of a cut sentence."""
CLOSING = "\"'»)]}」』）〕】》〉”’"  # noqa: RUF001
"""Closing quotes and brackets, which stay with the mark before them."""
FULL_STOPS = ".。．।۔"  # noqa: RUF001
"""Full stops, which a title leaves out (a question or exclamation mark stays)."""
_NO_LINE_START = (
    SENTENCE_ENDS + CLAUSE_MARKS + CLOSING + "ー々〜ぁぃぅぇぉっゃゅょァィゥェォッャュョ"
)
"""What a wrapped line must not start with (Japanese kinsoku, roughly)."""

# Scripts written without spaces between words: Han, kana, and the CJK
# punctuation and full-width forms that go with them. Hangul uses spaces but
# is as wide as Han, which :func:`display_width` counts separately.
UNSPACED_RANGES = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f"
)
"""For a regular expression's character class."""
_UNSPACED = re.compile(f"[{UNSPACED_RANGES}]")
# A sentence: anything up to its end marks and the closing quotes after them
# (or the end of the text).
_SENTENCE = re.compile(
    f"[^{re.escape(UNAMBIGUOUS_ENDS)}]*"
    f"(?:[{re.escape(UNAMBIGUOUS_ENDS)}]+[{re.escape(CLOSING)}]*|$)"
)
_FULL_STOP_BY_SCRIPT = {"cjk": "。", "devanagari": "।"}


def is_unspaced(character: str) -> bool:
    """True for characters of scripts written without spaces (Chinese,
    Japanese), where a line may break between any two characters."""
    return bool(_UNSPACED.match(character))


def display_width(text: str) -> int:
    """Columns ``text`` takes in a subtitle line: two for East Asian wide and
    full-width characters, none for combining marks, one otherwise."""
    width = 0
    for character in text:
        if unicodedata.combining(character):
            continue
        width += 2 if unicodedata.east_asian_width(character) in "WF" else 1
    return width


def script_of(character: str) -> str | None:
    """The script a letter, digit or mark belongs to, lower-cased (``latin``,
    ``arabic``, ``cjk`` for Han, kana and Hangul, ``devanagari``, ...); None
    for spaces, punctuation and symbols, which any script's font may draw."""
    category = unicodedata.category(character)
    if category[0] not in "LMN":
        return "cjk" if is_unspaced(character) else None
    if (
        is_unspaced(character)
        or "\uac00" <= character <= "\ud7a3"
        or ("\u1100" <= character <= "\u11ff")
    ):
        return "cjk"
    if category == "Nd" and character.isascii():
        return None  # ASCII digits go with the text around them
    script = unicodedata.name(character, "").split(" ", 1)[0].lower()
    # Combining accents (U+0300...) belong to whatever letter they sit on.
    return None if script in ("", "combining") else script


def is_right_to_left(character: str) -> bool:
    return unicodedata.bidirectional(character) in ("R", "AL")


def split_at_sentence_ends(text: str) -> list[str]:
    """``text`` cut after every run of :data:`UNAMBIGUOUS_ENDS` (with the
    closing quotes that follow them), whether or not a space follows, as
    Chinese and Japanese write it; the pieces keep their marks. Latin full
    stops are left to a rule-based splitter (abbreviations, decimals)."""
    return [piece for piece in _SENTENCE.findall(text) if piece.strip()]


def ends_sentence(text: str) -> bool:
    return bool(text) and text.rstrip(CLOSING)[-1:] in SENTENCE_ENDS


def full_stop_for(text: str) -> str:
    """The full stop that fits ``text``'s last letter: ``。`` after Chinese
    or Japanese, ``।`` after Hindi, ``.`` otherwise (Arabic too)."""
    last_script = next(
        (script for script in map(script_of, reversed(text)) if script is not None), None
    )
    return _FULL_STOP_BY_SCRIPT.get(last_script or "", ".")


def shorten(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` (:func:`display_width`), at a
    space where it has one, with an ellipsis where it was cut."""
    if display_width(text) <= columns:
        return text
    kept = ""
    for character in text:
        if display_width(kept + character) > columns - 1:
            break
        kept += character
    if " " in kept:
        kept = kept.rsplit(" ", 1)[0]
    return kept.rstrip(CLAUSE_MARKS + " ") + "…"


def can_start_line(character: str) -> bool:
    return character not in _NO_LINE_START
