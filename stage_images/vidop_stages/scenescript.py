"""The scene script: what script_gen writes and voice_gen and video_gen read.

script_gen (:mod:`vidop_stages.script_gen.planner`) plans the whole timeline
here, because voice_gen and video_gen run side by side and never see each
other's output: each scene has an exact start and duration, the durations add
up to the job's ``durationSeconds``, and every scene starts on a frame
boundary. voice_gen fits the scene's narration into that window and video_gen
renders exactly the window's frames, so picture and sound line up by
construction. :meth:`SceneScript.windows` turns the windows into whole units
(audio samples, video frames) the same way for both.

The JSON form is canonical (sorted keys, fixed float rounding), so the same
script is the same bytes. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

SCHEMA_VERSION = 2
"""2: ``motifs`` (a list, drawing order) replaced ``motif``; four palette colours."""
# Seconds are written with microsecond precision: far below one audio sample
# (1/22050 s), so rounding never moves a window edge.
_SECONDS_DIGITS = 6

_Value = TypeVar("_Value")


@dataclass(frozen=True)
class Motion:
    """A Ken Burns move over the scene: zoom from one factor to another while
    the view's centre travels between two points (fractions of the room the
    zoom leaves, 0 = left/top, 1 = right/bottom)."""

    zoom_from: float
    zoom_to: float
    pan_from: tuple[float, float]
    pan_to: tuple[float, float]


@dataclass(frozen=True)
class Scene:
    index: int
    start_seconds: float
    duration_seconds: float
    narration: tuple[str, ...]
    """The sentences spoken over this scene, in order."""
    caption: str
    palette: tuple[str, ...]
    """``#rrggbb`` colours: sky at the top, sky at the horizon, ground, accent."""
    motifs: tuple[str, ...]
    """What the keyframe shows, in drawing order: sky, terrain, subjects,
    weather (names from :mod:`vidop_stages.script_gen.looks`, drawn by
    video_gen's keyframes)."""
    motion: Motion
    seed: int
    """Seeds the placement of the motifs' shapes, so a re-render is identical."""


@dataclass(frozen=True)
class SceneScript:
    prompt: str
    seed: str
    """Hex digest of the prompt that seeded every choice."""
    duration_seconds: int
    fps: int
    words_per_second: float
    """The speaking rate the timeline was sized for."""
    scenes: tuple[Scene, ...]

    @property
    def sentences(self) -> list[str]:
        return [sentence for scene in self.scenes for sentence in scene.narration]

    def windows(self, units_per_second: int) -> list[tuple[int, int]]:
        """Each scene's [start, end) in whole units (samples, frames). Edges
        are rounded from the planned times, never the lengths, so the windows
        tile ``0 .. duration * units_per_second`` with no gap or overlap."""
        edges = [round(scene.start_seconds * units_per_second) for scene in self.scenes]
        edges.append(self.duration_seconds * units_per_second)
        return list(pairwise(edges))

    def check_planned_for(self, duration_seconds: int, fps: int) -> None:
        """Raises ValueError when the script was planned for another timeline
        (a stale artifact): fitting sound or frames to it would drift."""
        if (self.duration_seconds, self.fps) != (duration_seconds, fps):
            raise ValueError(
                f"the scene script was planned for {self.duration_seconds} s at {self.fps} fps, "
                f"not {duration_seconds} s at {fps} fps"
            )

    def to_json(self) -> str:
        document = {
            "version": SCHEMA_VERSION,
            "prompt": self.prompt,
            "seed": self.seed,
            "durationSeconds": self.duration_seconds,
            "fps": self.fps,
            "wordsPerSecond": self.words_per_second,
            "scenes": [_scene_document(scene) for scene in self.scenes],
        }
        return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SceneScript:
        """Raises ValueError when ``text`` is not a script this version reads."""
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != SCHEMA_VERSION:
            raise ValueError(f"not a version {SCHEMA_VERSION} scene script")
        scenes = tuple(_scene(entry) for entry in _list(document, "scenes"))
        if not scenes:
            raise ValueError("the scene script has no scenes")
        return cls(
            prompt=_typed(document, "prompt", str),
            seed=_typed(document, "seed", str),
            duration_seconds=_typed(document, "durationSeconds", int),
            fps=_typed(document, "fps", int),
            words_per_second=_number(document, "wordsPerSecond"),
            scenes=scenes,
        )


def _scene_document(scene: Scene) -> dict[str, Any]:
    return {
        "index": scene.index,
        "startSeconds": round(scene.start_seconds, _SECONDS_DIGITS),
        "durationSeconds": round(scene.duration_seconds, _SECONDS_DIGITS),
        "narration": list(scene.narration),
        "caption": scene.caption,
        "palette": list(scene.palette),
        "motifs": list(scene.motifs),
        "motion": {
            "zoomFrom": scene.motion.zoom_from,
            "zoomTo": scene.motion.zoom_to,
            "panFrom": list(scene.motion.pan_from),
            "panTo": list(scene.motion.pan_to),
        },
        "seed": scene.seed,
    }


def _scene(entry: Any) -> Scene:
    if not isinstance(entry, dict):
        raise ValueError("a scene is not a JSON object")
    motion = entry.get("motion")
    if not isinstance(motion, dict):
        raise ValueError("a scene has no motion object")
    return Scene(
        index=_typed(entry, "index", int),
        start_seconds=_number(entry, "startSeconds"),
        duration_seconds=_number(entry, "durationSeconds"),
        narration=tuple(_strings(entry, "narration")),
        caption=_typed(entry, "caption", str),
        palette=tuple(_strings(entry, "palette")),
        motifs=tuple(_strings(entry, "motifs")),
        motion=Motion(
            zoom_from=_number(motion, "zoomFrom"),
            zoom_to=_number(motion, "zoomTo"),
            pan_from=_point(motion, "panFrom"),
            pan_to=_point(motion, "panTo"),
        ),
        seed=_typed(entry, "seed", int),
    )


def _typed(document: dict[str, Any], key: str, kind: type[_Value]) -> _Value:
    value = document.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"scene script field {key} is not a {kind.__name__}")
    return value


def _number(document: dict[str, Any], key: str) -> float:
    value = document.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"scene script field {key} is not a number")
    return float(value)


def _list(document: dict[str, Any], key: str) -> list[Any]:
    return _typed(document, key, list)


def _strings(document: dict[str, Any], key: str) -> list[str]:
    values = _list(document, key)
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"scene script field {key} is not a list of strings")
    return values


def _point(document: dict[str, Any], key: str) -> tuple[float, float]:
    values = _list(document, key)
    if len(values) != 2:
        raise ValueError(f"scene script field {key} is not an [x, y] pair")
    x, y = (_number({"v": value}, "v") for value in values)
    return x, y
