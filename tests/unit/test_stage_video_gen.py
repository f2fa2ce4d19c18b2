"""video_gen's parts: the encoder choice, the Ken Burns expressions and
fades, the one ffmpeg command that renders every scene, the keyframes and
their titles; and what ffmpeg really makes of them (frame counts, the look of
decoded frames)."""

# Full-width punctuation and letters that look Latin are what these tests are about.
# ruff: noqa: RUF001

import dataclasses
import io
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageStat

from vidop_stages.media import probe
from vidop_stages.params import JobParams
from vidop_stages.scenescript import Motion, Scene
from vidop_stages.script_gen.looks import LIGHTS, PLACES, SUBJECTS
from vidop_stages.script_gen.planner import plan_script
from vidop_stages.tools import run_tool
from vidop_stages.video_gen.encoding import (
    NVENC,
    X264,
    SceneClip,
    choose_encoder,
    encoder_options,
    fade_frames,
    listed_encoders,
    nvenc_probe_command,
    render_command,
    zoompan_filter,
)
from vidop_stages.video_gen.fonts import draw_title, draws_glyphs, font_for, has_raqm, split_runs
from vidop_stages.video_gen.keyframes import MOTIFS, draw_keyframe

ENCODERS = """\
Encoders:
 V..... = Video
 A..... = Audio
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)
 A....D aac                  AAC (Advanced Audio Coding)
 S..... mov_text             3GPP Timed Text subtitle
"""
MOTION = Motion(zoom_from=1.0, zoom_to=1.2, pan_from=(0.0, 0.5), pan_to=(1.0, 0.25))


def test_encoders_are_read_from_ffmpegs_listing() -> None:
    assert listed_encoders(ENCODERS) == {"libx264", NVENC, "aac", "mov_text"}


def test_nvenc_only_when_listed_and_the_probe_encode_worked() -> None:
    assert choose_encoder({X264, NVENC}, nvenc_probe_succeeded=True) == NVENC
    # ffmpeg builds list NVENC on machines with no GPU: the probe decides.
    assert choose_encoder({X264, NVENC}, nvenc_probe_succeeded=False) == X264
    assert choose_encoder({X264}, nvenc_probe_succeeded=True) == X264


def test_nvenc_probe_encodes_one_frame_at_the_jobs_size_and_keeps_nothing() -> None:
    command = nvenc_probe_command(1280, 720)

    assert "color=c=black:s=1280x720:r=1" in command
    assert command[command.index("-c:v") + 1] == NVENC
    assert command[command.index("-frames:v") + 1] == "1"
    assert command[-3:] == ["-f", "null", "-"]


@pytest.mark.parametrize("encoder", [X264, NVENC])
def test_encoder_options_make_browser_friendly_h264(encoder: str) -> None:
    options = encoder_options(encoder, fps=24)

    assert options[options.index("-c:v") + 1] == encoder
    assert options[options.index("-pix_fmt") + 1] == "yuv420p"
    assert options[options.index("-g") + 1] == "48"
    assert ("-crf" in options) == (encoder == X264)
    assert ("-cq" in options) == (encoder == NVENC)


def _evaluate(expression: str, **variables: float) -> float:
    # zoompan's expressions here use only arithmetic and its variables.
    assert re.fullmatch(r"[0-9a-z.+\-*/() ]+", expression), expression
    return float(eval(expression, {"__builtins__": {}}, variables))


def _zoompan_options(filter_text: str) -> dict[str, str]:
    assert filter_text.startswith("zoompan=")
    return dict(
        (key, value.strip("'"))
        for key, value in (
            option.split("=", 1)
            for option in re.findall(
                r"[a-z]+=(?:'[^']*'|[^:]*)", filter_text.removeprefix("zoompan=")
            )
        )
    )


def test_zoompan_moves_from_first_to_last_frame_exactly() -> None:
    options = _zoompan_options(zoompan_filter(MOTION, 96, 640, 360, 24))

    assert (options["d"], options["s"], options["fps"]) == ("96", "640x360", "24")
    assert _evaluate(options["z"], on=0) == pytest.approx(1.0)
    assert _evaluate(options["z"], on=95) == pytest.approx(1.2)
    at_start = {"on": 0, "iw": 640, "ih": 360, "zoom": 1.0}
    at_end = {"on": 95, "iw": 640, "ih": 360, "zoom": 1.2}
    assert _evaluate(options["x"], **at_start) == 0  # no room to pan at zoom 1
    assert _evaluate(options["x"], **at_end) == pytest.approx(640 - 640 / 1.2)
    assert _evaluate(options["y"], **at_end) == pytest.approx((360 - 360 / 1.2) * 0.25)


