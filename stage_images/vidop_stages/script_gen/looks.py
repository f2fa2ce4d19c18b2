"""What a video looks like, read from its prompt: the light (time of day,
weather), the place, and the subjects to draw, by small keyword tables.

Called by :mod:`vidop_stages.script_gen.planner`, which turns the result into
each scene's palette and motifs; video_gen's keyframes draw the motifs by name
(:mod:`vidop_stages.video_gen.keyframes` has a painter for every name here).
The tables hold English words and a few in Spanish, French, German, Chinese
and Arabic: words of scripts written with spaces between words match whole
words (a plural ``s`` or ``es`` too), the others (Chinese, Arabic, whose words
take attached prefixes) match anywhere in the text. A prompt that names
nothing here still gets a light and a place, chosen by the prompt's seed.
Pure.
"""

from __future__ import annotations

import colorsys
import random
from dataclasses import dataclass

from vidop_stages.params import WORD
from vidop_stages.writing import is_unspaced

Colour = tuple[float, float, float]
"""RGB, each 0..1."""


@dataclass(frozen=True)
class Light:
    sky_top: str
    horizon: str
    accent: str
    """Sunlight, moonlight, highlights."""
    ground_tint: float
    """How far the ground takes on the horizon's colour (0..1)."""
    ground_brightness: float
    sky_motifs: tuple[str, ...]
    weather_motifs: tuple[str, ...] = ()
    """Drawn last, over everything (rain, snowfall)."""


@dataclass(frozen=True)
class Place:
    ground: str
    terrain_motifs: tuple[str, ...]


@dataclass(frozen=True)
class Look:
    light: str
    place: str
    palette: tuple[str, str, str, str]
    """Sky at the top, sky at the horizon, ground, accent."""
    motifs: tuple[str, ...]
    """Sky, terrain, then weather, in drawing order; subjects go between
    terrain and weather (:meth:`motifs_with`)."""
    subjects: tuple[str, ...]
    """The subjects the prompt names, in the prompt's order."""

    def motifs_with(self, subjects: tuple[str, ...]) -> tuple[str, ...]:
        weather = {m for name in LIGHTS.values() for m in name.weather_motifs}
        back = tuple(m for m in self.motifs if m not in weather)
        front = tuple(m for m in self.motifs if m in weather)
        # The big wave is scenery for the others to stand on: drawn first.
        return back + tuple(sorted(subjects, key=lambda subject: subject != "wave")) + front


LIGHTS: dict[str, Light] = {
    "day": Light("#3f86d4", "#bfe2f4", "#fff3b0", 0.1, 1.0, ("sun", "clouds")),
    "sunset": Light("#35205a", "#ff8f4a", "#ffd36e", 0.35, 0.6, ("setting_sun", "clouds")),
    "night": Light("#060a1c", "#1d2d5c", "#f3efc4", 0.3, 0.3, ("stars", "moon")),
    "space": Light("#04010d", "#24104a", "#cfa8ff", 0.5, 0.25, ("stars", "planet")),
    "storm": Light("#2c333d", "#7d8a97", "#dfe7ef", 0.3, 0.6, ("clouds",), ("rain",)),
    "snow": Light("#8fb0cf", "#e6eef6", "#ffffff", 0.2, 1.15, ("clouds",), ("snowfall",)),
}
PLACES: dict[str, Place] = {
    "meadow": Place("#5f9e4a", ("hills",)),
    "sea": Place("#1766a8", ("sea",)),
    "forest": Place("#2f6a36", ("hills", "forest")),
    "mountains": Place("#5b7c58", ("mountains",)),
    "desert": Place("#d6a25e", ("dunes",)),
    "city": Place("#2b2d42", ("city",)),
    "snowfield": Place("#eef3f8", ("mountains",)),
}
SUBJECTS = (
    "cat", "dog", "bird", "car", "house", "tree", "boat", "fish", "flower", "rocket",
    "robot", "wave",
)  # fmt: skip

