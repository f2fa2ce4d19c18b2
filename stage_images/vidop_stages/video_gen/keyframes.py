"""Drawing a scene's keyframe with Pillow: palette gradient, motif, caption.

:mod:`vidop_stages.video_gen.main` draws one keyframe per scene at the output
size and ffmpeg moves a camera over it (:mod:`vidop_stages.video_gen.encoding`).
The shapes are placed by a generator seeded with the scene's seed, so the same
script draws the same pictures. Pure: an image in memory, nothing written.

The caption sits in the middle half of the frame, which stays in view under
any of the script's camera moves (they zoom in by at most ~1.3).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

from vidop_stages.scenescript import Scene

Colour = tuple[int, int, int]
Painter = Callable[[ImageDraw.ImageDraw, random.Random, int, int, Colour], None]

# Shapes are drawn translucent over the gradient, so they blend with it.
_SHAPE_ALPHA = (70, 150)
_CAPTION_WIDTH_FRACTION = 0.5
_CAPTION_CENTRE_HEIGHT = 0.68


def draw_keyframe(scene: Scene, width: int, height: int) -> Image.Image:
    """The scene's picture, ``width`` by ``height``, RGB."""
    dark, mid, accent = (_rgb(colour) for colour in scene.palette[:3])
    rng = random.Random(scene.seed)
    # Pillow's 256-step gradient, stretched: fast at any size, and smooth
    # enough once H.264 has had its way with it.
    mask = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    picture = Image.composite(
        Image.new("RGB", (width, height), mid), Image.new("RGB", (width, height), dark), mask
    )
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    _PAINTERS.get(scene.motif, _circles)(ImageDraw.Draw(overlay), rng, width, height, accent)
    picture.paste(overlay, (0, 0), overlay)
    _caption(ImageDraw.Draw(picture), scene.caption, width, height)
    return picture


def _circles(
    draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, colour: Colour
) -> None:
    unit = min(width, height)
    for _ in range(rng.randint(6, 12)):
        radius = unit * rng.uniform(0.05, 0.22)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        box = (x - radius, y - radius, x + radius, y + radius)
        if rng.random() < 0.3:
            draw.ellipse(box, outline=_tint(colour, rng), width=max(1, unit // 120))
        else:
            draw.ellipse(box, fill=_tint(colour, rng))


def _stripes(
    draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, colour: Colour
) -> None:
    band = max(width, height) * rng.uniform(0.04, 0.09)
    slant = height * rng.uniform(-0.8, 0.8)
    offset = -abs(slant) - band
    while offset < width + abs(slant):
        draw.polygon(
            [
                (offset, 0),
                (offset + band, 0),
                (offset + band + slant, height),
                (offset + slant, height),
            ],
            fill=_tint(colour, rng),
        )
        offset += band * rng.uniform(2.0, 3.5)


def _triangles(
    draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, colour: Colour
) -> None:
    for _ in range(rng.randint(5, 10)):
        base = width * rng.uniform(0.15, 0.4)
        left = rng.uniform(-base / 2, width - base / 2)
        peak = height * rng.uniform(0.25, 0.7)
        draw.polygon(
            [(left, height), (left + base, height), (left + base * rng.uniform(0.3, 0.7), peak)],
            fill=_tint(colour, rng),
        )


def _stars(
    draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, colour: Colour
) -> None:
    unit = min(width, height)
    for _ in range(rng.randint(40, 90)):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = unit * rng.uniform(0.004, 0.018)
        # A four-pointed star: a thin diamond across each axis.
        draw.polygon(
            [(x, y - 3 * size), (x + size, y), (x, y + 3 * size), (x - size, y)],
            fill=_tint(colour, rng),
        )
        draw.polygon(
            [(x - 3 * size, y), (x, y - size), (x + 3 * size, y), (x, y + size)],
            fill=_tint(colour, rng),
        )


def _waves(
    draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, colour: Colour
) -> None:
    unit = min(width, height)
    steps = 48
    for _ in range(rng.randint(5, 9)):
        level = height * rng.uniform(0.1, 0.95)
        amplitude = unit * rng.uniform(0.02, 0.08)
        wavelength = width * rng.uniform(0.25, 0.7)
        phase = rng.uniform(0, 2 * math.pi)
        points = [
            (x, level + amplitude * math.sin(2 * math.pi * x / wavelength + phase))
            for x in (width * step / steps for step in range(steps + 1))
        ]
        draw.line(
            points, fill=_tint(colour, rng), width=max(1, round(unit * rng.uniform(0.008, 0.03)))
        )


def _grid(
    draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, colour: Colour
) -> None:
    left = 0.0
    while left < width:
        block = width * rng.uniform(0.05, 0.14)
        top = height * rng.uniform(0.3, 0.8)
        draw.rectangle((left, top, left + block * 0.9, height), fill=_tint(colour, rng))
        left += block
    line = max(1, min(width, height) // 240)
    spacing = max(width, height) / rng.randint(8, 16)
    for index in range(1, math.ceil(max(width, height) / spacing)):
        draw.line(
            [(index * spacing, 0), (index * spacing, height)], fill=_tint(colour, rng), width=line
        )
        draw.line(
            [(0, index * spacing), (width, index * spacing)], fill=_tint(colour, rng), width=line
        )


_PAINTERS: dict[str, Painter] = {
    "circles": _circles,
    "stripes": _stripes,
    "triangles": _triangles,
    "stars": _stars,
    "waves": _waves,
    "grid": _grid,
}


def _caption(draw: ImageDraw.ImageDraw, text: str, width: int, height: int) -> None:
    if not text:
        return
    size = max(10, height // 16)
    font = ImageFont.load_default(size=size)
    # Shrink until the caption fits the middle of the frame.
    while size > 10 and draw.textlength(text, font=font) > width * _CAPTION_WIDTH_FRACTION:
        size = max(10, int(size * 0.9))
        font = ImageFont.load_default(size=size)
    draw.text(
        (width / 2, height * _CAPTION_CENTRE_HEIGHT),
        text,
        font=font,
        anchor="mm",
        fill=(255, 255, 255),
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0),
    )


def _tint(colour: Colour, rng: random.Random) -> tuple[int, int, int, int]:
    return (*colour, rng.randint(*_SHAPE_ALPHA))


def _rgb(colour: str) -> Colour:
    value = int(colour.removeprefix("#"), 16)
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF
