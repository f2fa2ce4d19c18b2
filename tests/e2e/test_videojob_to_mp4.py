"""The main job end to end: a VideoJob through the operator, the real Job
controller and scheduler, the local node and the reference stages, to a
playable MP4 in S3 (SeaweedFS). Nothing is simulated but the GPU."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support import (
    Cluster,
    LocalNodeProcess,
    Operator,
    create_s3_secret,
    integrated_lufs,
    stages_on,
    wait_until,
)
from vidop_devcluster.s3 import S3Server

pytestmark = pytest.mark.cluster

STAGES = ("script_gen", "voice_gen", "video_gen", "compositing")
SECRET = "vid-operator-s3"
BUCKET = "e2e-videos"
# Rendering is real work on a small shared machine.
TIMEOUT = 240
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOUDNESS_TARGET = -30.0
# Long and large enough that rendering, not starting pods, is most of a fresh run.
CACHED_SECONDS = 30


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    local_node: LocalNodeProcess,
    s3: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    cluster.install_videojob_crd()
    s3.create_bucket(BUCKET)
    running = Operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        {
            **stages_on(local_node.placement(), s3, BUCKET, SECRET),
            "priorityClasses": {"high": None, "low": None},
        },
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def videos(cluster: Cluster, namespace: str, s3: S3Server, operator: Operator) -> str:
    """A namespace with the S3 Secret the stage pods read their credentials from."""
    create_s3_secret(cluster, namespace, s3, SECRET)
    return namespace


def _videojob(name: str, prompt: str, seconds: int = 6, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {
            "prompt": prompt,
            "durationSeconds": seconds,
            "resolution": "640x360",
            "fps": 12,
            **spec,
        },
    }


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    videojob = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "vidop.io", "v1alpha1", namespace, "videojobs", name
    )
    status: dict[str, Any] = videojob.get("status") or {}
    return status


def _finished(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    status = _status(cluster, namespace, name)
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def _stage(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(stage for stage in status["stages"] if stage["name"] == name)


def _ffprobe(path: Path) -> dict[str, Any]:
    probed = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(probed.stdout)
    return result


def _cached_items(s3: S3Server, namespace: str, stage: dict[str, Any]) -> dict[str, Any]:
    """When each item of a fanned-out stage had its cache record written
    (the cache key is the stage's digest), by key."""
    prefix = f"videojobs/{namespace}/_cache/{stage['outputs']['digest']}/items/"
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["LastModified"] for o in listed if o["Key"].endswith("record.json")}


def _download(s3: S3Server, uri: str, to: Path) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.client().download_file(bucket, key, str(to))
    return to


def test_a_videojob_becomes_a_playable_mp4_that_matches_its_narration(
    cluster: Cluster, videos: str, s3: S3Server, tmp_path: Path
) -> None:
    cluster.apply(
        _videojob("cat-surfing", "A cat surfing a huge wave at sunset. The crowd cheers."),
        videos,
    )

    status = wait_until(
        "the VideoJob to finish", lambda: _finished(cluster, videos, "cat-surfing"), TIMEOUT, 1
    )
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert status["progress"] == "4/4"
    for stage in STAGES:
        assert _stage(status, stage)["attempts"] == 1
    outputs = status["outputs"]
    assert outputs["videoUri"].startswith(f"s3://{BUCKET}/")
    video = _download(s3, outputs["videoUri"], tmp_path / "video.mp4")
    thumbnail = _download(s3, outputs["thumbnailUri"], tmp_path / "thumbnail.jpg")

    duration = _check_playable(video, status, seconds=6)
    assert abs(float(outputs["durationSeconds"]) - duration) <= 0.1
    assert _ffprobe(thumbnail)["streams"][0]["codec_name"] == "mjpeg"


