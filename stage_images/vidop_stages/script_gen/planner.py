"""Turn a prompt into a scene script, deterministically and without a model.

Called by :mod:`vidop_stages.script_gen.main`. Every choice (extra narration
lines, palettes, motifs, camera moves) comes from a random generator seeded
with the SHA-256 of the prompt, so the same job parameters give the same
script, byte for byte, on any machine.

How the timeline is planned (voice_gen and video_gen run in parallel and rely
on it, see :mod:`vidop_stages.scenescript`):

1. The narration gets a word budget of :data:`WORDS_PER_SECOND` times the
   duration: a little slower than espeak-ng's default rate, which leaves room
   for pauses. The prompt's own sentences (split by pysbd's rules) come first;
   generated lines about the prompt's keywords fill the rest of the budget.
2. The sentences are grouped, in order, into scenes of about
   :data:`SCENE_SECONDS` each, balancing words between scenes.
3. The job's frames (``durationSeconds * fps``) are shared out between scenes
   in proportion to their spoken words plus a pause per sentence, every scene
   getting at least one frame; so each window is sized for its narration,
   starts on a frame boundary, and the windows add up to the duration exactly.
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import math
import random
import re
from typing import TypeVar

import pysbd

from vidop_stages.params import WORD, JobParams, check_prompt
from vidop_stages.scenescript import Motion, Scene, SceneScript

WORDS_PER_SECOND = 2.6
SCENE_SECONDS = 5.0
PAUSE_WORDS_PER_SENTENCE = 1.5
"""The pause after a sentence, counted in words when sizing a scene's window."""
MAX_CAPTION_CHARACTERS = 48

MOTIFS = ("circles", "stripes", "triangles", "stars", "waves", "grid")

# Words that suggest a colour or a shape; the first keyword found sets the
# video's base hue (a fraction of the colour wheel) and its main motif.
_HUE_WORDS = {
    "sunset": 0.07, "sunrise": 0.09, "fire": 0.02, "autumn": 0.06, "desert": 0.11,
    "sand": 0.12, "gold": 0.13, "forest": 0.33, "tree": 0.31, "garden": 0.28,
    "grass": 0.27, "ocean": 0.55, "sea": 0.54, "wave": 0.53, "water": 0.52,
    "river": 0.5, "ice": 0.5, "snow": 0.58, "sky": 0.58, "night": 0.66,
    "space": 0.7, "galaxy": 0.75, "city": 0.72, "neon": 0.85, "flower": 0.9,
    "rose": 0.95,
}  # fmt: skip
_MOTIF_WORDS = {
    "wave": "waves", "ocean": "waves", "sea": "waves", "water": "waves", "surf": "waves",
    "river": "waves", "star": "stars", "night": "stars", "space": "stars", "galaxy": "stars",
    "sky": "stars", "city": "grid", "building": "grid", "street": "grid", "robot": "grid",
    "rain": "stripes", "storm": "stripes", "road": "stripes", "forest": "triangles",
    "tree": "triangles", "mountain": "triangles", "sun": "circles", "planet": "circles",
    "bubble": "circles", "ball": "circles", "moon": "circles",
}  # fmt: skip
_STOPWORDS = frozenset({
    "the", "and", "for", "with", "from", "into", "onto", "over", "under", "that", "this",
    "these", "those", "then", "than", "there", "their", "they", "them", "you", "your", "our",
    "its", "are", "was", "were", "been", "being", "have", "has", "had", "not", "but", "all",
    "any", "can", "will", "would", "should", "could", "about", "above", "after", "again",
    "against", "very", "just", "also", "only", "some", "such", "what", "when", "where",
    "which", "while", "who", "whom", "why", "how", "each", "few", "more", "most", "other",
    "own", "same", "both", "out", "off", "down", "here", "make", "makes", "made", "show",
    "shows", "video", "clip", "scene",
})  # fmt: skip
# Generated narration; {a} and {b} are keywords of the prompt, {mood} a word of
# atmosphere. Each is one sentence.
_LINES = (
    "The {a} comes into view.",
    "Light gathers around the {a}.",
    "For a moment, the {a} and the {b} share the frame.",
    "Everything feels {mood} here.",
    "The {a} moves, slow and {mood}.",
    "Colours drift across the {b}.",
    "Somewhere beyond the {a}, the {b} waits.",
    "The air turns {mood} around the {b}.",
    "Look closer at the {a}.",
    "A quiet rhythm carries the {a} forward.",
    "The {b} answers with a {mood} glow.",
    "Shapes rise and fade behind the {a}.",
    "Time stretches, and the {a} holds still.",
    "The {a} and the {b} drift apart.",
    "It is a {mood} sight.",
    "The story of the {a} goes on.",
)
_MOODS = ("calm", "bright", "gentle", "vivid", "dreamy", "bold", "soft", "warm", "cool")

