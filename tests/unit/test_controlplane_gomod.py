"""hack/controlplane/go.mod is generated; the committed one must match a fresh run."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "hack" / "controlplane"


@pytest.mark.timeout(900)  # a cold module cache downloads the whole k8s graph
def test_committed_gomod_matches_a_fresh_generation(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.fail("Go is needed to regenerate hack/controlplane/go.mod")
    for name in ("gen-gomod.sh", "main.go"):
        shutil.copy2(SOURCE / name, tmp_path / name)
    committed = (SOURCE / "go.mod").read_text()
    version = re.search(r"^\tk8s\.io/kubernetes (v\S+)$", committed, re.MULTILINE)
    assert version, "go.mod does not require k8s.io/kubernetes"

    subprocess.run(
        ["bash", str(tmp_path / "gen-gomod.sh"), version[1]],
        check=True,
        capture_output=True,
        timeout=600,
    )

    for name in ("go.mod", "go.sum"):
        assert (tmp_path / name).read_text() == (SOURCE / name).read_text(), (
            f"hack/controlplane/{name} is stale: run `make controlplane-gomod`"
        )
