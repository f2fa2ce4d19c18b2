"""The images the Dockerfiles make, built by ``make images`` and run with
podman under the restrictions a stage pod has (``jobs.build_stage_job``):
their names are the ones the operator and the chart use, each stage image
runs its console script as uid 10001 on a read-only root filesystem with no
capability and no network, holds the programs its stage runs and the bytecode
it cannot write, and the four default stages, as containers, take a prompt to
an MP4 through the real S3 server.

The images come from the session's ``images`` fixture (hack/images.sh: about
three minutes cold, seconds from podman's layer cache); the archive for
containerd is read, not imported.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import CHART, podman, podman_start
from vid_operator import config, contract, jobs, pipeline
from vid_operator.api.models import VideoJobSpec
from vidop_devcluster.realnode import PAUSE_IMAGE, ImageArchive
from vidop_devcluster.s3 import S3Server
from vidop_stages.media import probe

# A cold build (stand-in base and every image) takes about three minutes on 2 cores.
pytestmark = pytest.mark.timeout(900)

STAGES = ("script_gen", "voice_gen", "video_gen", "compositing", "loudness")
PROGRAMS = {
    "script_gen": set(),
    "voice_gen": {"espeak-ng"},
    "video_gen": {"ffmpeg", "ffprobe"},
    "compositing": {"ffmpeg", "ffprobe"},
    "loudness": {"ffmpeg", "ffprobe"},
}
"""What each stage image holds beyond Python (the stage base holds none)."""
VERSION = "0.1.0"


def stage_image(stage: str) -> str:
    """The image the operator's defaults name (loudness, outside the default
    pipeline, follows the same pattern in docs/operator.md)."""
    return f"{config.DEFAULT_IMAGE_REPOSITORY}/{stage.replace('_', '-')}:{VERSION}"


def default_job(stage: str) -> dict[str, Any]:
    """The Job the operator makes for ``stage`` of a default VideoJob."""
    spec = VideoJobSpec.model_validate({"prompt": "a cat surfing"})
    configured = config.OperatorConfig()
    stages = {s.name: s for s in pipeline.resolve(spec, configured)}
    return jobs.build_stage_job(
        jobs.Owner("cat", "media", "uid-1"), spec, stages[stage], configured
    )


def pod_restrictions(job: dict[str, Any]) -> list[str]:
    """podman's flags for what the Job's securityContexts ask of the kubelet
    (seccomp RuntimeDefault is podman's default profile)."""
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for_pod, for_container = pod["securityContext"], container["securityContext"]
    assert for_pod["runAsNonRoot"] and for_pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert for_container["readOnlyRootFilesystem"]
    assert not for_container["allowPrivilegeEscalation"]
    return [
        f"--user={for_pod['runAsUser']}:{for_pod['runAsGroup']}",
        "--read-only",
        f"--cap-drop={','.join(for_container['capabilities']['drop'])}",
        "--security-opt=no-new-privileges",
    ]


RESTRICTED = pod_restrictions(default_job("script_gen"))

PROBE = """
import importlib.util, json, os, pathlib, shutil, sys
import vid_operator, vidop_stages
sources = [
    path
    for package in (vid_operator, vidop_stages)
    for path in pathlib.Path(package.__file__).parent.rglob("*.py")
]
try:
    pathlib.Path(sys.prefix, "probe").write_text("")
    writable = True
except OSError:
    writable = False
print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "python": sys.executable,
    "sources": len(sources),
    "without_bytecode": [
        str(path) for path in sources
        if not os.path.exists(importlib.util.cache_from_source(str(path)))
    ],
    "root_writable": writable,
    "programs": sorted(
        name for name in ("ffmpeg", "ffprobe", "espeak-ng", sys.argv[1]) if shutil.which(name)
    ),
}))
"""


def test_images_carry_the_names_the_operator_and_the_chart_use(images: ImageArchive) -> None:
    defaults = config.OperatorConfig()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    operator_image = f"{values['image']['repository']}:{chart['appVersion']}"

    # The real node's containerd starts every pod with the pause image.
    expected = {stage_image(stage) for stage in STAGES} | {operator_image, PAUSE_IMAGE}
    assert {stage.image for stage in defaults.stages.values()} <= expected
    assert defaults.artifact_retention.image in expected
    assert set(images.ids) == expected
    # The archive holds exactly these, under these names, as built.
    with tarfile.open(images.archive) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
    assert sorted(tag for entry in manifest for tag in entry["RepoTags"]) == sorted(expected)
    for ref, image_id in images.ids.items():
        inspected = podman("image", "inspect", "--format", "{{.Id}}", ref)
        assert inspected.stdout.strip() == image_id, inspected.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_stage_image_runs_its_stage_as_the_pod_would(images: ImageArchive, stage: str) -> None:
    ref = stage_image(stage)
    command = [f"vidop-stage-{stage.replace('_', '-')}"]
    if stage != "loudness":  # not in the default pipeline, so no default Job
        (container,) = default_job(stage)["spec"]["template"]["spec"]["containers"]
        assert container["command"] == command
    entrypoint = podman("image", "inspect", "--format", "{{json .Config.Entrypoint}}", ref)
    assert json.loads(entrypoint.stdout) == command, entrypoint.stderr

    probed = podman(
        "run", "--rm", *RESTRICTED, "--network=none", "--entrypoint=python", ref,
        "-c", PROBE, command[0],
    )  # fmt: skip
    assert probed.returncode == 0, probed.stderr
    facts = json.loads(probed.stdout)

    assert (facts["uid"], facts["gid"]) == (10001, 10001)
    assert facts["python"] == "/usr/local/bin/python"
    assert not facts["root_writable"]
    # Python cannot write bytecode at run time, so the image must hold it all.
    assert facts["sources"] > 20 and facts["without_bytecode"] == []
    assert set(facts["programs"]) == PROGRAMS[stage] | {command[0]}

    # The entrypoint itself, with the contract's variables missing: the
    # stage's own failure, in its termination-message file, not a crash of
    # the image (interpreter, script or imports).
    started = podman("run", "--rm", *RESTRICTED, "--network=none", ref)
    assert started.returncode == 1, started.stderr
    assert "the stage contract's variable" in started.stderr


def test_operator_image_starts_as_the_chart_runs_it(images: ImageArchive) -> None:
    (operator_image,) = (ref for ref in images.ids if ref.endswith(f"operator:{VERSION}"))
    shown = podman("run", "--rm", *RESTRICTED, "--network=none", operator_image, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: vid-operator")
    # Its dependencies come compiled: a read-only root cannot take bytecode later.
    compiled = podman(
        "run",
        "--rm",
        *RESTRICTED,
        "--network=none",
        "--entrypoint=python3",
        operator_image,
        "-c",
        "import importlib.util, os, kopf, kubernetes; print(all(os.path.exists("
        "importlib.util.cache_from_source(m.__file__)) for m in (kopf, kubernetes)))",
    )
    assert compiled.stdout.strip() == "True", compiled.stderr


def test_the_default_pipeline_runs_in_the_stage_images(
    images: ImageArchive, s3: S3Server, tmp_path: Path
) -> None:
    """script_gen, voice_gen and video_gen side by side, then compositing,
    each a container restricted as its pod is, on the host's network to reach
    the S3 server on loopback, with a fresh scratch volume and its own
    termination-message file."""
    bucket = f"images-pipeline-{secrets.token_hex(3)}"
    s3.create_bucket(bucket)
    params = {"prompt": "A cat surfing at sunset.", "durationSeconds": 4, "resolution": "320x180"}
    environment = {
        **s3.environment(),
        contract.ENV_JOB_NAME: "cat",
        contract.ENV_JOB_NAMESPACE: "media",
        contract.ENV_JOB_UID: "uid-1",
        contract.ENV_PARAMS: json.dumps({**params, "fps": 24, "voice": "en-us"}),
        contract.ENV_ARTIFACT_PREFIX: contract.artifact_prefix(
            bucket, "videojobs", "media", "cat", "uid-1"
        ),
    }

    def start(stage: str) -> tuple[subprocess.Popen[str], Path]:
        message = tmp_path / f"{stage}.message"
        message.touch(mode=0o666)
        message.chmod(0o666)
        variables = [f"--env={name}={value}" for name, value in environment.items()]
        process = podman_start(
            "run", "--rm", *RESTRICTED, "--network=host", *variables,
            f"--env={contract.ENV_STAGE}={stage}",
            f"--tmpfs={contract.SCRATCH_DIR}:rw,mode=1777",
            f"--volume={message}:{contract.TERMINATION_MESSAGE_PATH}:rw",
            stage_image(stage),
        )  # fmt: skip
        return process, message

    def finish(started: tuple[subprocess.Popen[str], Path]) -> dict[str, Any]:
        process, message = started
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-3000:]
        summary = contract.read_summary(message.read_text())
        assert summary is not None, message.read_text()
        return summary

    finish(start("script_gen"))
    side_by_side = [start("voice_gen"), start("video_gen")]
    for started in side_by_side:
        finish(started)
    summary = finish(start("compositing"))

    final = tmp_path / "video.mp4"
    s3.client().download_file(bucket, "videojobs/media/cat/uid-1/compositing/video.mp4", str(final))
    info = probe(final)
    codecs = sorted(stream.codec for stream in info.streams)
    assert codecs == ["aac", "h264", "mov_text"], summary
    assert info.duration == pytest.approx(4, abs=0.1)
