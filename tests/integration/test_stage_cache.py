"""The stage runtime's side of the result cache, against the real S3 server:
a first run computes and stores, a run of another VideoJob with the same key
copies instead of computing, and whatever goes wrong with the cache (a store
that refuses, half a stored result) never fails the stage.

Each run is ``run_stage`` in this process with the contract's environment and
a small work function that counts its calls, so what is tested is the
runtime, not a stage's media work (tests/e2e renders for real)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vid_operator import contract
from vidop_devcluster.s3 import S3Server
from vidop_stages.artifacts import Artifact
from vidop_stages.runtime import StageContext, Summary, run_stage

KEY = "5" * 64
VIDEO = Artifact("render", "video.mp4", "video/mp4")
NOTES = Artifact("render", "notes.txt", "text/plain")
PARAMS = json.dumps(
    {"prompt": "a cat", "durationSeconds": 1, "resolution": "64x64", "fps": 1, "voice": "en"}
)


@dataclass
class Render:
    """A stage's work: publishes two files and says where one of them is."""

    body: bytes = b"frames " * 1000
    calls: int = 0

    def __call__(self, context: StageContext) -> Summary:
        self.calls += 1
        video = context.workdir / VIDEO.name
        video.write_bytes(self.body)
        notes = context.workdir / NOTES.name
        notes.write_text("made by render\n")
        context.store.publish(notes, NOTES)
        return {"video": context.store.publish(video, VIDEO), "frames": 7}


@pytest.fixture
def run(
    s3: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, dict[str, Any]]]:
    """Runs ``work`` as the stage ``render`` of the VideoJob ``name``; returns
    its exit code and what it wrote as its termination message."""

    def run_as(work: Render, name: str, location: str | None = None) -> tuple[int, dict[str, Any]]:
        message = tmp_path / f"{name}.message"
        environment = {
            **s3.environment(),
            contract.ENV_STAGE: "render",
            contract.ENV_PARAMS: PARAMS,
            contract.ENV_ARTIFACT_PREFIX: contract.artifact_prefix(
                s3_bucket, "videojobs", "media", name, f"uid-{name}"
            ),
            contract.ENV_SCRATCH_DIR: str(tmp_path / "scratch"),
            contract.ENV_TERMINATION_MESSAGE_PATH: str(message),
        }
        if location is not None:
            environment |= {contract.ENV_CACHE_KEY: KEY, contract.ENV_CACHE_LOCATION: location}
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        if location is None:
            monkeypatch.delenv(contract.ENV_CACHE_LOCATION, raising=False)
        code = run_stage(work)
        return code, json.loads(message.read_text())

    return run_as


def _location(bucket: str) -> str:
    return contract.cache_location(bucket, "videojobs", "media", KEY)


def _objects(s3: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    client = s3.client()
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        item["Key"].removeprefix(prefix): client.get_object(Bucket=bucket, Key=item["Key"])[
            "Body"
        ].read()
        for item in listing
    }


def test_a_result_is_computed_once_and_copied_for_another_videojob(
    run: Callable[..., tuple[int, dict[str, Any]]], s3: S3Server, s3_bucket: str
) -> None:
    work = Render()

    code, fresh = run(work, "first", _location(s3_bucket))
    assert (code, work.calls, fresh["cached"]) == (0, 1, False)
    stored = _objects(s3, s3_bucket, f"videojobs/media/_cache/{KEY}/")
    assert set(stored) == {
        "record.json",
        f"{fresh['digest']}/video.mp4",
        f"{fresh['digest']}/notes.txt",
    }

    code, cached = run(work, "second", _location(s3_bucket))

    assert (code, work.calls) == (0, 1)  # not computed again
    assert cached["cached"] is True
    assert cached["digest"] == fresh["digest"]
    assert cached["frames"] == 7
    assert cached["video"] == f"s3://{s3_bucket}/videojobs/media/second/uid-second/render/video.mp4"
    first = _objects(s3, s3_bucket, "videojobs/media/first/uid-first/render/")
    second = _objects(s3, s3_bucket, "videojobs/media/second/uid-second/render/")
    assert second == first and set(second) == {"video.mp4", "notes.txt"}


def test_the_digest_is_of_the_contents_whatever_the_videojob(
    run: Callable[..., tuple[int, dict[str, Any]]], s3: S3Server, s3_bucket: str
) -> None:
    _, one = run(Render(), "one")
    _, two = run(Render(), "two")
    _, other = run(Render(body=b"other frames"), "three")

    assert one["digest"] == two["digest"] != other["digest"]
    assert "cached" not in one  # no key: the stage neither reads nor stores a result
    assert not _objects(s3, s3_bucket, "videojobs/media/_cache/")


def test_a_store_that_refuses_the_result_does_not_fail_the_stage(
    run: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    work = Render()

    code, summary = run(work, "first", _location("no-such-bucket"))

    assert (code, work.calls, summary["cached"]) == (0, 1, False)


def test_half_a_stored_result_is_computed_again_and_stored_whole(
    run: Callable[..., tuple[int, dict[str, Any]]], s3: S3Server, s3_bucket: str
) -> None:
    work = Render()
    _, fresh = run(work, "first", _location(s3_bucket))
    # What a lifecycle rule that expired the files before the record would leave.
    s3.client().delete_object(
        Bucket=s3_bucket, Key=f"videojobs/media/_cache/{KEY}/{fresh['digest']}/video.mp4"
    )

    code, again = run(work, "second", _location(s3_bucket))
    _, third = run(work, "third", _location(s3_bucket))

    assert (code, work.calls, again["cached"]) == (0, 2, False)
    assert third["cached"] is True and work.calls == 2