def _check_playable(
    video: Path, status: dict[str, Any], seconds: int, size: tuple[int, int] = (640, 360)
) -> float:
    """ffprobe's and ffmpeg's word that ``video`` is the H.264 + AAC +
    mov_text MP4 of the ``size`` and ``seconds`` the VideoJob asked for, as
    long as its narration; returns its duration."""
    probed = _ffprobe(video)
    streams = {stream["codec_type"]: stream for stream in probed["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == size
    assert streams["audio"]["codec_name"] == "aac"
    assert (streams["audio"]["sample_rate"], streams["audio"]["channels"]) == ("48000", 2)
    assert streams["subtitle"]["codec_name"] == "mov_text"
    duration = float(probed["format"]["duration"])
    narration = float(_stage(status, "voice_gen")["outputs"]["durationSeconds"])
    assert abs(duration - narration) <= 0.1
    assert abs(duration - seconds) <= 0.1
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert decoded.stderr == ""
    return duration


def test_input_only_the_stage_can_judge_fails_the_videojob_without_retries(
    cluster: Cluster, videos: str
) -> None:
    # Valid for the schema (not empty), but there are no words to narrate.
    cluster.apply(_videojob("no-words", "?!? ... !!! ---"), videos)

    status = wait_until(
        "the VideoJob to fail", lambda: _finished(cluster, videos, "no-words"), TIMEOUT, 1
    )
    assert status["phase"] == "Failed"
    script = _stage(status, "script_gen")
    assert (script["phase"], script["attempts"]) == ("Failed", 1)
    assert "invalid input" in script["message"]
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        videos, label_selector="vidop.io/videojob=no-words"
    )
    assert len(pods.items) == 1
    assert all(_stage(status, stage)["phase"] == "Pending" for stage in STAGES[1:])


def test_a_stage_that_cannot_reach_s3_is_retried_until_it_can(
    cluster: Cluster, videos: str, s3: S3Server
) -> None:
    s3.stop()
    try:
        cluster.apply(_videojob("s3-outage", "A lighthouse in a storm.", seconds=3), videos)

        def script_gen_failed_once() -> bool:
            job = client.BatchV1Api(cluster.api).list_namespaced_job(
                videos, label_selector="vidop.io/videojob=s3-outage,vidop.io/stage=script_gen"
            )
            return bool(job.items and (job.items[0].status.failed or 0) >= 1)

        wait_until("script_gen to fail on the outage", script_gen_failed_once, 120, 0.5)
    finally:
        s3.start()

    status = wait_until(
        "the VideoJob to finish", lambda: _finished(cluster, videos, "s3-outage"), TIMEOUT, 1
    )
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert _stage(status, "script_gen")["attempts"] >= 2


def test_deleting_the_videojob_kills_the_running_stage_process(
    cluster: Cluster, videos: str
) -> None:
    # Long enough that video_gen is still rendering when the VideoJob goes.
    cluster.apply(
        _videojob(
            "cancelled", "A slow sunrise over mountains.", seconds=120, resolution="1280x720"
        ),
        videos,
    )
    core = client.CoreV1Api(cluster.api)

    def running_video_gen_pid() -> int | None:
        pods = core.list_namespaced_pod(
            videos, label_selector="vidop.io/videojob=cancelled,vidop.io/stage=video_gen"
        )
        for pod in pods.items:
            for container in pod.status.container_statuses or []:
                if container.state.running and container.container_id:
                    return int(container.container_id.rpartition("/")[2])
        return None

    pid = wait_until("video_gen to run", running_video_gen_pid, TIMEOUT, 0.5)
    assert Path(f"/proc/{pid}").exists()

    cluster.kubectl("delete", "videojob", "cancelled", "-n", videos, "--wait=true")

    wait_until("the stage process to be gone", lambda: not Path(f"/proc/{pid}").exists(), 60, 0.5)
    wait_until(
        "the stage pods to be gone",
        lambda: (
            not core.list_namespaced_pod(videos, label_selector="vidop.io/videojob=cancelled").items
        ),
        60,
    )


def test_secret_values_never_reach_the_operator_log(
    videos: str, s3: S3Server, operator: Operator
) -> None:
    log = operator.log.read_text()
    assert s3.secret_key not in log
    assert base64.b64encode(s3.secret_key.encode()).decode() not in log


def test_a_custom_pipeline_with_a_stage_the_default_lacks_makes_its_mark_on_the_mp4(
    cluster: Cluster, videos: str, s3: S3Server, local_node: LocalNodeProcess, tmp_path: Path
) -> None:
    """examples/pipelines/narrated-loudness.yaml as a platform would apply
    it (placed on the local node), with a loudness target far from what
    voice_gen gives, so the final MP4's measured loudness shows that the
    loudness stage ran and compositing used its narration."""
    pipeline = yaml.safe_load((EXAMPLES / "pipelines" / "narrated-loudness.yaml").read_text())
    for stage in pipeline["spec"]["stages"]:
        stage.update(local_node.placement())
        for variable in stage.get("env", []):
            if variable["name"] == "LOUDNESS_TARGET_LUFS":
                variable["value"] = str(LOUDNESS_TARGET)
    cluster.apply(pipeline, videos)
    cluster.apply(
        _videojob("harbour", "A fishing harbour at dawn. Gulls circle the boats.",
                  pipeline="narrated-loudness"),
        videos,
    )  # fmt: skip

    status = wait_until(
        "the VideoJob to finish", lambda: _finished(cluster, videos, "harbour"), TIMEOUT, 1
    )

    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert status["progress"] == "5/5"
    loudness = _stage(status, "loudness")["outputs"]
    print(f"\nloudness stage: {loudness}")
    assert abs(loudness["inputLufs"] - LOUDNESS_TARGET) > 5  # there was work to do
    video = _download(s3, status["outputs"]["videoUri"], tmp_path / "harbour.mp4")
    probed = _ffprobe(video)
    assert {s["codec_type"] for s in probed["streams"]} >= {"video", "audio"}
    measured = integrated_lufs(video)
    print(f"final MP4: {measured:.1f} LUFS (target {LOUDNESS_TARGET})")
    assert abs(measured - LOUDNESS_TARGET) <= 1.5


def test_the_same_videojob_again_reuses_every_stage_from_the_cache(
    cluster: Cluster, videos: str, s3: S3Server, tmp_path: Path
) -> None:
    """The same spec under two names: the second VideoJob copies each stage's
    result that the first stored, computes nothing, finishes sooner, and its
    MP4 is as playable and as long (byte-identical, as the copy it is)."""
    prompt = "A red fox runs through fresh snow. Snowflakes drift past."
    runs: dict[str, tuple[float, dict[str, Any]]] = {}
    stored_items: list[dict[str, Any]] = []
    for name in ("fox-fresh", "fox-again"):
        started = time.monotonic()
        cluster.apply(
            _videojob(name, prompt, seconds=CACHED_SECONDS, resolution="1280x720"), videos
        )
        status = wait_until(
            f"{name} to finish", lambda name=name: _finished(cluster, videos, name), TIMEOUT, 0.25
        )
        runs[name] = (time.monotonic() - started, status)
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
        stored_items.append(_cached_items(s3, videos, _stage(status, "video_gen")))

    (fresh_seconds, fresh), (cached_seconds, cached) = runs["fox-fresh"], runs["fox-again"]
    print(
        f"\nfresh: {fresh_seconds:.1f} s, cached: {cached_seconds:.1f} s"
        f" ({cached_seconds / fresh_seconds:.0%} of fresh)"
    )
    for stage in STAGES:
        computed, reused = _stage(fresh, stage), _stage(cached, stage)
        assert reused["outputs"]["digest"] == computed["outputs"]["digest"]
        if stage == "video_gen":
            # One pod per scene: each item is cached on its own, and its
            # record, written when it was computed, was only read since.
            assert computed["outputs"]["items"] == len(stored_items[0]) >= 2
            assert stored_items[1] == stored_items[0]
            continue
        assert (computed["cached"], reused["cached"]) == (False, True), stage
        assert reused["outputs"]["cached"] is True
    assert cached["outputs"]["videoUri"].startswith(f"s3://{BUCKET}/videojobs/{videos}/fox-again/")
    assert cached_seconds < fresh_seconds

    videos_made = [
        _download(s3, status["outputs"]["videoUri"], tmp_path / f"{name}.mp4")
        for name, (_, status) in runs.items()
    ]
    durations = [
        _check_playable(video, status, seconds=CACHED_SECONDS, size=(1280, 720))
        for video, (_, status) in zip(videos_made, runs.values(), strict=True)
    ]
    assert durations[0] == durations[1]
    identical = videos_made[0].read_bytes() == videos_made[1].read_bytes()
    print(f"MP4s: {durations[0]:.3f} s each, byte-identical: {identical}")
    assert identical