def test_zoompan_of_a_single_frame_scene_holds_the_start() -> None:
    options = _zoompan_options(zoompan_filter(MOTION, 1, 640, 360, 1))

    assert options["d"] == "1"
    assert _evaluate(options["z"], on=0) == pytest.approx(1.0)


def test_render_command_joins_every_scene_with_its_exact_frames() -> None:
    clips = [
        SceneClip(Path("/w/k0.png"), 93, MOTION),
        SceneClip(Path("/w/k1.png"), 156, MOTION),
        SceneClip(Path("/w/k2.png"), 231, MOTION),
    ]

    command = render_command(clips, 1280, 720, 24, X264, Path("/w/video.mp4"))

    assert [command[i + 1] for i, arg in enumerate(command) if arg == "-i"] == [
        "/w/k0.png",
        "/w/k1.png",
        "/w/k2.png",
    ]
    graph = command[command.index("-filter_complex") + 1]
    assert re.findall(r":d=(\d+):", graph) == ["93", "156", "231"]
    # Each scene fades in and out within its own frames: no crossfade.
    assert re.findall(r"fade=t=out:s=(\d+):n=(\d+)", graph) == [
        ("86", "7"),
        ("149", "7"),
        ("224", "7"),
    ]
    assert "xfade" not in graph
    assert "[scene0][scene1][scene2]concat=n=3:v=1:a=0" in graph
    assert command[command.index("-frames:v") + 1] == "480"
    assert command[command.index("-r") + 1] == "24"
    assert command[command.index("-c:v") + 1] == X264
    assert "+faststart" in command
    assert command[-1] == "/w/video.mp4"


def test_keyframes_are_the_output_size_and_reproducible() -> None:
    script = plan_script(JobParams("Waves under a starry night sky.", 30, 320, 180, 24, "en"))

    for scene in script.scenes:
        first = draw_keyframe(scene, 320, 180)
        assert first.size == (320, 180)
        assert first.mode == "RGB"
        assert first.tobytes() == draw_keyframe(scene, 320, 180).tobytes()


def test_fades_are_short_and_leave_the_middle_of_a_scene_alone() -> None:
    assert fade_frames(120, 24) == 7
    assert fade_frames(12, 24) == 3
    assert fade_frames(3, 24) == 0


def test_every_motif_the_planner_names_has_a_painter() -> None:
    named = {m for light in LIGHTS.values() for m in light.sky_motifs + light.weather_motifs}
    named |= {m for place in PLACES.values() for m in place.terrain_motifs}

    assert named | set(SUBJECTS) <= MOTIFS


@pytest.mark.parametrize("motif", sorted(MOTIFS))
def test_every_motif_draws_something_over_the_backdrop(motif: str) -> None:
    script = plan_script(JobParams("Anything at all.", 5, 320, 180, 24, "en"))
    bare = dataclasses.replace(script.scenes[0], motifs=(), caption="")

    backdrop = draw_keyframe(bare, 320, 180)
    picture = draw_keyframe(dataclasses.replace(bare, motifs=(motif,)), 320, 180)

    assert _changed_pixels(backdrop, picture) > 100


def _changed_pixels(first: Image.Image, second: Image.Image) -> int:
    difference = ImageChops.difference(first, second).convert("L")
    return sum(difference.histogram()[1:])


def _boxes(font: ImageFont.FreeTypeFont, count: int, size: tuple[int, int]) -> Image.Image:
    """``count`` of the font's missing-glyph boxes, as a title would be drawn."""
    picture = Image.new("RGB", size)
    ImageDraw.Draw(picture).text(
        (size[0] / 2, size[1] / 2), "\uffff" * count, font=font, anchor="mm", fill=(255, 255, 255)
    )
    return picture


@pytest.mark.parametrize(
    ("title", "font_file"),
    [
        ("日落时的巨浪", "NotoSansCJK"),
        ("قطة تركب موجة", "NotoSansArabic"),
        ("Вечер у моря", "NotoSans-"),
    ],
)
def test_titles_in_other_scripts_come_out_as_letters_not_boxes(title: str, font_file: str) -> None:
    size = (480, 120)
    font = font_for(split_runs(title)[0], 40, title)
    assert isinstance(font, ImageFont.FreeTypeFont)
    assert font_file in str(font.path)
    picture = Image.new("RGB", size)

    draw_title(picture, title, (size[0] / 2, size[1] / 2), max_width=size[0], size=40)

    boxes = _boxes(font, len(title.replace(" ", "")), size)
    # Every box is the same hollow rectangle; letters cover other pixels.
    assert _changed_pixels(picture, boxes) > size[0] * size[1] // 20
    assert draws_glyphs(font, title)
    # The check itself tells boxes from letters: Pillow's built-in font has no Han.
    assert not draws_glyphs(ImageFont.load_default(size=40), "日落时的巨浪")


