"""Running the programs the stages drive (ffmpeg, ffprobe, espeak-ng).

Used by the stages' I/O code. A program that fails, hangs past its time limit
or is missing raises :class:`ToolFailed`: a retryable failure, with the end of
the program's own error output as the reason. Most programs answer on their
standard output; ffmpeg's measuring filters (``ebur128``, ``loudnorm``, which
the loudness stage runs) only log, so a caller may ask for stderr instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

# The status line is short: the last lines of a program's stderr say what broke.
_STDERR_TAIL_CHARACTERS = 600
DEFAULT_TIMEOUT_SECONDS = 1800.0
FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y")
"""ffmpeg that reads no keyboard, prints only errors and overwrites its output."""
FFMPEG_REPORTING = ("ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", "-y")
"""ffmpeg as :data:`FFMPEG`, but logging at info level, where its filters' reports
(``ebur128``'s summary, ``loudnorm``'s JSON) go; read them with
``run_tool(..., output="stderr")``. No progress lines (``-nostats``)."""


class ToolFailed(Exception):
    """An external program exited non-zero, timed out or is not installed."""


def run_tool(
    args: Sequence[str | Path],
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    text_input: str = "",
    output: Literal["stdout", "stderr"] = "stdout",
) -> str:
    """Run ``args`` and return its standard output, or its standard error
    with ``output="stderr"`` (for a program that reports by logging)."""
    command = [str(arg) for arg in args]
    program = Path(command[0]).name
    try:
        completed = subprocess.run(
            command,
            input=text_input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ToolFailed(f"{program} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{program} ran longer than {timeout:.0f} s") from None
    if completed.returncode != 0:
        tail = completed.stderr.strip()[-_STDERR_TAIL_CHARACTERS:]
        raise ToolFailed(f"{program} exited with {completed.returncode}: {tail}")
    return completed.stderr if output == "stderr" else completed.stdout
