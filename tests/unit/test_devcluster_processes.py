"""Teardown stops only what the cluster started, by PID."""

import shutil
import subprocess
import time
from pathlib import Path

from vidop_devcluster import processes


def test_started_process_runs_until_stopped(tmp_path: Path) -> None:
    sleeper = processes.start(
        "sleeper", [shutil.which("sleep") or "sleep", "60"], tmp_path / "sleeper.log", detach=True
    )
    assert processes.is_running(sleeper)

    processes.stop(sleeper)

    assert not processes.is_running(sleeper)


def test_a_pid_running_another_program_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        # Same PID, but recorded as another executable: a recycled PID.
        stale = processes.Started(name="etcd", pid=other.pid, executable="/nowhere/etcd")
        assert not processes.is_running(stale)

        processes.stop(stale)

        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_logs_go_to_the_component_log_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "echo.log"
    started = processes.start(
        "echo", ["/bin/sh", "-c", "echo hello-from-component"], log, detach=False
    )
    for _ in range(100):
        if not processes.is_running(started):
            break
        time.sleep(0.05)
    processes.stop(started)
    assert "hello-from-component" in log.read_text()
