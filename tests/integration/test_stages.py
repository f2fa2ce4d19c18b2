"""The reference stages as the cluster runs them: each one a process (its
console script) with the stage contract's environment, against the real S3
server, with the real espeak-ng and ffmpeg. Short videos at a small size keep
the whole file to seconds.

The default pipeline runs once per module (voice_gen and video_gen side by
side, as the DAG does); the tests then read what it left in S3 and in the
termination-message files. Other tests run one stage on bad input, on a dead
S3 endpoint, or on a script whose narration cannot fit as spoken.
"""

import dataclasses
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vid_operator import contract
from vidop_devcluster.s3 import S3Server
from vidop_stages.cache import file_sha256, outputs_digest
from vidop_stages.media import MediaInfo, probe
from vidop_stages.scenescript import Motion, Scene, SceneScript
from vidop_stages.voice_gen.fitting import NATURAL_MAX_RATE

PROMPT = "A cat surfing a giant wave at sunset. The crowd on the beach cheers!"
DURATION = 6
WIDTH, HEIGHT, FPS = 320, 180, 24
PARAMS = {
    "prompt": PROMPT,
    "durationSeconds": DURATION,
    "resolution": f"{WIDTH}x{HEIGHT}",
    "fps": FPS,
    "voice": "en-us",
}
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class StageRun:
    returncode: int
    message: str
    """What the stage left in its termination-message file."""
    stderr: str
    seconds: float

    @property
    def summary(self) -> dict[str, Any]:
        summary = contract.read_summary(self.message)
        assert summary is not None, f"not a summary: {self.message!r}\n{self.stderr[-2000:]}"
        return summary


@dataclass(frozen=True)
class Job:
    """Where one VideoJob's stages find S3 and keep their files."""

    s3: S3Server
    bucket: str
    workdir: Path
    params: dict[str, Any]

    @property
    def prefix(self) -> str:
        return contract.artifact_prefix(self.bucket, "videojobs", "media", "cat", "uid-1")

    def key(self, stage: str, name: str) -> str:
        return f"videojobs/media/cat/uid-1/{stage}/{name}"

    def start(self, stage: str, **overrides: str) -> tuple[subprocess.Popen[str], Path, float]:
        message = self.workdir / f"{stage}-{secrets.token_hex(3)}.message"
        environment = {
            # A container's worth of environment: nothing of the host's AWS setup.
            "PATH": os.environ["PATH"],
            "HOME": str(self.workdir),
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
            **self.s3.environment(),
            contract.ENV_JOB_NAME: "cat",
            contract.ENV_JOB_NAMESPACE: "media",
            contract.ENV_JOB_UID: "uid-1",
            contract.ENV_STAGE: stage,
            contract.ENV_PARAMS: json.dumps(self.params),
            contract.ENV_ARTIFACT_PREFIX: self.prefix,
            contract.ENV_SCRATCH_DIR: str(self.workdir / "scratch"),
            contract.ENV_TERMINATION_MESSAGE_PATH: str(message),
            **overrides,
        }
        command = [str(BIN / f"vidop-stage-{stage.replace('_', '-')}")]
        process = subprocess.Popen(
            command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        return process, message, time.monotonic()

    def run(self, stage: str, **overrides: str) -> StageRun:
        return finish(*self.start(stage, **overrides))

    def download(self, stage: str, name: str) -> Path:
        path = self.workdir / "downloads" / stage / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.s3.client().download_file(self.bucket, self.key(stage, name), str(path))
        return path

    def keys(self) -> dict[str, str]:
        """Every object of the job, with its ETag."""
        listing = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return {item["Key"]: item["ETag"] for item in listing.get("Contents", [])}


def finish(process: subprocess.Popen[str], message: Path, started: float) -> StageRun:
    _, stderr = process.communicate(timeout=100)
    return StageRun(
        process.returncode,
        message.read_text() if message.exists() else "",
        stderr,
        time.monotonic() - started,
    )


def _job(s3: S3Server, bucket: str, workdir: Path, **params: Any) -> Job:
    return Job(s3, bucket, workdir, {**PARAMS, **params})


def run_until_compositing(job: Job) -> dict[str, StageRun]:
    """script_gen, then voice_gen and video_gen at the same time, each of
    which must succeed: what every pipeline here runs before its last stages."""
    runs = {"script_gen": job.run("script_gen")}
    assert runs["script_gen"].returncode == 0, runs["script_gen"].stderr
    voice, video = job.start("voice_gen"), job.start("video_gen")
    runs["voice_gen"], runs["video_gen"] = finish(*voice), finish(*video)
    for stage in ("voice_gen", "video_gen"):
        assert runs[stage].returncode == 0, runs[stage].stderr
    return runs


@pytest.fixture(scope="module")
def pipeline(
    s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Job, dict[str, StageRun]]]:
    """The default pipeline, once: script_gen, then voice_gen and video_gen
    at the same time, then compositing."""
    # Module-scoped, so a bucket of its own rather than the per-test s3_bucket.
    bucket = f"stages-pipeline-{secrets.token_hex(3)}"
    s3.create_bucket(bucket)
    job = _job(s3, bucket, tmp_path_factory.mktemp("pipeline"))
    runs = run_until_compositing(job)
    runs["compositing"] = job.run("compositing")
    assert runs["compositing"].returncode == 0, runs["compositing"].stderr
    for stage, run in runs.items():
        print(f"\n{stage}: {run.seconds:.2f} s")
    yield job, runs