def test_arabic_is_shaped_when_raqm_is_there() -> None:
    """Joined Arabic letters are narrower than the same letters apart: with
    raqm (libraqm with FriBiDi) the title is shaped, as it must be in the image."""
    font = font_for(split_runs("قطة")[0], 40, "قطة")
    assert isinstance(font, ImageFont.FreeTypeFont)
    assert has_raqm(), "Pillow has no raqm layout here: Arabic titles would be unjoined"
    joined = font.getlength("قطة", direction="rtl")
    apart = sum(font.getlength(letter, direction="rtl") for letter in "قطة")
    assert joined < apart


def _frame(video: Path, index: int) -> Image.Image:
    """Frame ``index`` of ``video``, decoded by ffmpeg."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-vf", f"select=eq(n\\,{index})",
         "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    return Image.open(io.BytesIO(raw)).convert("RGB")


def _render(prompt: str, workdir: Path, seconds: int = 4) -> Path:
    """What video_gen does for ``prompt``: a keyframe per scene, one ffmpeg run."""
    width, height, fps = 320, 180, 24
    script = plan_script(JobParams(prompt, seconds, width, height, fps, "en"))
    workdir.mkdir(parents=True, exist_ok=True)
    clips = []
    for scene, (first, end) in zip(script.scenes, script.windows(fps), strict=True):
        keyframe = workdir / f"keyframe-{scene.index}.png"
        draw_keyframe(scene, width, height).save(keyframe)
        clips.append(SceneClip(keyframe, end - first, scene.motion))
    output = workdir / "video.mp4"
    run_tool(render_command(clips, width, height, fps, X264, output))
    return output


def test_fades_keep_the_frame_count_and_dip_to_black_between_scenes(tmp_path: Path) -> None:
    video = _render("A cat surfing a giant wave at sunset.", tmp_path, seconds=10)
    script = plan_script(JobParams("A cat surfing a giant wave at sunset.", 10, 320, 180, 24, "en"))
    (_, cut), _ = script.windows(24)[:2]

    stream = probe(video).first("video")
    assert stream is not None
    assert stream.frames == 240
    brightness = {
        n: ImageStat.Stat(_frame(video, n).convert("L")).mean[0]
        for n in (0, cut - 1, cut, cut + 12)
    }
    assert brightness[0] < 8 and brightness[cut] < 8  # each scene starts from black
    assert brightness[cut - 1] < brightness[cut + 12] / 3  # and ends nearly black
    assert brightness[cut + 12] > 40


def test_a_sunset_is_warm_and_a_night_is_dark_and_the_same_prompt_renders_the_same(
    tmp_path: Path,
) -> None:
    middle = 48  # well inside the first scene, past its fade
    sunset = _frame(_render("The sea at sunset.", tmp_path / "sunset"), middle)
    night = _frame(_render("The sea at night.", tmp_path / "night"), middle)
    again = _frame(_render("The sea at sunset.", tmp_path / "again"), middle)

    sunset_red, _, sunset_blue = ImageStat.Stat(sunset).mean
    night_red, _, night_blue = ImageStat.Stat(night).mean
    assert sunset_red > sunset_blue  # warm
    assert night_blue > night_red  # cold
    assert (
        ImageStat.Stat(night.convert("L")).mean[0]
        < ImageStat.Stat(sunset.convert("L")).mean[0] * 0.6
    )
    assert again.tobytes() == sunset.tobytes()


def test_a_scene_with_an_unknown_motif_draws_the_rest() -> None:
    still = Motion(zoom_from=1.0, zoom_to=1.0, pan_from=(0.5, 0.5), pan_to=(0.5, 0.5))
    palette = ("#102040", "#a0c0e0", "#406030", "#ffffff")
    known = Scene(0, 0.0, 1.0, (), "", palette, ("hills",), still, 1)

    picture = draw_keyframe(known, 160, 90)

    unknown = dataclasses.replace(known, motifs=("unicorn-from-a-later-version", "hills"))
    assert draw_keyframe(unknown, 160, 90).tobytes() == picture.tobytes()
