"""Fonts for titles in any script: Noto, looked up by script with a fallback
chain, and a title drawn run by run, each in a font that has its glyphs.

:mod:`vidop_stages.video_gen.keyframes` draws each scene's caption with
:func:`draw_title`. The fonts are Debian's Noto packages, at fixed paths
(``fonts-noto-core``: Latin, Greek, Cyrillic, Arabic, Hebrew, Devanagari,
Thai and most other scripts, one file per script; ``fonts-noto-cjk``:
Chinese, Japanese, Korean), installed in video_gen's image and by
``hack/system-deps.sh``; no fontconfig needed. For each run of text in one
script the chain is: the Noto file named after the script (``NotoSansArabic``
for ``arabic``, read from the characters' Unicode names), Noto Sans CJK for
Han, kana and Hangul, Noto Sans (Latin, Greek, Cyrillic), and last Pillow's
built-in font; the first font in the chain whose glyphs for the run are not
all its missing-glyph box (``.notdef``) draws the run.

Arabic and Hebrew need shaping (joined letter forms) and right-to-left
order: with Pillow's libraqm layout (``PIL.features.check("raqm")``, which
needs the system's FriBiDi) a run is shaped and ordered by raqm, and the runs
of a right-to-left title are laid out from the right. Without raqm, a
right-to-left run's characters are reversed, so at least their order reads
right (unjoined). Pure apart from reading the font files, which are cached.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

from vidop_stages.writing import is_right_to_left, script_of

FONT_DIRECTORIES = (
    Path("/usr/share/fonts/truetype/noto"),
    Path("/usr/share/fonts/opentype/noto"),
)
WEIGHT = "Bold"
"""Titles are drawn bold, with a regular file as the fallback."""
_CJK_FILE = "NotoSansCJK"
# Index of each region's face in Noto Sans CJK's collection (.ttc): one Han
# character may look different by region, so the text's kana or Hangul picks.
_CJK_FACES = {"sc": 2, "jp": 0, "kr": 1}
_NOTO_SANS_SCRIPTS = ("latin", "greek", "cyrillic")
_MIN_SIZE = 10
# A title's outline, for contrast over any picture.
_TEXT_FILL = (255, 255, 255)
_STROKE_FILL = (0, 0, 0)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Run:
    """Consecutive characters of one script, drawn with one font."""

    text: str
    script: str | None
    right_to_left: bool


def has_raqm() -> bool:
    return bool(features.check("raqm"))


def split_runs(text: str) -> list[Run]:
    """``text`` in runs of one script; spaces, digits and punctuation join the
    run before them (the first run when the text starts with them)."""
    runs: list[Run] = []
    for character in text:
        script = script_of(character)
        if runs and (script is None or script == runs[-1].script or runs[-1].script is None):
            last = runs[-1]
            runs[-1] = Run(
                last.text + character,
                last.script if script is None else script,
                last.right_to_left or is_right_to_left(character),
            )
        else:
            runs.append(Run(character, script, is_right_to_left(character)))
    return runs


def font_chain(script: str | None, text: str) -> list[Path | tuple[Path, int]]:
    """The font files to try for a run of ``script``, best first, those that
    exist; a collection's face comes with its index."""
    candidates: list[Path | tuple[Path, int]] = []
    for directory in FONT_DIRECTORIES:
        for weight in (WEIGHT, "Regular"):
            if script == "cjk":
                face = _CJK_FACES[_cjk_region(text)]
                candidates.append((directory / f"{_CJK_FILE}-{weight}.ttc", face))
            elif script and script not in _NOTO_SANS_SCRIPTS:
                name = "".join(part.capitalize() for part in script.split("_"))
                candidates.append(directory / f"NotoSans{name}-{weight}.ttf")
            candidates.append(directory / f"NotoSans-{weight}.ttf")
    return [c for c in dict.fromkeys(candidates) if (c[0] if isinstance(c, tuple) else c).exists()]


