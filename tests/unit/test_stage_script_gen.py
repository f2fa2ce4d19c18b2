"""script_gen's planner: a deterministic script whose timeline voice_gen and
video_gen can both keep to without seeing each other."""

# Full-width punctuation and letters that look Latin are what these tests are about.
# ruff: noqa: RUF001

import random

import pytest

from vidop_stages.errors import InvalidInput
from vidop_stages.params import JobParams
from vidop_stages.scenescript import SceneScript
from vidop_stages.script_gen.looks import LIGHTS, PLACES, SUBJECTS, named_subjects, read_look
from vidop_stages.script_gen.planner import (
    apportion,
    group_sentences,
    language_of,
    narration,
    plan_script,
    prompt_keywords,
    split_sentences,
    word_count,
)

PROMPT = "A cat surfing a giant wave at sunset. The crowd on the beach cheers!"


def _params(prompt: str = PROMPT, duration: int = 20, fps: int = 24) -> JobParams:
    return JobParams(prompt, duration, 1280, 720, fps, "en")


def test_same_prompt_gives_the_same_script_byte_for_byte() -> None:
    assert plan_script(_params()).to_json() == plan_script(_params()).to_json()


def test_different_prompts_give_different_scripts() -> None:
    first = plan_script(_params())
    second = plan_script(_params("A robot walks through a neon city at night."))

    assert first.seed != second.seed
    assert first.sentences != second.sentences
    assert [s.palette for s in first.scenes] != [s.palette for s in second.scenes]


@pytest.mark.parametrize(("duration", "fps"), [(1, 1), (1, 24), (7, 30), (20, 24), (600, 60)])
def test_timeline_tiles_the_duration_on_frame_boundaries(duration: int, fps: int) -> None:
    script = plan_script(_params(duration=duration, fps=fps))

    total = sum(scene.duration_seconds for scene in script.scenes)
    assert total == pytest.approx(duration)
    assert script.scenes[0].start_seconds == 0
    for scene, following in zip(script.scenes, script.scenes[1:], strict=False):
        assert following.start_seconds == pytest.approx(
            scene.start_seconds + scene.duration_seconds
        )
    for start, end in script.windows(fps):
        assert end > start
    assert script.windows(fps)[-1][1] == duration * fps


def test_windows_survive_the_json_round_trip_exactly() -> None:
    script = plan_script(_params(duration=20, fps=24))
    reloaded = SceneScript.from_json(script.to_json())

    assert reloaded.to_json() == script.to_json()
    for rate in (24, 22050, 48000):
        assert reloaded.windows(rate) == script.windows(rate)
        edges = [start for start, _ in reloaded.windows(rate)] + [20 * rate]
        assert [end for _, end in reloaded.windows(rate)] == edges[1:]


def test_scenes_are_sized_by_their_narration() -> None:
    script = plan_script(_params(duration=60))
    words = [sum(word_count(s) for s in scene.narration) for scene in script.scenes]
    durations = [scene.duration_seconds for scene in script.scenes]

    # The scene with the most words gets the longest window.
    assert durations.index(max(durations)) == words.index(max(words))
    assert len(script.scenes) == 12  # about five seconds each


def test_narration_starts_with_the_prompt_and_fits_the_word_budget() -> None:
    script = plan_script(_params(duration=20))

    assert script.sentences[:2] == [
        "A cat surfing a giant wave at sunset.",
        "The crowd on the beach cheers!",
    ]
    assert sum(word_count(s) for s in script.sentences) <= 20 * script.words_per_second


def test_a_prompt_longer_than_the_video_is_cut_to_what_fits() -> None:
    long_prompt = "One two three four five six seven eight nine ten eleven twelve, thirteen."
    script = plan_script(_params(long_prompt, duration=2))

    assert script.sentences == ["One two three four five."]


def test_prompt_without_words_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="no words"):
        plan_script(_params("🎬 ... !!! —"))