# Keywords; the first light, place and every subject found count.
_LIGHT_WORDS = {
    "sunset": "sunset sunrise dusk dawn evening twilight atardecer amanecer crepúsculo "
    "coucher aube soir sonnenuntergang sonnenaufgang abend 日落 夕阳 黄昏 日出 晚霞 夕日 "
    "غروب شروق الفجر المساء",
    "night": "night midnight moon moonlight star starry dark noche luna estrella nuit lune étoile "
    "nacht mond stern 夜 月亮 星 ليل ليلة قمر نجوم نجمة",
    "space": "space galaxy planet cosmos universe astronaut rocket espacio galaxia espace "
    "galaxie weltall weltraum 太空 宇宙 银河 星系 火箭 فضاء مجرة كوكب صاروخ",
    "storm": "storm stormy rain rainy thunder lightning tempest tormenta lluvia orage pluie "
    "gewitter regen sturm 暴风 雨 雷 عاصفة مطر رعد",
    "snow": "snow snowy winter blizzard nieve invierno neige hiver schnee 雪 冬 ثلج شتاء",
    "day": "day sun sunny morning noon día sol mañana jour soleil matin tag sonne morgen "
    "白天 太阳 阳光 早晨 نهار شمس صباح",
}
_PLACE_WORDS = {
    "sea": "sea ocean beach wave surf surfing shore coast island mar océano playa ola mer "
    "océan plage vague meer ozean strand welle 海 海浪 巨浪 波浪 冲浪 沙滩 بحر محيط شاطئ موج أمواج",
    "forest": "forest jungle woods wood bosque selva forêt bois wald dschungel 森林 树林 丛林 "
    "غابة أدغال",
    "mountains": "mountain hill peak alps cliff volcano montaña colina montagne colline berg "
    "gipfel 山 峰 火山 جبل جبال بركان",
    "desert": "desert sand dune cactus desierto arena désert sable wüste sand 沙漠 沙丘 "
    "صحراء رمال كثبان",
    "city": "city street building skyline skyscraper neon town downtown ciudad calle ville "
    "rue stadt straße 城市 街道 大楼 都市 霓虹 مدينة شارع مبنى ناطحة",
    "snowfield": "glacier arctic antarctic tundra iceberg polar glaciar glacier gletscher "
    "冰川 北极 南极 冰山 جليد القطب",
}
_SUBJECT_WORDS = {
    "cat": "cat kitten kitty gato chat chaton katze 猫 قطة قطط",
    # Foxes and wolves are drawn as the dog: four legs, a tail, pointed ears.
    "dog": "dog puppy fox wolf perro zorro lobo chien renard loup hund fuchs "
    "狗 犬 狐狸 狼 كلب ثعلب ذئب",
    "bird": "bird seagull eagle parrot owl pájaro ave oiseau vogel 鸟 鸥 鹰 طائر طيور عصفور نسر",
    "car": "car automobile truck coche carro voiture auto wagen 车 汽车 سيارة",
    "house": "house home cottage cabin village casa maison haus hütte 房子 房屋 小屋 村庄 بيت منزل",
    "tree": "tree palm árbol arbre baum 树 شجرة أشجار نخلة",
    "boat": "boat ship sail sailboat yacht barco bateau boot schiff 船 帆 قارب سفينة",
    "fish": "fish whale dolphin shark pez ballena poisson baleine fisch wal 鱼 鲸 海豚 "
    "سمك سمكة حوت",
    "flower": "flower rose tulip blossom garden flor fleur rose blume 花 زهرة زهور",
    "rocket": "rocket spaceship cohete fusée rakete 火箭 飞船 صاروخ",
    "robot": "robot android droid 机器人 روبوت",
    "wave": "wave surf surfing ola vague welle 海浪 巨浪 波浪 浪花 冲浪 موج أمواج موجة",
}
# A place goes with a light when the prompt names no light (a desert is sunny).
_DEFAULT_LIGHT = {"snowfield": "snow", "city": "night"}
_WEATHER_LIGHTS = ("storm", "snow")
"""Lights that are weather: a time of day named beside one wins the sky."""
_UNNAMED_LIGHTS = ("day", "day", "sunset")
_UNNAMED_PLACES = ("meadow", "meadow", "sea", "mountains", "forest")
_MAX_SUBJECTS = 3


