"""Helpers the tests share: the handle on the cluster and polling with a deadline."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from vid_operator.devcluster import DevCluster


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