def test_sentence_splitting_follows_rules_not_every_full_stop() -> None:
    assert split_sentences("Dr. Smith meets Mr. Jones at 3.5 km. Then   they surf!  🎉") == [
        "Dr. Smith meets Mr. Jones at 3.5 km.",
        "Then they surf!",
    ]
    assert split_sentences("no punctuation at all") == ["no punctuation at all."]
    assert split_sentences("trailing comma,") == ["trailing comma."]


def test_keywords_skip_common_words_but_never_leave_none() -> None:
    assert prompt_keywords("The cat and the wave, the CAT jumps") == ["cat", "wave", "jumps"]
    assert prompt_keywords("a b a") == ["a", "b"]


def test_generated_lines_use_the_keywords() -> None:
    lines = narration("Surf.", ["otter", "kelp"], 40, random.Random(1))

    assert lines[0] == "Surf."
    assert len(lines) > 3
    # A few lines speak only of the mood; most name a keyword.
    generated = lines[1:]
    assert sum("otter" in line or "kelp" in line for line in generated) > len(generated) / 2
    assert sum(word_count(line) for line in lines) <= 40


def test_sentences_are_grouped_in_order_into_balanced_scenes() -> None:
    sentences = ["a b c d e f.", "g.", "h i j k l m.", "n o.", "p q r."]

    groups = group_sentences(sentences, 3)

    assert [s for group in groups for s in group] == sentences
    assert len(groups) == 3
    assert all(groups)
    assert group_sentences(sentences, 10) == [[s] for s in sentences]


def test_apportion_shares_every_unit_and_at_least_one_each() -> None:
    assert apportion(10, [1, 1]) == [5, 5]
    assert apportion(480, [9.5, 20.0, 7.5, 12.0]) == [93, 195, 74, 118]
    assert sum(apportion(7, [100, 1, 1])) == 7
    assert apportion(3, [100, 1, 1]) == [1, 1, 1]
    with pytest.raises(ValueError):
        apportion(2, [1, 1, 1])


def test_scene_visuals_are_well_formed() -> None:
    script = plan_script(_params("A night sky full of stars over the ocean.", duration=60))

    for scene in script.scenes:
        assert len(scene.palette) == 4
        assert all(len(colour) == 7 and colour.startswith("#") for colour in scene.palette)
        assert scene.motifs == ("stars", "moon", "sea")
        assert min(scene.motion.zoom_from, scene.motion.zoom_to) >= 1.0
        assert max(scene.motion.zoom_from, scene.motion.zoom_to) <= 1.3
        assert all(0 <= v <= 1 for v in (*scene.motion.pan_from, *scene.motion.pan_to))
    assert script.scenes[0].caption == "A night sky full of stars over the ocean"


def test_script_from_another_timeline_is_refused() -> None:
    script = plan_script(_params(duration=20, fps=24))

    script.check_planned_for(20, 24)
    with pytest.raises(ValueError, match="planned for 20 s at 24 fps"):
        script.check_planned_for(20, 30)


def test_malformed_script_is_refused() -> None:
    with pytest.raises(ValueError, match="version 2"):
        SceneScript.from_json('{"version": 99}')
    with pytest.raises(ValueError, match="no scenes"):
        broken = plan_script(_params()).to_json().replace('"scenes": [', '"scenes": [], "x": [', 1)
        SceneScript.from_json(broken)


CHINESE = "日落时，一只猫在巨浪上冲浪。海滩上的人群在欢呼！"
ARABIC = "قطة تركب موجة عملاقة عند غروب الشمس. الجمهور على الشاطئ يهتف!"


def test_full_width_and_arabic_sentence_ends_split_and_are_kept() -> None:
    assert split_sentences(CHINESE + "“真的吗？”他问") == [
        "日落时，一只猫在巨浪上冲浪。",
        "海滩上的人群在欢呼！",
        "“真的吗？”",
        "他问。",  # a Chinese full stop where the text just stops, never "."
    ]
    assert split_sentences("هل ترى القطة؟ نعم، أراها") == ["هل ترى القطة؟", "نعم، أراها."]
    assert split_sentences("मैं घर जा रहा हूँ। अब") == ["मैं घर जा रहा हूँ।", "अब।"]
    assert split_sentences("一只猫在冲浪，") == ["一只猫在冲浪。"]