def read_look(prompt: str, rng: random.Random) -> Look:
    """The prompt's light, place and subjects; a light or place it does not
    name is chosen with ``rng`` (seeded by the prompt, so still the same for
    the same prompt)."""
    # The time of day sets the sky; weather named beside it falls over that
    # sky ("snow at night": a night sky, snowfall).
    weather = _first_named({k: _LIGHT_WORDS[k] for k in _WEATHER_LIGHTS}, prompt)
    light = _first_named(
        {k: w for k, w in _LIGHT_WORDS.items() if k not in _WEATHER_LIGHTS}, prompt
    )
    extra_weather: tuple[str, ...] = ()
    if light is None:
        light = weather
    elif weather is not None:
        extra_weather = LIGHTS[weather].weather_motifs
    place = _first_named(_PLACE_WORDS, prompt)
    if place is None and "snow" in (light, weather):
        place = "snowfield"  # snow lies where it falls
    if place is None:
        place = rng.choice(_UNNAMED_PLACES)
    if light is None:
        light = _DEFAULT_LIGHT.get(place) or rng.choice(_UNNAMED_LIGHTS)
    subjects = named_subjects(prompt)
    if place == "city" and "house" in subjects:
        subjects = tuple(s for s in subjects if s != "house")  # the skyline has them
    shade = LIGHTS[light]
    motifs = shade.sky_motifs + PLACES[place].terrain_motifs + shade.weather_motifs + extra_weather
    return Look(light, place, palette_for(light, place), motifs, subjects)


def named_subjects(text: str) -> tuple[str, ...]:
    """The subjects ``text`` names, in the order it names them, at most three."""
    found = [
        (position, subject)
        for subject, words in _SUBJECT_WORDS.items()
        if (position := _position(words, text)) is not None
    ]
    return tuple(subject for _, subject in sorted(found))[:_MAX_SUBJECTS]


def palette_for(light: str, place: str) -> tuple[str, str, str, str]:
    shade = LIGHTS[light]
    horizon = _colour(shade.horizon)
    red, green, blue = _mix(_colour(PLACES[place].ground), horizon, shade.ground_tint)
    bright = shade.ground_brightness
    ground = _hex((min(1.0, red * bright), min(1.0, green * bright), min(1.0, blue * bright)))
    return shade.sky_top, shade.horizon, ground, shade.accent


def vary(palette: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    """``palette`` with its hue turned and its lightness moved a little, the
    same way for every colour: scenes of one video look related, not equal."""
    turn, lift = rng.uniform(-0.025, 0.025), rng.uniform(-0.04, 0.04)
    varied = []
    for colour in palette:
        hue, lightness, saturation = colorsys.rgb_to_hls(*_colour(colour))
        lightness = min(1.0, max(0.0, lightness + lift))
        varied.append(_hex(colorsys.hls_to_rgb((hue + turn) % 1.0, lightness, saturation)))
    return tuple(varied)


def _first_named(table: dict[str, str], text: str) -> str | None:
    found = [
        (position, name)
        for name, words in table.items()
        if (position := _position(words, text)) is not None
    ]
    return min(found)[1] if found else None


def _position(words: str, text: str) -> int | None:
    """Where ``text`` first says one of ``words`` (space-separated), or None."""
    lowered = text.lower()
    # The first position of every word of the text.
    tokens: dict[str, int] = {}
    for match in WORD.finditer(lowered):
        tokens.setdefault(match.group(), match.start())
    positions = []
    for word in words.split():
        if _matches_inside_words(word):
            index = lowered.find(word)
        else:
            forms = (word, word + "s", word + "es")
            index = min((tokens[form] for form in forms if form in tokens), default=-1)
        if index >= 0:
            positions.append(index)
    return min(positions, default=None)


def _matches_inside_words(word: str) -> bool:
    """Chinese has no spaces to find words by, and Arabic attaches "the",
    "and" and "with" to the word after them."""
    return is_unspaced(word[0]) or "\u0600" <= word[0] <= "\u06ff"


def _colour(value: str) -> Colour:
    number = int(value.removeprefix("#"), 16)
    return (number >> 16 & 0xFF) / 255, (number >> 8 & 0xFF) / 255, (number & 0xFF) / 255


def _mix(first: Colour, second: Colour, share: float) -> Colour:
    return tuple(a + (b - a) * share for a, b in zip(first, second, strict=True))  # type: ignore[return-value]


def _hex(rgb: Colour) -> str:
    return "#" + "".join(f"{round(min(1.0, max(0.0, c)) * 255):02x}" for c in rgb)
