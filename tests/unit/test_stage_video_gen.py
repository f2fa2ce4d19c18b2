"""video_gen's pure parts: the encoder choice, the Ken Burns expressions, the
one ffmpeg command that renders every scene, and the keyframes."""

import dataclasses
import re
from pathlib import Path

import pytest

from vidop_stages.params import JobParams
from vidop_stages.scenescript import Motion
from vidop_stages.script_gen.planner import MOTIFS, plan_script
from vidop_stages.video_gen.encoding import (
    NVENC,
    X264,
    SceneClip,
    choose_encoder,
    encoder_options,
    listed_encoders,
    nvenc_probe_command,
    render_command,
    zoompan_filter,
)
from vidop_stages.video_gen.keyframes import draw_keyframe

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


@pytest.mark.parametrize("motif", MOTIFS)
def test_every_motif_draws_something_over_the_gradient(motif: str) -> None:
    script = plan_script(JobParams("Anything at all.", 5, 320, 180, 24, "en"))
    scene = script.scenes[0]
    plain = dataclasses.replace(scene, motif=motif, caption="")

    picture = draw_keyframe(plain, 320, 180)

    # A bare gradient has one colour per row; shapes break that.
    rows = [{picture.getpixel((x, y)) for x in range(0, 320, 4)} for y in range(0, 180, 6)]
    assert any(len(colours) > 2 for colours in rows)
