"""Is the final MP4 what the VideoJob asked for? Checked on ffprobe's word.

:mod:`vidop_stages.compositing.main` probes the file it muxed and refuses to
publish one with problems (a retryable failure: a bad mux is a bug or a
broken input, not the user's input). Pure.
"""

from __future__ import annotations

from vidop_stages.media import MediaInfo

DURATION_TOLERANCE_SECONDS = 0.1
AUDIO_SAMPLE_RATE = 48000
AUDIO_CHANNELS = 2


def final_video_problems(
    info: MediaInfo, width: int, height: int, duration_seconds: float
) -> list[str]:
    """What is wrong with the file, in words; empty when it is right."""
    problems = []
    if "mp4" not in info.format_names:
        problems.append(f"container is {','.join(info.format_names)}, not MP4")
    video, audio, subtitles = info.first("video"), info.first("audio"), info.first("subtitle")
    if video is None:
        problems.append("no video stream")
    else:
        if video.codec != "h264":
            problems.append(f"video codec is {video.codec}, not h264")
        if (video.width, video.height) != (width, height):
            problems.append(f"video is {video.width}x{video.height}, not {width}x{height}")
        problems += _duration_problems("video", video.duration, duration_seconds)
    if audio is None:
        problems.append("no audio stream")
    else:
        if audio.codec != "aac":
            problems.append(f"audio codec is {audio.codec}, not aac")
        if audio.sample_rate != AUDIO_SAMPLE_RATE:
            problems.append(f"audio sample rate is {audio.sample_rate}, not {AUDIO_SAMPLE_RATE}")
        if audio.channels != AUDIO_CHANNELS:
            problems.append(f"audio has {audio.channels} channels, not {AUDIO_CHANNELS}")
        problems += _duration_problems("audio", audio.duration, duration_seconds)
    if subtitles is None:
        problems.append("no subtitle stream")
    elif subtitles.codec != "mov_text":
        problems.append(f"subtitle codec is {subtitles.codec}, not mov_text")
    return problems


def _duration_problems(kind: str, measured: float | None, expected: float) -> list[str]:
    if measured is None:
        return [f"{kind} stream has no duration"]
    if abs(measured - expected) > DURATION_TOLERANCE_SECONDS:
        return [f"{kind} lasts {measured:.3f} s, not {expected:.3f} s"]
    return []