_SPACE = re.compile(r"\s+")
# Commas, colons and dashes (hyphen, en and em) that would dangle at a cut.
_TRAILING_PUNCTUATION = re.compile(r"[\s,;:\-\u2013\u2014]+$")
_SEGMENTER = pysbd.Segmenter(language="en", clean=False)

_Found = TypeVar("_Found")


def plan_script(params: JobParams) -> SceneScript:
    prompt = check_prompt(params.prompt)
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    rng = random.Random(int(digest[:16], 16))
    keywords = prompt_keywords(prompt)
    budget = max(1, math.floor(params.duration_seconds * WORDS_PER_SECOND))
    sentences = narration(prompt, keywords, budget, rng)
    total_frames = params.total_frames
    groups = group_sentences(
        sentences, min(round(params.duration_seconds / SCENE_SECONDS) or 1, total_frames)
    )
    frames = apportion(total_frames, [_spoken_weight(group) for group in groups])
    base_hue = _look_up(_HUE_WORDS, keywords)
    base_motif = _look_up(_MOTIF_WORDS, keywords)
    hue = rng.random() if base_hue is None else base_hue
    motif = rng.choice(MOTIFS) if base_motif is None else base_motif
    scenes = []
    start_frame = 0
    for index, (group, scene_frames) in enumerate(zip(groups, frames, strict=True)):
        scenes.append(
            Scene(
                index=index,
                start_seconds=start_frame / params.fps,
                duration_seconds=scene_frames / params.fps,
                narration=tuple(group),
                caption=caption(index, group, keywords),
                palette=palette((hue + rng.uniform(-0.06, 0.06)) % 1.0),
                # Half the scenes keep the prompt's motif, the rest vary it.
                motif=motif if rng.random() < 0.5 else rng.choice(MOTIFS),
                motion=_motion(rng),
                seed=rng.getrandbits(32),
            )
        )
        start_frame += scene_frames
    return SceneScript(
        prompt=prompt,
        seed=digest,
        duration_seconds=params.duration_seconds,
        fps=params.fps,
        words_per_second=WORDS_PER_SECOND,
        scenes=tuple(scenes),
    )


def split_sentences(text: str) -> list[str]:
    """Sentences by pysbd's rules (abbreviations, decimals, initials), with
    spacing normalised, wordless fragments dropped and a full stop added where
    the text just stops."""
    sentences = []
    for segment in _SEGMENTER.segment(text):
        sentence = _SPACE.sub(" ", segment).strip()
        if WORD.search(sentence):
            sentences.append(_end_sentence(sentence))
    return sentences


def word_count(text: str) -> int:
    return len(WORD.findall(text))


def prompt_keywords(prompt: str) -> list[str]:
    """The prompt's telling words, lower-cased, in order of first use; every
    word when none is telling (a prompt of short or common words)."""
    words = [word.lower() for word in WORD.findall(prompt)]
    telling = [word for word in words if len(word) >= 3 and word not in _STOPWORDS]
    return list(dict.fromkeys(telling or words))


def narration(prompt: str, keywords: list[str], budget: int, rng: random.Random) -> list[str]:
    """The prompt's sentences, then generated lines, within ``budget`` words.
    A first sentence longer than the whole budget is cut to it: a one-second
    video cannot say a paragraph."""
    sentences: list[str] = []
    words = 0
    for sentence in split_sentences(prompt):
        count = word_count(sentence)
        if words + count > budget:
            if not sentences:
                sentences.append(_truncate_words(sentence, budget))
                words = budget
            break
        sentences.append(sentence)
        words += count
    lines = list(_LINES)
    rng.shuffle(lines)
    # Ends: every line has words, so the budget runs out.
    for template in itertools.cycle(lines):
        line = template.format(
            a=rng.choice(keywords), b=rng.choice(keywords), mood=rng.choice(_MOODS)
        )
        count = word_count(line)
        if words + count > budget:
            break
        sentences.append(line)
        words += count
    return sentences


