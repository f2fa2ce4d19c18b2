"""voice_gen's pure parts: which voices exist, how speech is fitted into a
scene's window, and the subtitles cut from where it was placed."""

# Full-width punctuation and letters that look Latin are what these tests are about.
# ruff: noqa: RUF001, RUF003

from array import array
from pathlib import Path

import pytest
import structlog

from vidop_stages.errors import InvalidInput
from vidop_stages.params import JobParams
from vidop_stages.script_gen.planner import plan_script
from vidop_stages.voice_gen.fitting import (
    MAX_RATE,
    NATURAL_MAX_RATE,
    NORMAL_RATE,
    faster_rate,
    mix,
    place_sentences,
    speedup_needed,
    trim_silence,
)
from vidop_stages.voice_gen.main import narrate
from vidop_stages.voice_gen.subtitles import Cue, format_srt, format_timestamp, wrap
from vidop_stages.voice_gen.voices import InstalledVoices, check_voice, parse_voice_list

RATE = 1000  # samples per second: keeps the arithmetic readable

VOICES = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  en-gb-x-rp      --/M      English_(Received_Pronunciation) gmw/en-GB-x-rp       (en-gb 4)(en 5)
 5  de              --/M      German             gmw/de
"""
VARIANTS = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/M      Alex               !v/Alex
 5  variant         --/F      female3            !v/f3
"""


def test_voice_list_gives_languages_with_their_aliases_and_variants() -> None:
    installed = parse_voice_list(VOICES, VARIANTS)

    assert installed.languages == {"af", "en-gb", "en-us", "en-gb-x-rp", "de", "en"}
    assert installed.variants == {"alex", "f3"}


@pytest.mark.parametrize("voice", ["en", "en-us", "EN-US", "de", "en+f3", "en-gb+Alex"])
def test_known_voices_pass(voice: str) -> None:
    assert check_voice(voice, parse_voice_list(VOICES, VARIANTS)) == voice


