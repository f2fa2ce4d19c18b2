"""How work arrives in a benchmark scenario, shared by both drivers.

The benchmark driver (VideoJobs for the operator) and the oracle (stage Jobs
it drives itself) submit their pipelines through :func:`drive`, so both see
the same arrival pattern: one after another, all at once, or at a fixed
rate. :class:`Completions` is how either learns that a pipeline ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from vid_operator.api.models import STAGE_NAMES

# Concurrent creates while submitting a burst: a client as eager as a CI
# system applying a folder of manifests, not so many that the submitter
# itself is what the run measures.
SUBMIT_WORKERS = 8


@dataclass(frozen=True)
class Arrival:
    """``sequential``: the next pipeline once the last has ended;
    ``burst``: all at once; ``steady``: ``rate`` per second."""

    kind: str
    rate: float = 0.0


def pipeline_spec(run_time: str) -> dict[str, Any]:
    """The VideoJob spec of a benchmark pipeline: every stage's pod "runs"
    exactly ``run_time`` on the kwok nodes (no jitter)."""
    return {
        "prompt": "a benchmark of the control plane",
        "stages": {
            stage: {"podAnnotations": {"kwok.vidop.io/run-time": run_time}} for stage in STAGE_NAMES
        },
    }


class Completions:
    """Which pipelines have ended, and how; waited on by :func:`drive`."""

    def __init__(self) -> None:
        self.ended: dict[str, tuple[str, float]] = {}
        """name -> (phase, time.time() when it was seen ending)."""
        self._changed = threading.Condition()

    def end(self, name: str, phase: str) -> None:
        with self._changed:
            if name not in self.ended:
                self.ended[name] = (phase, time.time())
                self._changed.notify_all()

    def wait(self, names: list[str], timeout: float) -> list[str]:
        """Wait until every one of ``names`` has ended; the ones that have
        not when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = [n for n in names if n not in self.ended]
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self._changed.wait(min(left, 1.0))


def drive(
    arrival: Arrival,
    names: list[str],
    submit: Callable[[str], None],
    completions: Completions,
    timeout: float,
) -> dict[str, float]:
    """Submit ``names`` as ``arrival`` says and wait for all to end. Returns
    when each submission started (``time.time()``); raises TimeoutError
    naming what did not end."""
    submitted: dict[str, float] = {}

    def submit_one(name: str) -> None:
        submitted[name] = time.time()
        submit(name)

    deadline = time.monotonic() + timeout
    if arrival.kind == "sequential":
        for name in names:
            submit_one(name)
            if completions.wait([name], deadline - time.monotonic()):
                raise TimeoutError(f"{name} did not end")
        return submitted
    with ThreadPoolExecutor(SUBMIT_WORKERS, thread_name_prefix="submit") as pool:
        if arrival.kind == "burst":
            list(pool.map(submit_one, names))
        elif arrival.kind == "steady":
            start = time.monotonic()
            futures = []
            for index, name in enumerate(names):
                # Paced against the start, so a slow create does not push
                # every later arrival back.
                time.sleep(max(0.0, start + index / arrival.rate - time.monotonic()))
                futures.append(pool.submit(submit_one, name))
            for future in futures:
                future.result()
        else:
            raise ValueError(f"unknown arrival kind {arrival.kind!r}")
    missing = completions.wait(names, deadline - time.monotonic())
    if missing:
        raise TimeoutError(f"{len(missing)} pipelines did not end, e.g. {missing[:3]}")
    return submitted
