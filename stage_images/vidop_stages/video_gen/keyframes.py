"""Drawing a scene's keyframe with Pillow: sky, terrain, subjects, caption.

:mod:`vidop_stages.video_gen.main` draws one keyframe per scene at the output
size and ffmpeg moves a camera over it (:mod:`vidop_stages.video_gen.encoding`).
The scene names its motifs in drawing order (sky, terrain, subjects, weather;
script_gen's :mod:`~vidop_stages.script_gen.looks` reads them from the prompt)
and its palette: sky at the top and at the horizon, ground, accent. Every
motif is a few Pillow shapes, placed by a generator seeded with the scene's
seed, so the same script draws the same pictures; a motif this version does
not know is left out. Pure: an image in memory, nothing written.

The subjects stand in the middle of the frame and the caption below them,
in the middle half, which stays in view under any of the script's camera
moves (they zoom in by at most ~1.3).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw

from vidop_stages.scenescript import Scene
from vidop_stages.video_gen.fonts import draw_title

Colour = tuple[int, int, int]
Fill = tuple[int, int, int, int]

HORIZON = 0.62
"""Where the sky meets the ground, as a fraction of the height."""
_CAPTION_WIDTH_FRACTION = 0.5
_CAPTION_CENTRE_HEIGHT = 0.7
_SUBJECT_BASE = 0.66
"""Where the subjects stand, as a fraction of the height: above the caption."""


@dataclass(frozen=True)
class Canvas:
    """One keyframe being drawn, and what every painter needs to know."""

    draw: ImageDraw.ImageDraw
    """Draws translucent fills blended over the picture (mode RGBA)."""
    rng: random.Random
    width: int
    height: int
    sky_top: Colour
    sky_horizon: Colour
    ground: Colour
    accent: Colour
    subjects: int
    """How many subjects share the frame."""

    @property
    def unit(self) -> int:
        return min(self.width, self.height)

    @property
    def horizon(self) -> float:
        return self.height * HORIZON

    def subject_place(self, slot: int, size: float) -> tuple[float, float]:
        """Where subject ``slot`` of :attr:`subjects` stands: its centre's x
        and its base's y, spread across the middle of the frame."""
        spread = self.width * 0.16
        centre = self.width / 2 + (slot - (self.subjects - 1) / 2) * spread * 1.4
        x = centre + self.rng.uniform(-0.15, 0.15) * size
        return x, self.height * _SUBJECT_BASE + self.rng.uniform(-0.02, 0.02) * self.height


Painter = Callable[[Canvas, int], None]
"""Draws one motif; the int is the motif's slot among the scene's subjects."""


