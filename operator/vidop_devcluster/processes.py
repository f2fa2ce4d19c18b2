"""Start, watch and stop the control plane's processes by PID.

Called by :mod:`vidop_devcluster.cluster`. A process started here runs
in its own session (so ``make cluster-up`` can return while it keeps running),
writes to its own log file, and is recorded with the executable it was started
from: :func:`stop` signals a PID only while that PID still runs that
executable, so a recycled PID is never hit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Started:
    """A process this package started."""

    name: str
    pid: int
    executable: str


# The processes this Python process started itself: for those, Popen knows for
# sure whether they still run and with which exit code (and reaps them).
_children: dict[int, subprocess.Popen[bytes]] = {}


def die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM when the process
    # that started it exits, however it exits (a killed pytest included).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def start(
    name: str,
    argv: list[str],
    log_file: Path,
    *,
    detach: bool,
    env: Mapping[str, str] | None = None,
) -> Started:
    """Start ``argv`` with stdout and stderr appended to ``log_file``, in
    ``env`` (default: this process's environment). Detached, it outlives this
    process (``make cluster-up``, ``make demo KEEP=1``); otherwise it is
    stopped when this process ends (the test session's cluster)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=None if detach else die_with_parent,
        )
    _children[process.pid] = process
    return Started(name=name, pid=process.pid, executable=argv[0])


def exit_code(started: Started) -> int | None:
    """The exit code of a process this Python process started and that has
    ended; None while it runs or when another process started it."""
    child = _children.get(started.pid)
    return None if child is None else child.poll()


def is_running(started: Started) -> bool:
    """Whether ``started.pid`` is alive and still the program we started
    (not a zombie, not a recycled PID)."""
    if (child := _children.get(started.pid)) is not None:
        return child.poll() is None
    try:
        stat = Path(f"/proc/{started.pid}/stat").read_text()
        argv0 = Path(f"/proc/{started.pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and argv0.decode(errors="replace") == started.executable


def stop(started: Started, grace_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_seconds``; a no-op when it is gone."""
    if not is_running(started):
        return
    with contextlib.suppress(ProcessLookupError):  # it may end on its own meanwhile
        os.kill(started.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not is_running(started):
            return
        time.sleep(0.05)
    if is_running(started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(started.pid, signal.SIGKILL)
    for _ in range(100):
        if not is_running(started):
            return
        time.sleep(0.05)


def memory_mib(started: Started) -> tuple[int, int] | None:
    """Resident memory now and at its peak (VmRSS, VmHWM) in MiB, or None
    when the process is gone."""
    if not is_running(started):
        return None
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{started.pid}/status").read_text().splitlines()
    )
    rss, peak = (int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM"))
    return rss, peak