@pytest.mark.parametrize(
    ("voice", "reason"),
    [("klingon", "not an espeak-ng voice"), ("en+robot", "no variant 'robot'"), ("", "not an")],
)
def test_unknown_voices_are_invalid_input(voice: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        check_voice(voice, parse_voice_list(VOICES, VARIANTS))


def test_unknown_voice_message_suggests_real_ones() -> None:
    with pytest.raises(InvalidInput, match="en, en-gb"):
        check_voice("xx", InstalledVoices(frozenset({"en", "en-gb", "de"}), frozenset()))


def test_silence_around_speech_is_trimmed() -> None:
    samples = array("h", [0, 5, -3, 2000, -1500, 0, 900, 10, 0, 0])

    assert trim_silence(samples).tolist() == [2000, -1500, 0, 900]
    assert trim_silence(array("h", [1, 2, 3])).tolist() == [1, 2, 3]  # nothing audible: kept


def test_speech_that_fits_needs_no_speedup() -> None:
    # 2 s window, 1.2 s of speech and two 50 ms pauses.
    assert speedup_needed(2000, [600, 600], RATE) == pytest.approx(1200 / 1900)
    assert speedup_needed(2000, [], RATE) == 0


def test_speech_that_overruns_asks_for_the_right_speedup() -> None:
    speedup = speedup_needed(1000, [900, 600], RATE)

    assert speedup == pytest.approx(1500 / 900)
    # 175 wpm * 1.667 * margin, rounded up; then from there, capped.
    assert faster_rate(NORMAL_RATE, speedup, NATURAL_MAX_RATE) == 301
    assert faster_rate(NORMAL_RATE, 10.0, NATURAL_MAX_RATE) == NATURAL_MAX_RATE
    assert faster_rate(NATURAL_MAX_RATE, 2.0, MAX_RATE) == 927
    assert faster_rate(NATURAL_MAX_RATE, 100.0, MAX_RATE) == MAX_RATE
    assert faster_rate(NORMAL_RATE, 1.0, NATURAL_MAX_RATE) > NORMAL_RATE


def test_placement_keeps_lead_in_and_pauses_when_there_is_room() -> None:
    placements = place_sentences(3000, [800, 700], RATE)

    assert [(p.offset, p.length) for p in placements] == [(250, 800), (1400, 700)]


def test_placement_shrinks_pauses_before_cutting_speech() -> None:
    # 1.9 s of speech in 2 s: 100 ms of room for a 250 ms lead-in and a 350 ms gap.
    placements = place_sentences(2000, [1000, 900], RATE)

    assert [p.length for p in placements] == [1000, 900]
    assert placements[0].offset == 41  # 250 * 100/600
    assert placements[1].offset == 41 + 1000 + 58  # 350 * 100/600
    assert placements[1].offset + placements[1].length <= 2000


def test_placement_cuts_only_what_cannot_fit() -> None:
    placements = place_sentences(1000, [700, 400], RATE)

    assert [(p.offset, p.length) for p in placements] == [(0, 700), (700, 300)]


def test_mix_lays_pieces_into_an_exact_length_track() -> None:
    track = mix(10, [(1, array("h", [5, 6])), (7, array("h", [9]))])

    assert track.tolist() == [0, 5, 6, 0, 0, 0, 0, 9, 0, 0]
    with pytest.raises(ValueError, match="overrun"):
        mix(4, [(3, array("h", [1, 2]))])


def test_timestamps_are_srt_style() -> None:
    assert format_timestamp(0) == "00:00:00,000"
    assert format_timestamp(3.2506) == "00:00:03,251"
    assert format_timestamp(3725.0999) == "01:02:05,100"


def test_srt_has_one_numbered_cue_per_sentence_at_its_timing() -> None:
    cues = [Cue(0.25, 2.447, "A cat surfs."), Cue(3.5, 5.0, "The crowd\n\ncheers!")]

    assert format_srt(cues) == (
        "1\n00:00:00,250 --> 00:00:02,447\nA cat surfs.\n"
        "\n"
        "2\n00:00:03,500 --> 00:00:05,000\nThe crowd cheers!\n"
    )


def test_long_lines_wrap_at_spaces_into_even_lines() -> None:
    text = "A cat surfing a giant wave at sunset while the whole crowd on the beach cheers loudly."

    assert wrap(text) == [
        "A cat surfing a giant wave at",
        "sunset while the whole crowd",
        "on the beach cheers loudly.",
    ]
    assert wrap("Short enough.") == ["Short enough."]


def test_chinese_wraps_between_characters_by_width_never_before_a_closing_mark() -> None:
    # 34 characters, 68 columns: two lines of at most 21 characters.
    text = "日落时，一只猫在巨浪上冲浪，海滩上的人群在欢呼，大家都看得目不转睛。"

    assert wrap(text) == [
        "日落时，一只猫在巨浪上冲浪，海滩上",
        "的人群在欢呼，大家都看得目不转睛。",
    ]
    # The break that would start a line with "，" moves before the character.
    assert wrap("一二三四五六七八九十一二三四五六七八九十一，二三四") == [
        "一二三四五六七八九十一二三",
        "四五六七八九十一，二三四",
    ]


def _subtitles(prompt: str, voice: str, workdir: Path) -> list[str]:
    """The text lines of the SRT voice_gen makes for a 10 s job: espeak-ng
    speaks, the cues come from where the sentences were placed."""
    script = plan_script(JobParams(prompt, 10, 320, 180, 24, voice))
    srt = format_srt(narrate(script, voice, workdir, structlog.get_logger()).cues)
    return [line for line in srt.splitlines() if line and "-->" not in line and not line.isdigit()]


def test_chinese_subtitles_keep_their_own_punctuation(tmp_path: Path) -> None:
    assert _subtitles("日落时，一只猫在巨浪上冲浪。海滩上的人群在欢呼", "cmn", tmp_path) == [
        "日落时，一只猫在巨浪上冲浪。",
        "海滩上的人群在欢呼。",
    ]


def test_arabic_subtitles_keep_their_own_punctuation(tmp_path: Path) -> None:
    prompt = "هل ترى القطة على الموجة عند غروب الشمس؟ الجمهور على الشاطئ يهتف"

    assert _subtitles(prompt, "ar", tmp_path)[:2] == [
        "هل ترى القطة على الموجة عند غروب الشمس؟",
        "الجمهور على الشاطئ يهتف.",
    ]
