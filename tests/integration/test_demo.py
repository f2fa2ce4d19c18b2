"""`make demo`'s two ends on the real API server and S3 store: the tenant's
prompt reaches the VideoJob as typed (and what the API server refuses comes
back in its words), and `make fetch` downloads a Succeeded VideoJob's video
and thumbnail. The run in between is the operator's, which the e2e suite
covers; here no operator runs, and the test writes the status a finished
VideoJob has."""

from __future__ import annotations

from pathlib import Path

import pytest
from hack import demo
from kubernetes import client

from tests.support import Cluster, get_videojob
from vidop_devcluster import processes
from vidop_devcluster.s3 import S3Server

pytestmark = pytest.mark.cluster

PROMPT = 'It\'s a "fox" at $HOME, `id`, $(id);\nand then 夜の雪の中を走る赤い狐 🦊'


@pytest.fixture
def demo_state(cluster: Cluster, s3: S3Server, s3_bucket: str) -> demo.DemoState:
    """The state file's view of this session's cluster and S3 store."""
    cluster.install_videojob_crd()
    return demo.DemoState(
        keep=True,
        owner=processes.Started("make demo", 1, "python"),
        kubeconfig=str(cluster.kubeconfig),
        kubectl=str(cluster.bin_dir / "kubectl"),
        s3=demo.S3Access(s3.endpoint_url, s3.region, s3.access_key, s3.secret_key, s3_bucket),
    )


def test_the_prompt_reaches_the_videojob_as_typed(
    cluster: Cluster, namespace: str, demo_state: demo.DemoState
) -> None:
    manifest = demo.videojob_manifest(PROMPT, duration=12)
    kubectl = [*demo_state.kubectl_argv(), f"--namespace={namespace}"]

    demo.submit(kubectl, manifest, dry_run=True)
    assert get_videojob(cluster, namespace, manifest["metadata"]["name"]) is None
    demo.submit(kubectl, manifest)

    created = get_videojob(cluster, namespace, manifest["metadata"]["name"])
    assert created is not None
    assert created["spec"]["prompt"] == PROMPT
    assert created["spec"]["durationSeconds"] == 12


def test_the_api_servers_refusal_is_shown_in_its_words(
    namespace: str, demo_state: demo.DemoState
) -> None:
    kubectl = [*demo_state.kubectl_argv(), f"--namespace={namespace}"]

    with pytest.raises(demo.DemoError) as refused:
        demo.submit(kubectl, demo.videojob_manifest(duration=0), dry_run=True)

    assert "the API server refused the VideoJob" in str(refused.value)
    assert "spec.durationSeconds" in str(refused.value)


def test_fetch_downloads_a_succeeded_videojobs_video_and_thumbnail(
    cluster: Cluster, namespace: str, demo_state: demo.DemoState, s3: S3Server, tmp_path: Path
) -> None:
    manifest = demo.videojob_manifest(name="fox")
    demo.submit([*demo_state.kubectl_argv(), f"--namespace={namespace}"], manifest)
    assert demo_state.s3 is not None
    bucket = demo_state.s3.bucket
    objects = client.CustomObjectsApi(cluster.api)

    with pytest.raises(demo.DemoError, match="has not succeeded: it is not started yet"):
        demo.fetch(demo_state, "fox", namespace, tmp_path)
    with pytest.raises(demo.DemoError, match="there is no videojob/wolf"):
        demo.fetch(demo_state, "wolf", namespace, tmp_path)

    s3.client().put_object(Bucket=bucket, Key="videojobs/fox/final.mp4", Body=b"an mp4")
    s3.client().put_object(Bucket=bucket, Key="videojobs/fox/thumb.jpg", Body=b"a jpeg")
    objects.patch_namespaced_custom_object_status(
        "vidop.io",
        "v1alpha1",
        namespace,
        "videojobs",
        "fox",
        {
            "status": {
                "phase": "Succeeded",
                "outputs": {
                    "videoUri": f"s3://{bucket}/videojobs/fox/final.mp4",
                    "thumbnailUri": f"s3://{bucket}/videojobs/fox/thumb.jpg",
                },
            }
        },
    )

    files = demo.fetch(demo_state, "fox", namespace, tmp_path)

    assert files == [tmp_path / f"{namespace}.fox.mp4", tmp_path / f"{namespace}.fox.jpg"]
    assert [path.read_bytes() for path in files] == [b"an mp4", b"a jpeg"]