def group_sentences(sentences: list[str], scene_count: int) -> list[list[str]]:
    """``sentences`` in order, cut into at most ``scene_count`` non-empty
    groups whose word counts are as even as the cuts allow."""
    count = max(1, min(scene_count, len(sentences)))
    weights = [_spoken_weight([sentence]) for sentence in sentences]
    total = sum(weights)
    cuts = [0]
    running = [0.0]
    for weight in weights:
        running.append(running[-1] + weight)
    for group in range(1, count):
        # Leave at least one sentence for each group still to come.
        candidates = range(cuts[-1] + 1, len(sentences) - (count - group) + 1)
        target = total * group / count
        cuts.append(min(candidates, key=lambda cut: abs(running[cut] - target)))
    cuts.append(len(sentences))
    return [sentences[start:end] for start, end in itertools.pairwise(cuts)]


def apportion(total: int, weights: list[float]) -> list[int]:
    """``total`` whole units shared in proportion to ``weights``, at least one
    each, by largest remainder: the shares always add up to ``total``."""
    if total < len(weights):
        raise ValueError(f"cannot give {len(weights)} parts one of {total} units each")
    spare = total - len(weights)
    weight_sum = sum(weights)
    exact = [spare * weight / weight_sum for weight in weights]
    shares = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for index in by_remainder[: spare - sum(shares)]:
        shares[index] += 1
    return [1 + share for share in shares]


def caption(index: int, sentences: list[str], keywords: list[str]) -> str:
    """The first scene shows its first sentence (the prompt's); the others a
    chapter title from the first keyword their narration mentions."""
    if index == 0:
        return _shorten(sentences[0].rstrip("."))
    spoken = {word.lower() for word in WORD.findall(" ".join(sentences))}
    keyword = next((k for k in keywords if k in spoken), keywords[index % len(keywords)])
    return _shorten(f"{index + 1}. {keyword.capitalize()}")


def palette(hue: float) -> tuple[str, ...]:
    """Dark background, mid tone and a light complementary accent."""
    tones = ((hue, 0.16, 0.55), ((hue + 0.04) % 1.0, 0.42, 0.6), ((hue + 0.5) % 1.0, 0.78, 0.7))
    return tuple(_hex(colorsys.hls_to_rgb(h, lightness, s)) for h, lightness, s in tones)


def _motion(rng: random.Random) -> Motion:
    zoom = round(rng.uniform(1.12, 1.3), 3)
    zoom_from, zoom_to = (1.0, zoom) if rng.random() < 0.5 else (zoom, 1.0)
    return Motion(
        zoom_from=zoom_from,
        zoom_to=zoom_to,
        pan_from=(round(rng.random(), 3), round(rng.random(), 3)),
        pan_to=(round(rng.random(), 3), round(rng.random(), 3)),
    )


def _look_up(table: dict[str, _Found], keywords: list[str]) -> _Found | None:
    """The entry of the first keyword in ``table``, plurals included."""
    for keyword in keywords:
        for form in (keyword, keyword.removesuffix("s")):
            if form in table:
                return table[form]
    return None


def _spoken_weight(sentences: list[str]) -> float:
    return sum(word_count(s) + PAUSE_WORDS_PER_SENTENCE for s in sentences)


def _end_sentence(sentence: str) -> str:
    return sentence if sentence[-1] in ".!?…" else _TRAILING_PUNCTUATION.sub("", sentence) + "."


def _truncate_words(sentence: str, budget: int) -> str:
    kept: list[str] = []
    for token in sentence.split(" "):
        if word_count(" ".join([*kept, token])) > budget:
            break
        kept.append(token)
    # A first token that is itself too many words ("sea-to-sky-...") is cut by word.
    text = " ".join(kept) if kept else " ".join(WORD.findall(sentence)[:budget])
    return _TRAILING_PUNCTUATION.sub("", text).rstrip(".!?…") + "."


def _shorten(text: str) -> str:
    if len(text) <= MAX_CAPTION_CHARACTERS:
        return text
    return text[: MAX_CAPTION_CHARACTERS - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in rgb)
