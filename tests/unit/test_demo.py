"""`make demo`'s pure parts (hack/demo.py): the Makefile hands the tenant's
PROMPT, DURATION, RESOLUTION and VJ over as typed, the VideoJob is the
example's with them, the state file keeps its S3 keys to its owner, and
fetch reads the bucket and key of an s3:// address. Running the demo is
tests/integration/test_demo.py's and the demo's own."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from hack import demo

from vid_operator.api.models import VideoJobSpec
from vidop_devcluster import processes

REPO = Path(__file__).resolve().parents[2]
TRICKY_PROMPT = 'It\'s a "fox" at $HOME, `id`, $(id), ${x}, \\n, 100% snow;\n夜の雪の中を走る赤い狐'


def _demo_args(*assignments: str) -> list[str]:
    """The arguments `make demo` gives hack/demo.py for these command-line
    assignments: the Makefile's own DEMO_ARGS, printed by a probe target."""
    probe = (
        "probe: ; @python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' $(DEMO_ARGS)\n"
    )
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", "-f", "Makefile", "-f", "-", "probe", *assignments],
        input=probe,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env={**os.environ, "PROMPT": "from the environment", "NAME": "wsl-host"},
    )
    arguments: list[str] = json.loads(result.stdout)
    return arguments


def test_the_makefile_hands_the_prompt_over_as_typed() -> None:
    assert _demo_args(f"PROMPT={TRICKY_PROMPT}", "DURATION=12", "RESOLUTION=640x360") == [
        f"--prompt={TRICKY_PROMPT}",
        "--duration=12",
        "--resolution=640x360",
    ]


def test_only_the_command_line_counts_and_keep_is_a_flag() -> None:
    assert _demo_args() == []
    assert _demo_args("KEEP=1", "VJ=my-video") == ["--name=my-video", "--keep"]
    assert _demo_args("KEEP=0") == []


def test_without_arguments_the_videojob_is_the_example() -> None:
    example = yaml.safe_load((REPO / "examples" / "videojob.yaml").read_text())

    assert demo.videojob_manifest() == example


def test_the_tenants_fields_replace_the_examples_and_the_spec_stays_valid() -> None:
    manifest = demo.videojob_manifest(TRICKY_PROMPT, duration=12, resolution="640x360")

    spec = VideoJobSpec.model_validate(manifest["spec"])
    assert (spec.prompt, spec.duration_seconds, spec.resolution) == (TRICKY_PROMPT, 12, "640x360")
    assert manifest["spec"]["voice"] == "en"  # the rest is the example's
    assert json.loads(json.dumps(manifest)) == manifest  # what kubectl reads on stdin


def test_a_new_prompt_gets_a_name_that_recalls_it_unless_one_is_given() -> None:
    fox = demo.videojob_manifest("A red fox running through snow at night")

    assert fox["metadata"]["name"].startswith("a-red-fox-running-through-snow-")
    assert demo.name_for("A red fox, by day") != demo.name_for("A red fox, by night")
    assert demo.name_for("夜の雪の中を走る赤い狐").startswith("demo-")
    assert demo.videojob_manifest("x", name="mine")["metadata"]["name"] == "mine"
    long_name = demo.name_for("word " * 100)
    assert len(long_name) <= 63 and long_name[0].isalnum() and long_name[-1].isalnum()


def test_s3_addresses() -> None:
    assert demo.parse_s3_uri("s3://vid-operator/videojobs/a/b/final.mp4") == (
        "vid-operator",
        "videojobs/a/b/final.mp4",
    )
    for wrong in ("vid-operator/final.mp4", "s3://vid-operator", "s3:///key", "https://x/y"):
        with pytest.raises(demo.DemoError, match="not an s3://bucket/key"):
            demo.parse_s3_uri(wrong)


def test_the_state_file_is_the_owners_alone_and_reads_back(tmp_path: Path) -> None:
    state = demo.DemoState(
        keep=True,
        owner=processes.Started("make demo", 4242, "/usr/bin/python3"),
        kubeconfig="/x/kubeconfig",
        kubectl="/x/kubectl",
        s3=demo.S3Access("http://127.0.0.1:9000", "us-east-1", "AK", "secret", "vid-operator"),
        started=[processes.Started("operator", 4343, "/usr/bin/python3")],
    )
    path = tmp_path / demo.STATE_FILE
    path.write_text("{}")  # an older, world-readable one is replaced
    path.chmod(0o644)

    state.save(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo.DemoState.load(path) == state
    assert demo.DemoState.load(tmp_path / "none.json") is None


def test_the_next_steps_name_a_working_kubectl_and_never_the_secret(tmp_path: Path) -> None:
    state = demo.DemoState(
        keep=True,
        owner=processes.Started("make demo", 1, "python"),
        kubeconfig=str(tmp_path / "cluster" / "kubeconfig"),
        kubectl="/cache/bin dir/kubectl",
        ran_on="the local node",
        s3=demo.S3Access("http://127.0.0.1:9000", "us-east-1", "AK", "s3cr3t-key", "b"),
    )

    steps = demo.next_steps(state, tmp_path)

    assert f"export KUBECONFIG={tmp_path}/cluster/kubeconfig PATH='/cache/bin dir':$PATH" in steps
    assert f"VIDOP_DEMO_DIR={tmp_path} make fetch VJ=<name>" in steps
    assert "make demo-down" in steps and "kubectl get vj -w" in steps
    assert "s3cr3t-key" not in steps
