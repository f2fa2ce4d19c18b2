"""artifactRetention.policy: delete end to end: a VideoJob rendered by the
real stages on the local node, deleted, and its artifacts gone from the real
S3 server by the cleanup Job, which runs as a process on the local node with
the stages' S3 Secret; the namespace's cached results stay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import (
    Cluster,
    LocalNodeProcess,
    Operator,
    create_s3_secret,
    get_videojob,
    running_operator,
    stages_on,
    videojob_manifest,
    wait_for_phase,
    wait_until,
)
from vidop_devcluster.s3 import S3Server

pytestmark = pytest.mark.cluster

SECRET = "vid-operator-s3"
BUCKET = "e2e-retention"


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    local_node: LocalNodeProcess,
    s3: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    s3.create_bucket(BUCKET)
    configuration = stages_on(local_node.placement(), s3, BUCKET, SECRET)
    # The cleanup Job runs there too, as a real process.
    configuration["artifactRetention"] = {"policy": "delete", **local_node.placement()}
    with running_operator(cluster, tmp_path_factory.mktemp("operator"), configuration) as running:
        yield running


def _keys(s3: S3Server, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_a_deleted_videojobs_artifacts_are_deleted_and_the_cache_stays(
    cluster: Cluster, namespace: str, s3: S3Server, operator: Operator
) -> None:
    create_s3_secret(cluster, namespace, s3, SECRET)
    manifest = videojob_manifest(
        "short-lived", durationSeconds=4, resolution="320x180", fps=8, prompt="A fox in the snow."
    )
    cluster.apply(manifest, namespace)
    done = wait_for_phase(cluster, namespace, "short-lived", "Succeeded", timeout=240)
    own = f"videojobs/{namespace}/short-lived/{done['metadata']['uid']}/"
    cache = f"videojobs/{namespace}/_cache/"
    made = _keys(s3, own)
    assert any(key.endswith(".mp4") for key in made), made
    cached = _keys(s3, cache)
    assert cached

    cluster.kubectl("delete", "videojob", "short-lived", "-n", namespace, "--wait=false")

    wait_until(
        "the VideoJob to go", lambda: get_videojob(cluster, namespace, "short-lived") is None
    )
    wait_until("its artifacts to go", lambda: not _keys(s3, own), timeout=120, interval=1)
    assert _keys(s3, cache) == cached
    print(f"\ndeleted {len(made)} objects under s3://{BUCKET}/{own}; kept {len(cached)} cached")