def test_chinese_counts_a_character_a_word_and_is_cut_between_characters() -> None:
    assert word_count("一只猫在巨浪上冲浪。") == 9
    assert word_count("GPU加速") == 3
    script = plan_script(_params("一只猫在巨浪上冲浪，海滩上的人群在欢呼", duration=1))

    assert script.sentences == ["一只。"]


@pytest.mark.parametrize(
    ("prompt", "language"),
    [(PROMPT, "en"), (CHINESE, "zh"), (ARABIC, "ar"), ("猫がサーフィンをする。", "en")],
)
def test_generated_lines_speak_the_prompts_language(prompt: str, language: str) -> None:
    assert language_of(prompt) == language


def test_a_chinese_prompt_makes_a_chinese_script() -> None:
    script = plan_script(_params(CHINESE, duration=10))

    assert script.sentences == ["日落时，一只猫在巨浪上冲浪。", "海滩上的人群在欢呼！"]
    assert [scene.caption for scene in script.scenes] == [
        "日落时，一只猫在巨浪上冲浪",
        "2. 海滩上的人群在欢呼",
    ]
    assert script.scenes[0].motifs == ("setting_sun", "clouds", "sea", "wave", "cat")


def test_an_arabic_prompt_makes_an_arabic_script() -> None:
    script = plan_script(_params(ARABIC, duration=10))

    assert script.sentences == [
        "قطة تركب موجة عملاقة عند غروب الشمس.",
        "الجمهور على الشاطئ يهتف!",
        "كل شيء يبدو هادئ هنا.",
        "تنساب الألوان في الأفق.",
        "يتجمع الضوء في كل مكان.",
    ]
    assert script.scenes[0].caption == "قطة تركب موجة عملاقة عند غروب الشمس"
    assert script.scenes[0].motifs == ("setting_sun", "clouds", "sea", "wave", "cat")


@pytest.mark.parametrize(
    ("prompt", "light", "place", "subjects"),
    [
        (PROMPT, "sunset", "sea", ("cat", "wave")),
        ("A robot walks through a neon city at night.", "night", "city", ("robot",)),
        (
            "Snowy mountains with a little house and a red car.",
            "snow",
            "mountains",
            ("house", "car"),
        ),
        ("Un chat dans la forêt sous la lune.", "night", "forest", ("cat",)),
        ("沙漠里的火箭", "space", "desert", ("rocket",)),
        ("غابة في الليل", "night", "forest", ()),
        # The time of day wins the sky over weather, which falls over it; a
        # fox is drawn as the dog.
        ("A red fox running through snow at night.", "night", "snowfield", ("dog",)),
    ],
)
def test_the_look_follows_the_words_of_the_prompt(
    prompt: str, light: str, place: str, subjects: tuple[str, ...]
) -> None:
    look = read_look(prompt, random.Random(0))

    assert (look.light, look.place, look.subjects) == (light, place, subjects)


def test_a_prompt_naming_nothing_still_gets_a_light_and_a_place() -> None:
    looks = {read_look("Anything at all.", random.Random(seed)) for seed in range(20)}

    assert all(look.light in LIGHTS and look.place in PLACES for look in looks)
    assert all(look.subjects == () for look in looks)
    assert len({(look.light, look.place) for look in looks}) > 1


def test_subjects_match_whole_words_in_spaced_scripts() -> None:
    assert named_subjects("A catalogue of cars") == ("car",)
    assert named_subjects("Cats, dogs and birds") == ("cat", "dog", "bird")
    assert set(SUBJECTS) >= {"cat", "bird", "car", "house", "tree"}


def test_weather_named_beside_a_time_of_day_falls_over_its_sky() -> None:
    look = read_look("Snow at night.", random.Random(0))
    assert look.light == "night" and "snowfall" in look.motifs and "moon" in look.motifs
    stormy = read_look("A storm at sunset over the sea.", random.Random(0))
    assert (stormy.light, stormy.place) == ("sunset", "sea") and "rain" in stormy.motifs