def _probe_streams(path: Path) -> MediaInfo:
    info = probe(path)
    assert info.streams, f"ffprobe found no streams in {path}"
    return info


def test_every_stage_writes_only_under_its_own_name(
    pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, _ = pipeline

    assert sorted(job.keys()) == [
        job.key("compositing", "thumbnail.jpg"),
        job.key("compositing", "video.mp4"),
        job.key("script_gen", "script.json"),
        job.key("video_gen", "video.mp4"),
        job.key("voice_gen", "narration.wav"),
        job.key("voice_gen", "subtitles.srt"),
    ]


def test_script_gen_plans_the_timeline(pipeline: tuple[Job, dict[str, StageRun]]) -> None:
    job, runs = pipeline
    downloaded = job.download("script_gen", "script.json")
    script = SceneScript.from_json(downloaded.read_text())

    assert runs["script_gen"].summary == {
        "script": f"{job.prefix}script_gen/script.json",
        "scenes": len(script.scenes),
        "sentences": len(script.sentences),
        "durationSeconds": DURATION,
        # What the operator keys the next stages' result caches on.
        "digest": outputs_digest({"script.json": file_sha256(downloaded)}),
    }
    assert script.prompt == PROMPT
    assert script.sentences[0] == "A cat surfing a giant wave at sunset."
    assert sum(scene.duration_seconds for scene in script.scenes) == pytest.approx(DURATION)


def test_a_retried_stage_rewrites_the_same_script_and_nothing_else(
    pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, _ = pipeline
    before = job.keys()

    rerun = job.run("script_gen")

    assert rerun.returncode == 0, rerun.stderr
    # Same bytes, same ETag; every other stage's object untouched.
    assert job.keys() == before


def test_voice_gen_narration_is_exactly_the_duration_with_one_cue_per_sentence(
    pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, runs = pipeline
    script = SceneScript.from_json(job.download("script_gen", "script.json").read_text())
    with wave.open(str(job.download("voice_gen", "narration.wav"))) as narration:
        seconds = narration.getnframes() / narration.getframerate()
        samples = narration.readframes(narration.getnframes())
    cues = _srt_cues(job.download("voice_gen", "subtitles.srt").read_text())

    assert seconds == pytest.approx(DURATION, abs=0.05)
    assert any(samples), "the narration is silent"
    summary = runs["voice_gen"].summary
    assert summary["durationSeconds"] == pytest.approx(DURATION, abs=0.05)
    assert (summary["voice"], summary["engine"]) == ("en-us", "espeak-ng")
    assert summary["narration"] == f"{job.prefix}voice_gen/narration.wav"
    assert summary["subtitles"] == f"{job.prefix}voice_gen/subtitles.srt"
    assert [text for _, _, text in cues] == script.sentences
    for start, end, _ in cues:
        assert 0 <= start < end <= seconds
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(cues))


def test_video_gen_renders_every_frame_at_the_requested_size(
    pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, runs = pipeline
    video = _probe_streams(job.download("video_gen", "video.mp4")).first("video")

    assert video is not None
    assert (video.codec, video.width, video.height) == ("h264", WIDTH, HEIGHT)
    assert video.frames == DURATION * FPS
    assert video.duration == pytest.approx(DURATION, abs=0.01)
    summary = runs["video_gen"].summary
    assert summary["frames"] == DURATION * FPS
    assert summary["encoder"] == "libx264"  # no GPU here
    assert summary["video"] == f"{job.prefix}video_gen/video.mp4"


def test_compositing_makes_a_valid_mp4_with_sound_subtitles_and_thumbnail(
    pipeline: tuple[Job, dict[str, StageRun]],
) -> None:
    job, runs = pipeline
    final = job.download("compositing", "video.mp4")
    info = _probe_streams(final)
    video, audio, subtitles = info.first("video"), info.first("audio"), info.first("subtitle")

    assert video is not None and audio is not None and subtitles is not None
    assert (video.codec, video.width, video.height) == ("h264", WIDTH, HEIGHT)
    assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 48000, 2)
    assert subtitles.codec == "mov_text"
    assert video.duration is not None and audio.duration is not None
    assert abs(video.duration - audio.duration) <= 0.1
    assert video.duration == pytest.approx(DURATION, abs=0.05)
    # The index is at the front (faststart): players start before the end arrives.
    head = final.read_bytes()[:4096]
    assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(final), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert decode.returncode == 0 and decode.stderr == ""
    with Image.open(job.download("compositing", "thumbnail.jpg")) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("JPEG", (WIDTH, HEIGHT))

    summary = runs["compositing"].summary
    assert summary["videoUri"] == f"{job.prefix}compositing/video.mp4"
    assert summary["thumbnailUri"] == f"{job.prefix}compositing/thumbnail.jpg"
    assert isinstance(summary["durationSeconds"], float)
    assert summary["durationSeconds"] == pytest.approx(DURATION, abs=0.05)


def test_a_prompt_without_words_fails_at_once_as_invalid_input(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    job = _job(s3, s3_bucket, tmp_path, prompt=" 🎬 ... !!! ")

    run = job.run("script_gen")

    assert run.returncode == contract.EXIT_INVALID_INPUT
    assert run.message == "invalid input: the prompt has no words"
    assert job.keys() == {}


@pytest.mark.parametrize("stage", ["script_gen", "video_gen"])
def test_an_odd_resolution_is_invalid_input(
    s3: S3Server, s3_bucket: str, tmp_path: Path, stage: str
) -> None:
    run = _job(s3, s3_bucket, tmp_path, resolution="641x360").run(stage)

    assert run.returncode == contract.EXIT_INVALID_INPUT
    assert run.message == "invalid input: resolution 641x360: H.264 needs an even width, not 641"


def test_an_unknown_voice_is_invalid_input(s3: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    run = _job(s3, s3_bucket, tmp_path, voice="klingon").run("voice_gen")

    assert run.returncode == contract.EXIT_INVALID_INPUT
    assert run.message.startswith("invalid input: voice 'klingon' is not an espeak-ng voice")


def test_an_unreachable_s3_fails_fast_and_retryably(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        closed_port = probe_socket.getsockname()[1]
    job = _job(s3, s3_bucket, tmp_path)

    run = job.run("script_gen", **{contract.ENV_S3_ENDPOINT: f"http://127.0.0.1:{closed_port}"})

    assert run.returncode not in (contract.EXIT_OK, contract.EXIT_INVALID_INPUT)
    assert run.message.startswith("failed: ")
    assert "127.0.0.1" in run.message
    assert run.seconds < 20


def test_a_missing_input_is_a_retryable_failure_naming_it(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    job = _job(s3, s3_bucket, tmp_path)

    run = job.run("compositing")

    assert run.returncode not in (contract.EXIT_OK, contract.EXIT_INVALID_INPUT)
    assert run.message.startswith(f"failed: RuntimeError: cannot read {job.prefix}video_gen/")


def test_voice_gen_speeds_up_narration_that_overruns_its_window(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """A hand-written script: fourteen words in one second, which espeak-ng
    at its normal rate says in about four."""
    job = _job(s3, s3_bucket, tmp_path, durationSeconds=2, fps=10)
    still = Motion(zoom_from=1.0, zoom_to=1.0, pan_from=(0.5, 0.5), pan_to=(0.5, 0.5))
    palette = ("#000000", "#101010", "#202020", "#ffffff")
    scene = Scene(0, 0.0, 1.0, (), "", palette, ("hills",), still, 1)
    long = "Fourteen words are far too many to say inside one short second of time."
    script = SceneScript(
        prompt=long,
        seed="0",
        duration_seconds=2,
        fps=10,
        words_per_second=2.6,
        scenes=(
            dataclasses.replace(scene, narration=(long,)),
            dataclasses.replace(scene, index=1, start_seconds=1.0, narration=("Done.",)),
        ),
    )
    job.s3.client().put_object(
        Bucket=job.bucket, Key=job.key("script_gen", "script.json"), Body=script.to_json()
    )

    run = job.run("voice_gen")

    assert run.returncode == 0, run.stderr
    assert run.summary["spedUpScenes"] == 1
    # espeak-ng's natural top rate is not enough here: its time compression does the rest.
    rates = [
        line["words_per_minute"]
        for line in map(json.loads, run.stderr.splitlines())
        if line["event"] == "speaking faster to fit"
    ]
    assert rates[0] == NATURAL_MAX_RATE < rates[1]
    assert run.summary["durationSeconds"] == pytest.approx(2.0, abs=0.001)
    (first_start, first_end, _), (second_start, _, _) = _srt_cues(
        job.download("voice_gen", "subtitles.srt").read_text()
    )
    assert 0 <= first_start < first_end <= 1.0 <= second_start


def _srt_cues(text: str) -> list[tuple[float, float, str]]:
    """Each cue's start, end and text, its wrapped lines joined again by the
    spaces they were broken at (the English spoken here)."""
    cues = []
    for block in text.strip().split("\n\n"):
        number, timing, *lines = block.split("\n")
        start, end = (_srt_seconds(stamp) for stamp in timing.split(" --> "))
        cues.append((start, end, " ".join(lines)))
        assert number == str(len(cues))
    return cues


def _srt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
