"""Turn a prompt into a scene script, deterministically and without a model.

Called by :mod:`vidop_stages.script_gen.main`. Every choice (extra narration
lines, palettes, motifs, camera moves) comes from a random generator seeded
with the SHA-256 of the prompt, so the same job parameters give the same
script, byte for byte, on any machine. What the pictures show (light, place,
subjects) is read from the prompt by :mod:`vidop_stages.script_gen.looks`.

How the timeline is planned (voice_gen and video_gen run in parallel and rely
on it, see :mod:`vidop_stages.scenescript`):

1. The narration gets a word budget of :data:`WORDS_PER_SECOND` times the
   duration: a little slower than espeak-ng's default rate, which leaves room
   for pauses; in Chinese and Japanese, written without spaces, each
   character counts as a word (espeak-ng speaks a syllable a character, at
   about its pace for English words). The prompt's own sentences (cut at every
   sentence end, full-width or Arabic ones too, then by pysbd's rules) come
   first; generated lines, in English, Chinese or Arabic after the prompt's
   script, fill the rest of the budget.
2. The sentences are grouped, in order, into scenes of about
   :data:`SCENE_SECONDS` each, balancing words between scenes.
3. The job's frames (``durationSeconds * fps``) are shared out between scenes
   in proportion to their spoken words plus a pause per sentence, every scene
   getting at least one frame; so each window is sized for its narration,
   starts on a frame boundary, and the windows add up to the duration exactly.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re

import pysbd

from vidop_stages.params import WORD, JobParams, check_prompt
from vidop_stages.scenescript import Motion, Scene, SceneScript
from vidop_stages.script_gen.looks import named_subjects, read_look, vary
from vidop_stages.writing import (
    CLAUSE_MARKS,
    FULL_STOPS,
    SENTENCE_ENDS,
    UNSPACED_RANGES,
    ends_sentence,
    full_stop_for,
    is_unspaced,
    shorten,
    split_at_sentence_ends,
)

WORDS_PER_SECOND = 2.6
SCENE_SECONDS = 5.0
PAUSE_WORDS_PER_SENTENCE = 1.5
"""The pause after a sentence, counted in words when sizing a scene's window."""
MAX_CAPTION_COLUMNS = 48
"""A caption's length, a Chinese character counting as two."""

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
# Generated narration, by the prompt's language as its script tells it; {a}
# and {b} are keywords of the prompt, {mood} a word of atmosphere. Each is one
# sentence. Chinese and Arabic keywords are not words to put in a sentence
# (Chinese has no spaces to cut them by), so those lines name none.
_ENGLISH_LINES = (
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
_ENGLISH_MOODS = ("calm", "bright", "gentle", "vivid", "dreamy", "bold", "soft", "warm", "cool")
_CHINESE_LINES = (
    "画面慢慢展开。",
    "光线在四周聚拢。",
    "一切都显得那么{mood}。",
    "颜色在远处缓缓流动。",
    "时间仿佛停了下来。",
    "空气变得{mood}起来。",
    "再靠近一点看看。",
    "故事还在继续。",
)
_CHINESE_MOODS = ("安静", "明亮", "温柔", "生动", "梦幻", "柔和", "温暖", "清凉")
_ARABIC_LINES = (
    "يظهر المشهد ببطء.",
    "يتجمع الضوء في كل مكان.",
    "كل شيء يبدو {mood} هنا.",
    "تنساب الألوان في الأفق.",
    "يتوقف الزمن للحظة.",
    "انظر عن قرب.",
    "تستمر الحكاية.",
    "يا له من منظر {mood}!",
)
_ARABIC_MOODS = ("هادئ", "مشرق", "لطيف", "حالم", "دافئ", "ناعم")
_LANGUAGES = {
    "en": (_ENGLISH_LINES, _ENGLISH_MOODS),
    "zh": (_CHINESE_LINES, _CHINESE_MOODS),
    "ar": (_ARABIC_LINES, _ARABIC_MOODS),
}
_KANA = re.compile("[\u3040-\u30ff]")
_ARABIC_LETTER = re.compile("[\u0600-\u06ff]")

_SPACE = re.compile(r"\s+")
# Commas, colons and dashes (hyphen, en and em), Latin, full-width and
# Arabic, that would dangle at a cut.
_TRAILING_PUNCTUATION = re.compile(f"[\\s{re.escape(CLAUSE_MARKS)}\\-\u2013\u2014]+$")
# What a sentence is cut short by: spaces, single characters of scripts
# written without them (Han, kana, full-width forms), other runs.
_CUT_TOKEN = re.compile(f"\\s+|[{UNSPACED_RANGES}]|[^\\s{UNSPACED_RANGES}]+")
_SEGMENTER = pysbd.Segmenter(language="en", clean=False)


def plan_script(params: JobParams) -> SceneScript:
    prompt = check_prompt(params.prompt)
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    rng = random.Random(int(digest[:16], 16))
    keywords = prompt_keywords(prompt)
    budget = max(1, math.floor(params.duration_seconds * WORDS_PER_SECOND))
    look = read_look(prompt, rng)
    sentences = narration(prompt, keywords, budget, rng)
    total_frames = params.total_frames
    groups = group_sentences(
        sentences, min(round(params.duration_seconds / SCENE_SECONDS) or 1, total_frames)
    )
    frames = apportion(total_frames, [_spoken_weight(group) for group in groups])
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
                palette=vary(look.palette, rng),
                # The subjects this scene's narration names, else the prompt's.
                motifs=look.motifs_with(named_subjects(" ".join(group)) or look.subjects),
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
    """Sentences cut after every sentence end of any script (``。``, ``؟``,
    ``।`` need no space after them), then by pysbd's rules (abbreviations,
    decimals, initials), with spacing normalised, wordless fragments dropped
    and a full stop of the sentence's script added where the text just stops."""
    sentences = []
    for piece in split_at_sentence_ends(text):
        for segment in _SEGMENTER.segment(piece):
            sentence = _SPACE.sub(" ", segment).strip()
            if WORD.search(sentence):
                sentences.append(_end_sentence(sentence))
    return sentences


def word_count(text: str) -> int:
    """Words as speech takes time: runs of letters or digits, where each
    character of a script written without spaces (Chinese, Japanese) counts
    as one word."""
    unspaced = sum(1 for character in text if is_unspaced(character) and WORD.match(character))
    spaced = "".join(" " if is_unspaced(character) else character for character in text)
    return len(WORD.findall(spaced)) + unspaced


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
    templates, moods = _LANGUAGES[language_of(prompt)]
    lines = list(templates)
    rng.shuffle(lines)
    # Ends: every line has words, so the budget runs out.
    for template in itertools.cycle(lines):
        line = template.format(
            a=rng.choice(keywords), b=rng.choice(keywords), mood=rng.choice(moods)
        )
        count = word_count(line)
        if words + count > budget:
            break
        sentences.append(line)
        words += count
    return sentences


def language_of(prompt: str) -> str:
    """``zh`` for a prompt in Han characters without kana, ``ar`` for one
    mostly in Arabic letters, ``en`` otherwise (Japanese too: English lines
    beat Chinese ones there)."""
    letters = [character for character in prompt if WORD.match(character)]
    if _KANA.search(prompt):
        return "en"
    if sum(map(is_unspaced, letters)) * 2 > len(letters):
        return "zh"
    if sum(bool(_ARABIC_LETTER.match(c)) for c in letters) * 2 > len(letters):
        return "ar"
    return "en"


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
        return shorten(sentences[0].rstrip(FULL_STOPS), MAX_CAPTION_COLUMNS)
    spoken = {word.lower() for word in WORD.findall(" ".join(sentences))}
    keyword = next((k for k in keywords if k in spoken), keywords[index % len(keywords)])
    return shorten(f"{index + 1}. {keyword.capitalize()}", MAX_CAPTION_COLUMNS)


def _motion(rng: random.Random) -> Motion:
    zoom = round(rng.uniform(1.12, 1.3), 3)
    zoom_from, zoom_to = (1.0, zoom) if rng.random() < 0.5 else (zoom, 1.0)
    return Motion(
        zoom_from=zoom_from,
        zoom_to=zoom_to,
        pan_from=(round(rng.random(), 3), round(rng.random(), 3)),
        pan_to=(round(rng.random(), 3), round(rng.random(), 3)),
    )


def _spoken_weight(sentences: list[str]) -> float:
    return sum(word_count(s) + PAUSE_WORDS_PER_SENTENCE for s in sentences)


def _end_sentence(sentence: str) -> str:
    if ends_sentence(sentence):
        return sentence
    kept = _TRAILING_PUNCTUATION.sub("", sentence)
    return kept + full_stop_for(kept)


def _truncate_words(sentence: str, budget: int) -> str:
    """The longest start of ``sentence`` that is at most ``budget`` words,
    cut at a space or between two characters of a script without spaces."""
    text = ""
    for token in _CUT_TOKEN.findall(sentence):
        if word_count(text + token) > budget:
            break
        text += token
    # A first token that is itself too many words ("sea-to-sky-...") is cut by word.
    if not text:
        text = " ".join(WORD.findall(sentence)[:budget])
    text = _TRAILING_PUNCTUATION.sub("", text).rstrip(SENTENCE_ENDS)
    return text + full_stop_for(text)
