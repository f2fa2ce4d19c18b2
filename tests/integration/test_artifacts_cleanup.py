"""``vidop-artifacts-cleanup`` against the real S3 server: it deletes one
deleted VideoJob's prefix, every page of it, and nothing beside it (another
VideoJob of the same name, the namespace's stored cache results); it refuses a
prefix that is not one VideoJob's."""

from __future__ import annotations

import pytest

from vid_operator import contract
from vidop_devcluster.s3 import S3Server
from vidop_stages import cleanup


def _environment(monkeypatch: pytest.MonkeyPatch, s3: S3Server, prefix: str) -> None:
    """The cleanup Job's environment: the prefix and the store's contract variables."""
    for variable, value in {**s3.environment(), contract.ENV_ARTIFACT_PREFIX: prefix}.items():
        monkeypatch.setenv(variable, value)


def _put(s3: S3Server, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.client().put_object(Bucket=bucket, Key=key, Body=b"x")


def _keys(s3: S3Server, bucket: str) -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_it_deletes_the_videojobs_prefix_and_nothing_else(
    s3: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = [f"videojobs/media/cat/uid-1/stage/{n:04d}.bin" for n in range(1100)]  # two pages
    kept = [
        "videojobs/media/cat/uid-2/compositing/video.mp4",  # a later VideoJob of that name
        "videojobs/media/cat/uid-10/compositing/video.mp4",  # a uid that starts the same
        "videojobs/media/_cache/5555/record.json",
    ]
    _put(s3, s3_bucket, gone + kept)
    prefix = contract.artifact_prefix(s3_bucket, "videojobs", "media", "cat", "uid-1")
    _environment(monkeypatch, s3, prefix)

    assert cleanup.run() == contract.EXIT_OK
    assert _keys(s3, s3_bucket) == set(kept)
    # Again (a retried Job): nothing left to delete is no failure.
    assert cleanup.run() == contract.EXIT_OK


@pytest.mark.parametrize(
    "prefix", ["s3://videos/", "s3://videos/videojobs/media/", "not-a-uri", ""]
)
def test_a_prefix_that_is_not_one_videojobs_is_refused(
    s3: S3Server, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _environment(monkeypatch, s3, prefix)

    assert cleanup.run() == contract.EXIT_INVALID_INPUT
