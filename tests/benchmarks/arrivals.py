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

from vid_operator.api.models import MAX_STAGE_OVERRIDE_CHARS, STAGE_NAMES

# Concurrent creates while submitting a burst: a client as eager as a CI
# system applying a folder of manifests, not so many that the submitter
# itself is what the run measures.
SUBMIT_WORKERS = 8

# The CRD's bounds that a maximal VideoJob (:func:`max_pipeline_spec`) fills.
RUN_TIME_ANNOTATION = "kwok.vidop.io/run-time"
MAX_PROMPT_CHARS = 4000
MAX_ENV_VALUE_CHARS = 4096
MAX_ENV_ENTRIES = 64
MAX_ANNOTATION_VALUE_CHARS = 1024


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
            stage: {"podAnnotations": {RUN_TIME_ANNOTATION: run_time}} for stage in STAGE_NAMES
        },
    }


def max_pipeline_spec(run_time: str) -> dict[str, Any]:
    """The largest VideoJob spec the CRD allows, as :func:`pipeline_spec`
    runs it: a prompt of the most characters, and for every stage an override
    whose command, args, env values and pod annotation values hold exactly
    the most characters a stage override may hold together
    (``MAX_STAGE_OVERRIDE_CHARS``), the kwok run-time annotation counted."""
    prompt = ("a benchmark of the control plane, as long as a prompt may be. " * 70)[
        :MAX_PROMPT_CHARS
    ]
    stages: dict[str, dict[str, Any]] = {}
    for stage in STAGE_NAMES:
        command = [_fill(stage, "command", 1024)]
        args = [_fill(stage, "arg", 1024), _fill(stage, "arg", 1024)]
        annotations = {
            RUN_TIME_ANNOTATION: run_time,
            "bench.vidop.io/filler": _fill(stage, "annotation", MAX_ANNOTATION_VALUE_CHARS),
        }
        left = (
            MAX_STAGE_OVERRIDE_CHARS
            - sum(map(len, command))
            - sum(map(len, args))
            - sum(map(len, annotations.values()))
        )
        env: list[dict[str, str]] = []
        while left > 0:
            size = min(left, MAX_ENV_VALUE_CHARS)
            env.append({"name": f"BENCH_FILL_{len(env)}", "value": _fill(stage, "env", size)})
            left -= size
        assert len(env) <= MAX_ENV_ENTRIES, "the stage override does not fit the env entries"
        stages[stage] = {
            "command": command,
            "args": args,
            "env": env,
            "podAnnotations": annotations,
        }
        assert override_chars(stages[stage]) == MAX_STAGE_OVERRIDE_CHARS
    return {"prompt": prompt, "stages": stages}


def _fill(stage: str, what: str, size: int) -> str:
    """``size`` characters, different for every stage, as real overrides are."""
    return (f"{stage}-{what}-" * size)[:size]


def override_chars(override: dict[str, Any]) -> int:
    """What the CRD's CEL rule counts of a stage override: the characters of
    its command, args, env values and pod annotation values together."""
    return (
        sum(map(len, override.get("command") or []))
        + sum(map(len, override.get("args") or []))
        + sum(len(e.get("value", "")) for e in override.get("env") or [])
        + sum(map(len, (override.get("podAnnotations") or {}).values()))
    )


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
