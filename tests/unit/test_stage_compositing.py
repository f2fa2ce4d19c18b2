"""compositing's pure parts: the mux and thumbnail commands, and the check of
the final MP4 as ffprobe describes it."""

import itertools
import json
from pathlib import Path
from typing import Any

from vidop_stages.compositing.commands import mux_command, thumbnail_command
from vidop_stages.compositing.validation import final_video_problems
from vidop_stages.media import parse_probe


def _probe(
    video: dict[str, Any] | None = None,
    audio: dict[str, Any] | None = None,
    subtitle: dict[str, Any] | None = None,
    format_name: str = "mov,mp4,m4a,3gp,3g2,mj2",
) -> str:
    """ffprobe's JSON for a good 1280x720 20 s file, with ``changes`` applied."""
    streams = [
        {"codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720,
         "duration": "20.000000", "nb_frames": "480", **(video or {})},
        {"codec_type": "audio", "codec_name": "aac", "sample_rate": "48000", "channels": 2,
         "duration": "20.000000", "nb_frames": "939", **(audio or {})},
        {"codec_type": "subtitle", "codec_name": "mov_text", "duration": "18.577000",
         **(subtitle or {})},
    ]  # fmt: skip
    return json.dumps(
        {"streams": streams, "format": {"format_name": format_name, "duration": "20.000000"}}
    )


def _problems(probe_json: str) -> list[str]:
    return final_video_problems(parse_probe(probe_json), 1280, 720, 20.0)


def test_probe_output_becomes_typed_streams() -> None:
    info = parse_probe(_probe(video={"duration": "N/A"}))

    assert info.duration == 20.0
    assert "mp4" in info.format_names
    video, audio = info.first("video"), info.first("audio")
    assert video is not None and audio is not None
    assert (video.codec, video.width, video.height, video.frames) == ("h264", 1280, 720, 480)
    assert video.duration is None  # "N/A"
    assert (audio.sample_rate, audio.channels) == (48000, 2)
    assert info.first("data") is None


def test_a_good_final_video_has_no_problems() -> None:
    assert _problems(_probe()) == []
    # Within the 0.1 s tolerance.
    assert _problems(_probe(audio={"duration": "20.064000"})) == []


def test_mismatched_durations_are_problems() -> None:
    assert _problems(_probe(audio={"duration": "18.5"})) == ["audio lasts 18.500 s, not 20.000 s"]
    assert _problems(_probe(video={"duration": "19.8"})) == ["video lasts 19.800 s, not 20.000 s"]


def test_wrong_codecs_sizes_and_missing_streams_are_problems() -> None:
    assert _problems(_probe(video={"codec_name": "hevc"})) == ["video codec is hevc, not h264"]
    assert _problems(_probe(video={"width": 1920, "height": 1080})) == [
        "video is 1920x1080, not 1280x720"
    ]
    assert _problems(
        _probe(audio={"codec_name": "mp3", "sample_rate": "44100", "channels": 1})
    ) == [
        "audio codec is mp3, not aac",
        "audio sample rate is 44100, not 48000",
        "audio has 1 channels, not 2",
    ]
    assert _problems(_probe(subtitle={"codec_name": "subrip"})) == [
        "subtitle codec is subrip, not mov_text"
    ]
    assert _problems(_probe(format_name="matroska,webm")) == ["container is matroska,webm, not MP4"]
    no_audio = json.loads(_probe())
    no_audio["streams"] = [s for s in no_audio["streams"] if s["codec_type"] != "audio"]
    assert _problems(json.dumps(no_audio)) == ["no audio stream"]


def test_mux_copies_video_and_makes_the_audio_exactly_the_video_length() -> None:
    command = mux_command(Path("v.mp4"), Path("n.wav"), Path("s.srt"), 20.0, Path("out.mp4"))

    # -shortest would end the file at the last subtitle cue.
    assert "-shortest" not in command
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "-map"] == [
        "0:v:0",
        "1:a:0",
        "2:s:0",
    ]
    options = dict(itertools.pairwise(command))
    assert options["-c:v"] == "copy"
    assert options["-c:a"] == "aac"
    assert (options["-ar"], options["-ac"]) == ("48000", "2")
    assert options["-c:s"] == "mov_text"
    assert options["-movflags"] == "+faststart"
    assert options["-filter:a"].endswith("apad,atrim=end_sample=960000")
    assert command[-1] == "out.mp4"


def test_thumbnail_is_one_small_frame_a_third_in() -> None:
    command = thumbnail_command(Path("out.mp4"), 21.0, Path("thumb.jpg"))

    assert command[command.index("-ss") + 1] == "7.000"
    assert command.index("-ss") < command.index("-i")
    assert command[command.index("-frames:v") + 1] == "1"
    assert "scale='min(640,iw)':-2" in command
    assert command[-1] == "thumb.jpg"
