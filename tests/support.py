"""Helpers the tests share: the handle on the cluster and polling with a deadline."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from vid_operator.devcluster import DevCluster

CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / "videojobs.vidop.io.yaml"


@dataclass
class Cluster:
    """What a test gets: an admin API client, the kubeconfig behind it, the
    folder with kubectl, and the DevCluster when this session started one."""

    api: client.ApiClient
    kubeconfig: Path
    bin_dir: Path
    dev: DevCluster | None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def apply(
        self, manifest: dict[str, Any], namespace: str | None = None, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply`` of one manifest (extra flags in ``args``)."""
        where = ["-n", namespace] if namespace else []
        return self.kubectl(
            "apply", *where, *args, "-f", "-", input=json.dumps(manifest), check=check
        )

    def install_videojob_crd(self) -> None:
        """The generated CRD, applied and Established."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
        self.kubectl(
            "wait", "--for=condition=Established", "crd/videojobs.vidop.io", "--timeout=30s"
        )


def wait_until(what: str, check: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