def font_for(run: Run, size: int, text: str) -> Font:
    """The first font of the run's chain that draws its letters, not boxes;
    Pillow's built-in font when none does (or no Noto file is installed)."""
    for candidate in font_chain(run.script, text):
        path, index = candidate if isinstance(candidate, tuple) else (candidate, 0)
        font = _load(path, index, size)
        if draws_glyphs(font, run.text):
            return font
    return ImageFont.load_default(size=size)


def draws_glyphs(font: ImageFont.FreeTypeFont, text: str) -> bool:
    """True unless every letter of ``text`` comes out as ``font``'s missing
    glyph: compares the pixels of each letter with those of a character no
    font has (a noncharacter, U+FFFF)."""
    letters = [c for c in text if script_of(c) is not None]
    if not letters:
        return True
    missing = _pixels(font, "\uffff")
    return any(_pixels(font, letter) != missing for letter in letters)


def draw_title(
    picture: Image.Image, text: str, centre: tuple[float, float], max_width: float, size: int
) -> None:
    """``text`` in white with a black outline, centred on ``centre``, shrunk
    until it is at most ``max_width`` wide (or at the smallest size)."""
    if not text.strip():
        return
    runs = split_runs(text)
    layout = _layout(runs, text, size)
    while size > _MIN_SIZE and layout.width > max_width:
        size = max(_MIN_SIZE, int(size * 0.9))
        layout = _layout(runs, text, size)
    draw = ImageDraw.Draw(picture)
    x = centre[0] - layout.width / 2
    stroke = max(1, size // 12)
    # A right-to-left title reads from the right: its runs go right to left.
    placed = list(zip(runs, layout.fonts, layout.widths, strict=True))
    first_script = next((run for run in runs if run.script), runs[0])
    if first_script.right_to_left:
        placed.reverse()
    for run, font, width in placed:
        draw.text(
            (x, centre[1]),
            _visual(run),
            font=font,
            anchor="lm",
            fill=_TEXT_FILL,
            stroke_width=stroke,
            stroke_fill=_STROKE_FILL,
            direction=_direction(run, font),
        )
        x += width


@dataclass(frozen=True)
class _Layout:
    fonts: Sequence[Font]
    widths: Sequence[float]

    @property
    def width(self) -> float:
        return sum(self.widths)


def _layout(runs: list[Run], text: str, size: int) -> _Layout:
    fonts = [font_for(run, size, text) for run in runs]
    widths = [
        ImageDraw.Draw(Image.new("L", (1, 1))).textlength(
            _visual(run), font=font, direction=_direction(run, font)
        )
        for run, font in zip(runs, fonts, strict=True)
    ]
    return _Layout(fonts, widths)


def _visual(run: Run) -> str:
    """The run as drawn: raqm orders right-to-left text itself; the basic
    layout draws characters left to right, so they are reversed for it."""
    return run.text[::-1] if run.right_to_left and not has_raqm() else run.text


def _direction(run: Run, font: Font) -> str | None:
    """raqm's direction for the run; None lets the layout decide."""
    if run.right_to_left and has_raqm() and isinstance(font, ImageFont.FreeTypeFont):
        return "rtl"
    return None


def _cjk_region(text: str) -> str:
    if any("\u3040" <= c <= "\u30ff" for c in text):
        return "jp"
    if any("\uac00" <= c <= "\ud7a3" or "\u1100" <= c <= "\u11ff" for c in text):
        return "kr"
    return "sc"


@functools.cache
def _load(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    engine = ImageFont.Layout.RAQM if has_raqm() else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(path), size, index=index, layout_engine=engine)


def _pixels(font: ImageFont.FreeTypeFont, character: str) -> tuple[tuple[int, int], bytes]:
    left, top, right, bottom = (math.floor(edge) for edge in font.getbbox(character))
    glyph = Image.new("L", (max(1, right - left + 1), max(1, bottom - top + 1)))
    ImageDraw.Draw(glyph).text((-left, -top), character, font=font, fill=255)
    return glyph.size, glyph.tobytes()