def draw_keyframe(scene: Scene, width: int, height: int) -> Image.Image:
    """The scene's picture, ``width`` by ``height``, RGB."""
    sky_top, sky_horizon, ground, accent = (_rgb(colour) for colour in scene.palette[:4])
    picture = _backdrop(width, height, sky_top, sky_horizon, ground)
    subjects = [motif for motif in scene.motifs if motif in _SUBJECT_PAINTERS]
    canvas = Canvas(
        ImageDraw.Draw(picture, "RGBA"),
        random.Random(scene.seed),
        width,
        height,
        sky_top,
        sky_horizon,
        ground,
        accent,
        len(subjects),
    )
    for motif in scene.motifs:
        if motif in _SUBJECT_PAINTERS:
            _SUBJECT_PAINTERS[motif](canvas, subjects.index(motif))
        elif motif in _SCENERY_PAINTERS:
            _SCENERY_PAINTERS[motif](canvas, 0)
    draw_title(
        picture,
        scene.caption,
        (width / 2, height * _CAPTION_CENTRE_HEIGHT),
        max_width=width * _CAPTION_WIDTH_FRACTION,
        size=max(10, height // 16),
    )
    return picture


def _backdrop(width: int, height: int, top: Colour, horizon: Colour, ground: Colour) -> Image.Image:
    """Sky fading from ``top`` to ``horizon``, ground darkening towards the
    bottom: Pillow's 256-step gradient, stretched, is fast at any size and
    smooth enough once H.264 has had its way with it."""
    horizon_y = round(height * HORIZON)
    gradient = Image.linear_gradient("L")
    picture = Image.new("RGB", (width, height), ground)
    sky_mask = gradient.resize((width, horizon_y), Image.Resampling.BILINEAR)
    sky = Image.composite(
        Image.new("RGB", sky_mask.size, horizon), Image.new("RGB", sky_mask.size, top), sky_mask
    )
    picture.paste(sky, (0, 0))
    ground_size = (width, height - horizon_y)
    ground_mask = gradient.resize(ground_size, Image.Resampling.BILINEAR)
    near = _shade(ground, 0.6)
    picture.paste(
        Image.composite(
            Image.new("RGB", ground_size, near), Image.new("RGB", ground_size, ground), ground_mask
        ),
        (0, horizon_y),
    )
    return picture


# Sky.


def _sun(canvas: Canvas, _slot: int) -> None:
    x = canvas.width * canvas.rng.uniform(0.62, 0.85)
    y = canvas.height * canvas.rng.uniform(0.12, 0.24)
    _glowing_disc(canvas, x, y, canvas.unit * 0.08, canvas.accent)


def _setting_sun(canvas: Canvas, _slot: int) -> None:
    x = canvas.width * canvas.rng.uniform(0.3, 0.7)
    _glowing_disc(canvas, x, canvas.horizon, canvas.unit * 0.16, canvas.accent)


def _glowing_disc(canvas: Canvas, x: float, y: float, radius: float, colour: Colour) -> None:
    for ring in range(6, 0, -1):
        glow = radius * (1 + ring * 0.35)
        canvas.draw.ellipse(_box(x, y, glow), fill=(*colour, 18))
    canvas.draw.ellipse(_box(x, y, radius), fill=(*colour, 255))


def _moon(canvas: Canvas, _slot: int) -> None:
    x = canvas.width * canvas.rng.uniform(0.6, 0.85)
    y = canvas.height * canvas.rng.uniform(0.12, 0.25)
    radius = canvas.unit * 0.07
    for ring in range(4, 0, -1):
        canvas.draw.ellipse(_box(x, y, radius * (1 + ring * 0.3)), fill=(*canvas.accent, 14))
    canvas.draw.ellipse(_box(x, y, radius), fill=(*canvas.accent, 255))
    # The shadow side: the sky's own colour, a little off centre.
    shift = radius * 0.45
    canvas.draw.ellipse(
        _box(x + shift, y - shift * 0.5, radius * 0.92), fill=(*canvas.sky_top, 255)
    )


def _stars(canvas: Canvas, _slot: int) -> None:
    for _ in range(canvas.rng.randint(60, 110)):
        x = canvas.rng.uniform(0, canvas.width)
        y = canvas.horizon * canvas.rng.uniform(0, 0.9) ** 1.5
        size = canvas.unit * canvas.rng.uniform(0.0015, 0.005)
        canvas.draw.ellipse(_box(x, y, size), fill=(255, 255, 240, canvas.rng.randint(120, 255)))


def _planet(canvas: Canvas, _slot: int) -> None:
    x = canvas.width * canvas.rng.uniform(0.15, 0.35)
    y = canvas.height * canvas.rng.uniform(0.15, 0.3)
    radius = canvas.unit * 0.1
    canvas.draw.ellipse(_box(x, y, radius), fill=(*canvas.accent, 255))
    canvas.draw.ellipse(
        (x - radius * 0.8, y - radius * 0.7, x + radius * 0.6, y + radius * 0.2),
        fill=(*_shade(canvas.accent, 1.15), 120),
    )
    ring = (x - radius * 1.9, y - radius * 0.35, x + radius * 1.9, y + radius * 0.35)
    canvas.draw.ellipse(
        ring, outline=(*_shade(canvas.accent, 0.8), 230), width=max(2, round(radius * 0.12))
    )


def _clouds(canvas: Canvas, _slot: int) -> None:
    white = _mix(canvas.sky_horizon, (255, 255, 255), 0.7)
    for _ in range(canvas.rng.randint(2, 4)):
        x = canvas.rng.uniform(0, canvas.width)
        y = canvas.horizon * canvas.rng.uniform(0.15, 0.6)
        size = canvas.unit * canvas.rng.uniform(0.06, 0.1)
        for puff in range(5):
            px = x + (puff - 2) * size * 0.8
            py = y - size * 0.35 * math.sin(math.pi * puff / 4)
            canvas.draw.ellipse(
                _box(px, py, size * (0.7 + 0.3 * math.sin(math.pi * puff / 4))), fill=(*white, 150)
            )


# Terrain.


def _hills(canvas: Canvas, _slot: int) -> None:
    for layer in range(3):
        colour = _mix(canvas.ground, canvas.sky_horizon, 0.35 - layer * 0.15)
        base = canvas.horizon + canvas.height * (layer * 0.08 - 0.05)
        _ridge(canvas, base, canvas.unit * (0.05 - layer * 0.01), _shade(colour, 1 - layer * 0.12))


def _ridge(canvas: Canvas, base: float, amplitude: float, colour: Colour) -> None:
    """A smooth band of hills: two sine waves of random phase, down to the bottom."""
    phases = canvas.rng.uniform(0, 2 * math.pi), canvas.rng.uniform(0, 2 * math.pi)
    steps = 40
    points = [
        (
            canvas.width * step / steps,
            base
            - amplitude * math.sin(2 * math.pi * step / steps * 1.3 + phases[0])
            - amplitude * 0.5 * math.sin(2 * math.pi * step / steps * 3.1 + phases[1]),
        )
        for step in range(steps + 1)
    ]
    canvas.draw.polygon(
        [*points, (canvas.width, canvas.height), (0, canvas.height)], fill=(*colour, 255)
    )


def _mountains(canvas: Canvas, _slot: int) -> None:
    far = _mix(canvas.ground, canvas.sky_horizon, 0.55)
    for layer, colour in enumerate((far, canvas.ground)):
        left = -canvas.width * 0.1
        while left < canvas.width:
            base = canvas.width * canvas.rng.uniform(0.25, 0.45)
            peak_x = left + base * canvas.rng.uniform(0.4, 0.6)
            peak_y = canvas.height * (canvas.rng.uniform(0.22, 0.38) + layer * 0.12)
            floor = canvas.horizon + layer * canvas.height * 0.04
            canvas.draw.polygon(
                [(left, floor), (peak_x, peak_y), (left + base, floor)], fill=(*colour, 255)
            )
            # Snow on the peak: the top fifth of the same triangle.
            cap = 0.22
            canvas.draw.polygon(
                [
                    (peak_x + (left - peak_x) * cap, peak_y + (floor - peak_y) * cap),
                    (peak_x, peak_y),
                    (peak_x + (left + base - peak_x) * cap, peak_y + (floor - peak_y) * cap),
                ],
                fill=(245, 248, 252, 230),
            )
            left += base * canvas.rng.uniform(0.5, 0.8)
    canvas.draw.rectangle(
        (0, canvas.horizon + canvas.height * 0.04, canvas.width, canvas.height),
        fill=(*canvas.ground, 255),
    )


def _sea(canvas: Canvas, _slot: int) -> None:
    canvas.draw.rectangle(
        (0, canvas.horizon, canvas.width, canvas.height), fill=(*canvas.ground, 120)
    )
    # Light on the water: short strokes of the accent, more of them nearer.
    for _ in range(canvas.rng.randint(40, 70)):
        depth = canvas.rng.random()
        y = canvas.horizon + (canvas.height - canvas.horizon) * depth**1.5
        x = canvas.rng.uniform(0, canvas.width)
        length = canvas.width * (0.01 + 0.05 * depth)
        canvas.draw.line(
            [(x, y), (x + length, y)],
            fill=(*canvas.accent, 110),
            width=max(1, round(canvas.unit * 0.004 * (1 + depth))),
        )


def _dunes(canvas: Canvas, _slot: int) -> None:
    for layer in range(3):
        base = canvas.horizon + canvas.height * (layer * 0.1 - 0.02)
        colour = _shade(
            _mix(canvas.ground, canvas.sky_horizon, 0.25 - layer * 0.1), 1.05 - layer * 0.1
        )
        _ridge(canvas, base, canvas.unit * 0.04, colour)


def _forest(canvas: Canvas, _slot: int) -> None:
    green = _mix(canvas.ground, (20, 70, 30), 0.4)
    for row, shade in ((0, 0.8), (1, 1.0)):
        x = -canvas.width * 0.02
        while x < canvas.width:
            tall = canvas.height * canvas.rng.uniform(0.12, 0.2) * (1 + row * 0.3)
            base = canvas.horizon + canvas.height * (0.02 + row * 0.05)
            half = tall * 0.28
            canvas.draw.polygon(
                [(x - half, base), (x, base - tall), (x + half, base)],
                fill=(*_shade(green, shade * canvas.rng.uniform(0.8, 1.1)), 255),
            )
            x += half * canvas.rng.uniform(1.0, 1.6)


def _city(canvas: Canvas, _slot: int) -> None:
    building = _mix(canvas.ground, canvas.sky_top, 0.3)
    x = 0.0
    while x < canvas.width:
        wide = canvas.width * canvas.rng.uniform(0.04, 0.09)
        top = canvas.horizon - canvas.height * canvas.rng.uniform(0.08, 0.4)
        colour = _shade(building, canvas.rng.uniform(0.8, 1.2))
        canvas.draw.rectangle((x, top, x + wide * 0.94, canvas.height), fill=(*colour, 255))
        pane = max(2.0, canvas.unit * 0.012)
        for window_y in _steps(top + pane, canvas.horizon, pane * 2.2):
            for window_x in _steps(x + pane, x + wide * 0.94 - pane, pane * 2.0):
                if canvas.rng.random() < 0.45:
                    canvas.draw.rectangle(
                        (window_x, window_y, window_x + pane, window_y + pane),
                        fill=(*canvas.accent, 200),
                    )
        x += wide


# Weather, over everything.


def _rain(canvas: Canvas, _slot: int) -> None:
    slant = canvas.unit * 0.02
    for _ in range(canvas.rng.randint(120, 200)):
        x, y = canvas.rng.uniform(-slant, canvas.width), canvas.rng.uniform(0, canvas.height)
        length = canvas.unit * canvas.rng.uniform(0.03, 0.06)
        canvas.draw.line(
            [(x, y), (x + slant, y + length)],
            fill=(220, 230, 240, 90),
            width=max(1, canvas.unit // 400),
        )


def _snowfall(canvas: Canvas, _slot: int) -> None:
    for _ in range(canvas.rng.randint(100, 180)):
        x, y = canvas.rng.uniform(0, canvas.width), canvas.rng.uniform(0, canvas.height)
        canvas.draw.ellipse(
            _box(x, y, canvas.unit * canvas.rng.uniform(0.002, 0.007)), fill=(255, 255, 255, 200)
        )


# Subjects, standing on the ground in the middle of the frame.


def _cat(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.2
    x, base = canvas.subject_place(slot, size)
    fur = canvas.rng.choice(((232, 140, 60), (90, 90, 96), (35, 32, 36), (240, 236, 228)))
    fill = (*fur, 255)
    body = (x - size * 0.35, base - size * 0.5, x + size * 0.35, base)
    canvas.draw.ellipse(body, fill=fill)
    head_y, head = base - size * 0.62, size * 0.22
    canvas.draw.ellipse(_box(x - size * 0.12, head_y, head), fill=fill)
    for side in (-1, 1):
        ear_x = x - size * 0.12 + side * head * 0.6
        canvas.draw.polygon(
            [
                (ear_x - head * 0.35, head_y - head * 0.6),
                (ear_x + side * head * 0.15, head_y - head * 1.35),
                (ear_x + head * 0.35, head_y - head * 0.6),
            ],
            fill=fill,
        )
        canvas.draw.ellipse(
            _box(x - size * 0.12 + side * head * 0.4, head_y - head * 0.1, head * 0.13),
            fill=(40, 160, 90, 255),
        )
    tail = (x + size * 0.15, base - size * 0.55, x + size * 0.6, base - size * 0.05)
    canvas.draw.arc(tail, 200, 90, fill=fill, width=max(2, round(size * 0.07)))


def _dog(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.2
    x, base = canvas.subject_place(slot, size)
    coat = canvas.rng.choice(((160, 110, 60), (230, 200, 150), (60, 50, 45)))
    fill = (*coat, 255)
    canvas.draw.rounded_rectangle(
        (x - size * 0.4, base - size * 0.45, x + size * 0.3, base - size * 0.2),
        radius=size * 0.1,
        fill=fill,
    )
    for leg_x in (-0.32, -0.18, 0.12, 0.24):
        canvas.draw.rectangle(
            (x + size * leg_x, base - size * 0.25, x + size * (leg_x + 0.07), base), fill=fill
        )
    head = size * 0.17
    hx, hy = x + size * 0.38, base - size * 0.55
    canvas.draw.ellipse(_box(hx, hy, head), fill=fill)
    canvas.draw.ellipse((hx, hy - head * 0.1, hx + head * 1.6, hy + head * 0.6), fill=fill)
    canvas.draw.ellipse(
        _box(hx + head * 1.5, hy + head * 0.15, head * 0.18), fill=(20, 20, 20, 255)
    )
    canvas.draw.ellipse(
        (hx - head * 1.0, hy - head * 0.6, hx - head * 0.3, hy + head * 0.9),
        fill=(*_shade(coat, 0.7), 255),
    )
    canvas.draw.line(
        [(x - size * 0.4, base - size * 0.4), (x - size * 0.6, base - size * 0.6)],
        fill=fill,
        width=max(2, round(size * 0.06)),
    )


def _bird(canvas: Canvas, slot: int) -> None:
    # A small flock in the sky: each bird two arcs, a gull's "m".
    dark = (*_shade(_mix(canvas.sky_top, (20, 20, 30), 0.7), 1.0), 230)
    for _ in range(canvas.rng.randint(3, 6)):
        size = canvas.unit * canvas.rng.uniform(0.04, 0.08)
        x = canvas.width * canvas.rng.uniform(0.25, 0.75)
        y = canvas.horizon * canvas.rng.uniform(0.25, 0.75)
        line = max(2, round(size * 0.15))
        canvas.draw.arc(
            (x - size, y - size * 0.4, x, y + size * 0.4), 200, 340, fill=dark, width=line
        )
        canvas.draw.arc(
            (x, y - size * 0.4, x + size, y + size * 0.4), 200, 340, fill=dark, width=line
        )


def _car(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.26
    x, base = canvas.subject_place(slot, size)
    paint = canvas.rng.choice(((200, 40, 40), (40, 90, 190), (240, 190, 40), (230, 230, 235)))
    wheel = size * 0.1
    canvas.draw.rounded_rectangle(
        (x - size * 0.5, base - size * 0.32, x + size * 0.5, base - wheel),
        radius=size * 0.06,
        fill=(*paint, 255),
    )
    canvas.draw.polygon(
        [
            (x - size * 0.28, base - size * 0.32),
            (x - size * 0.18, base - size * 0.52),
            (x + size * 0.18, base - size * 0.52),
            (x + size * 0.3, base - size * 0.32),
        ],
        fill=(*paint, 255),
    )
    canvas.draw.polygon(
        [
            (x - size * 0.22, base - size * 0.34),
            (x - size * 0.15, base - size * 0.48),
            (x + size * 0.15, base - size * 0.48),
            (x + size * 0.23, base - size * 0.34),
        ],
        fill=(180, 215, 235, 255),
    )
    for wheel_x in (-0.3, 0.3):
        canvas.draw.ellipse(_box(x + size * wheel_x, base - wheel, wheel), fill=(25, 25, 25, 255))
        canvas.draw.ellipse(
            _box(x + size * wheel_x, base - wheel, wheel * 0.45), fill=(170, 170, 170, 255)
        )


def _house(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.24
    x, base = canvas.subject_place(slot, size)
    wall = canvas.rng.choice(((240, 226, 196), (214, 120, 90), (200, 210, 225)))
    canvas.draw.rectangle(
        (x - size * 0.35, base - size * 0.5, x + size * 0.35, base), fill=(*wall, 255)
    )
    canvas.draw.polygon(
        [
            (x - size * 0.45, base - size * 0.48),
            (x, base - size * 0.85),
            (x + size * 0.45, base - size * 0.48),
        ],
        fill=(150, 50, 40, 255),
    )
    canvas.draw.rectangle(
        (x - size * 0.08, base - size * 0.28, x + size * 0.08, base), fill=(110, 70, 40, 255)
    )
    lit = (*canvas.accent, 255)
    for side in (-1, 1):
        canvas.draw.rectangle(
            (
                x + side * size * 0.22 - size * 0.07,
                base - size * 0.4,
                x + side * size * 0.22 + size * 0.07,
                base - size * 0.26,
            ),
            fill=lit,
        )


def _tree(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.3
    x, base = canvas.subject_place(slot, size)
    canvas.draw.rectangle(
        (x - size * 0.05, base - size * 0.45, x + size * 0.05, base), fill=(100, 66, 40, 255)
    )
    leaves = _mix(canvas.ground, (40, 130, 50), 0.6)
    for _ in range(6):
        dx, dy = canvas.rng.uniform(-0.18, 0.18) * size, canvas.rng.uniform(-0.2, 0.1) * size
        canvas.draw.ellipse(
            _box(x + dx, base - size * 0.62 + dy, size * canvas.rng.uniform(0.16, 0.24)),
            fill=(*_shade(leaves, canvas.rng.uniform(0.8, 1.15)), 255),
        )


def _boat(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.26
    x, base = canvas.subject_place(slot, size)
    canvas.draw.polygon(
        [
            (x - size * 0.5, base - size * 0.18),
            (x + size * 0.5, base - size * 0.18),
            (x + size * 0.35, base),
            (x - size * 0.35, base),
        ],
        fill=(120, 60, 40, 255),
    )
    canvas.draw.line(
        [(x, base - size * 0.18), (x, base - size * 0.95)],
        fill=(80, 50, 30, 255),
        width=max(2, round(size * 0.03)),
    )
    canvas.draw.polygon(
        [
            (x + size * 0.03, base - size * 0.92),
            (x + size * 0.42, base - size * 0.25),
            (x + size * 0.03, base - size * 0.25),
        ],
        fill=(250, 248, 240, 255),
    )
    canvas.draw.polygon(
        [
            (x - size * 0.03, base - size * 0.8),
            (x - size * 0.3, base - size * 0.25),
            (x - size * 0.03, base - size * 0.25),
        ],
        fill=(*canvas.accent, 255),
    )


def _fish(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.18
    x, base = canvas.subject_place(slot, size)
    y = base + size * 0.2  # in the water or the air below the subjects' line
    scales = canvas.rng.choice(((250, 140, 40), (90, 170, 220), (240, 90, 120)))
    canvas.draw.ellipse(
        (x - size * 0.5, y - size * 0.25, x + size * 0.3, y + size * 0.25), fill=(*scales, 255)
    )
    canvas.draw.polygon(
        [
            (x + size * 0.25, y),
            (x + size * 0.55, y - size * 0.25),
            (x + size * 0.55, y + size * 0.25),
        ],
        fill=(*scales, 255),
    )
    canvas.draw.ellipse(_box(x - size * 0.32, y - size * 0.06, size * 0.05), fill=(20, 20, 20, 255))


def _flower(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.2
    x, base = canvas.subject_place(slot, size)
    for index in range(3):
        fx = x + (index - 1) * size * 0.45
        height = size * canvas.rng.uniform(0.6, 0.95)
        canvas.draw.line(
            [(fx, base), (fx, base - height)],
            fill=(50, 130, 50, 255),
            width=max(2, round(size * 0.04)),
        )
        petal = canvas.rng.choice(
            ((240, 80, 110), (250, 200, 50), (180, 100, 230), (250, 250, 250))
        )
        for angle in range(0, 360, 60):
            px = fx + math.cos(math.radians(angle)) * size * 0.12
            py = base - height + math.sin(math.radians(angle)) * size * 0.12
            canvas.draw.ellipse(_box(px, py, size * 0.09), fill=(*petal, 255))
        canvas.draw.ellipse(_box(fx, base - height, size * 0.07), fill=(250, 210, 60, 255))


def _rocket(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.32
    x, base = canvas.subject_place(slot, size)
    body = (x - size * 0.1, base - size * 0.75, x + size * 0.1, base - size * 0.15)
    canvas.draw.rectangle(body, fill=(235, 235, 240, 255))
    canvas.draw.polygon(
        [
            (x - size * 0.1, base - size * 0.75),
            (x, base - size * 1.0),
            (x + size * 0.1, base - size * 0.75),
        ],
        fill=(210, 50, 50, 255),
    )
    for side in (-1, 1):
        canvas.draw.polygon(
            [
                (x + side * size * 0.1, base - size * 0.35),
                (x + side * size * 0.22, base - size * 0.12),
                (x + side * size * 0.1, base - size * 0.15),
            ],
            fill=(210, 50, 50, 255),
        )
    canvas.draw.ellipse(_box(x, base - size * 0.55, size * 0.05), fill=(80, 160, 220, 255))
    canvas.draw.polygon(
        [
            (x - size * 0.07, base - size * 0.15),
            (x, base + size * 0.05),
            (x + size * 0.07, base - size * 0.15),
        ],
        fill=(255, 170, 40, 230),
    )


def _robot(canvas: Canvas, slot: int) -> None:
    size = canvas.unit * 0.26
    x, base = canvas.subject_place(slot, size)
    metal = (*canvas.rng.choice(((180, 190, 200), (120, 140, 170), (210, 200, 170))), 255)
    canvas.draw.rectangle(
        (x - size * 0.18, base - size * 0.55, x + size * 0.18, base - size * 0.2), fill=metal
    )
    canvas.draw.rectangle((x - size * 0.14, base - size * 0.2, x - size * 0.05, base), fill=metal)
    canvas.draw.rectangle((x + size * 0.05, base - size * 0.2, x + size * 0.14, base), fill=metal)
    canvas.draw.rounded_rectangle(
        (x - size * 0.14, base - size * 0.82, x + size * 0.14, base - size * 0.6),
        radius=size * 0.03,
        fill=metal,
    )
    canvas.draw.line(
        [(x, base - size * 0.82), (x, base - size * 0.95)],
        fill=metal,
        width=max(2, round(size * 0.02)),
    )
    canvas.draw.ellipse(_box(x, base - size * 0.96, size * 0.03), fill=(*canvas.accent, 255))
    for side in (-1, 1):
        canvas.draw.ellipse(
            _box(x + side * size * 0.06, base - size * 0.72, size * 0.035), fill=(60, 220, 255, 255)
        )


def _wave(canvas: Canvas, _slot: int) -> None:
    """One big curling wave rising across the frame, foam on its crest."""
    water = _mix(canvas.ground, (30, 110, 170), 0.5)
    crest_x = canvas.width * canvas.rng.uniform(0.35, 0.6)
    crest_y = canvas.height * 0.3
    steps = 30
    face = []
    for step in range(steps + 1):
        t = step / steps
        x = t * crest_x
        face.append((x, canvas.height * 0.75 - (canvas.height * 0.75 - crest_y) * t**2.2))
    lip = [
        (
            crest_x + canvas.unit * 0.22 * math.sin(math.pi * t),
            crest_y + canvas.unit * 0.2 * (1 - math.cos(math.pi * t)) / 2,
        )
        for t in (step / 10 for step in range(11))
    ]
    back = [(canvas.width, canvas.height * 0.72), (canvas.width, canvas.height), (0, canvas.height)]
    canvas.draw.polygon(
        [*face, *lip, (crest_x + canvas.unit * 0.1, crest_y + canvas.unit * 0.25), *back],
        fill=(*water, 235),
    )
    # The tube under the lip: a darker hollow.
    canvas.draw.ellipse(
        _box(crest_x + canvas.unit * 0.1, crest_y + canvas.unit * 0.16, canvas.unit * 0.07),
        fill=(*_shade(water, 0.6), 220),
    )
    for x, y in face[steps // 2 :] + lip:
        canvas.draw.ellipse(
            _box(x, y, canvas.unit * canvas.rng.uniform(0.01, 0.025)), fill=(250, 252, 255, 220)
        )


_SCENERY_PAINTERS: dict[str, Painter] = {
    "sun": _sun,
    "setting_sun": _setting_sun,
    "moon": _moon,
    "stars": _stars,
    "planet": _planet,
    "clouds": _clouds,
    "hills": _hills,
    "mountains": _mountains,
    "sea": _sea,
    "dunes": _dunes,
    "forest": _forest,
    "city": _city,
    "rain": _rain,
    "snowfall": _snowfall,
    "wave": _wave,
}
_SUBJECT_PAINTERS: dict[str, Painter] = {
    "cat": _cat,
    "dog": _dog,
    "bird": _bird,
    "car": _car,
    "house": _house,
    "tree": _tree,
    "boat": _boat,
    "fish": _fish,
    "flower": _flower,
    "rocket": _rocket,
    "robot": _robot,
}
MOTIFS = frozenset(_SCENERY_PAINTERS) | frozenset(_SUBJECT_PAINTERS)
"""Every motif name this version draws."""


def _box(x: float, y: float, radius: float) -> tuple[float, float, float, float]:
    return x - radius, y - radius, x + radius, y + radius


def _steps(start: float, stop: float, step: float) -> list[float]:
    count = max(0, math.floor((stop - start) / step))
    return [start + index * step for index in range(count)]


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(max(0, min(255, round(channel * factor))) for channel in colour)  # type: ignore[return-value]


def _mix(first: Colour, second: Colour, share: float) -> Colour:
    return tuple(round(a + (b - a) * share) for a, b in zip(first, second, strict=True))  # type: ignore[return-value]


def _rgb(colour: str) -> Colour:
    value = int(colour.removeprefix("#"), 16)
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF
