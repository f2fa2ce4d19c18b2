"""Measure the operator's reaction time and API writes per VideoJob.

Run against a cluster with the operator running (``make demo`` leaves none
running; start one with ``python -m vid_operator`` and ``VIDOP_CONFIG``):

    python hack/measure_reaction.py --count 10 --operator-log .cluster/logs/operator.log

It applies ``--count`` VideoJobs one after another in a fresh namespace, with
stage pods that finish at once on the kwok nodes, while a watch on the Jobs
records when each Job is first seen and when it is first seen Complete (the
receive times of one watcher, so both ends of each interval share a clock).
Reaction = next stage's Job seen - its last dependency's Job seen Complete.
A first look before the benchmarks of the performance work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

DEPENDENCIES = {
    "voice_gen": ["script_gen"],
    "video_gen": ["script_gen"],
    "compositing": ["voice_gen", "video_gen"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument(
        "--operator-log", type=Path, help="the operator's log, to count its status patches"
    )
    args = parser.parse_args()
    config.load_kube_config()
    core, batch = client.CoreV1Api(), client.BatchV1Api()
    custom = client.CustomObjectsApi()
    namespace = f"reaction-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    while not core.list_namespaced_service_account(namespace).items:
        time.sleep(0.1)

    seen: dict[str, float] = {}
    complete: dict[str, float] = {}
    stop = threading.Event()

    def watch_jobs() -> None:
        stream = watch.Watch()
        for event in stream.stream(batch.list_namespaced_job, namespace, timeout_seconds=600):
            now = time.monotonic()
            job = event["object"]
            key = job.metadata.name
            seen.setdefault(key, now)
            if any(
                c.type == "Complete" and c.status == "True" for c in (job.status.conditions or [])
            ):
                complete.setdefault(key, now)
            if stop.is_set():
                stream.stop()

    watcher = threading.Thread(target=watch_jobs, daemon=True)
    watcher.start()
    started = time.monotonic()
    names = []
    for index in range(args.count):
        name = f"bench-{index}"
        names.append(name)
        stages = {
            s: {"podAnnotations": {"kwok.vidop.io/run-time": "0s"}}
            for s in ("script_gen", "voice_gen", "video_gen", "compositing")
        }
        custom.create_namespaced_custom_object(
            "vidop.io",
            "v1alpha1",
            namespace,
            "videojobs",
            {
                "apiVersion": "vidop.io/v1alpha1",
                "kind": "VideoJob",
                "metadata": {"name": name},
                "spec": {"prompt": "benchmark", "stages": stages},
            },
        )
        while True:
            obj = custom.get_namespaced_custom_object(
                "vidop.io", "v1alpha1", namespace, "videojobs", name
            )
            if obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                break
            time.sleep(0.05)
    elapsed = time.monotonic() - started
    stop.set()

    reactions = []
    for name in names:
        for stage, dependencies in DEPENDENCIES.items():
            job = f"{name}-{stage.replace('_', '-')}"
            deps = [complete[f"{name}-{d.replace('_', '-')}"] for d in dependencies]
            reactions.append((seen[job] - max(deps)) * 1000)
    reactions.sort()
    events = core.list_namespaced_event(namespace).items
    ours = [e for e in events if e.involved_object.kind == "VideoJob"]
    patches = 0
    if args.operator_log:
        for line in args.operator_log.read_text().splitlines():
            try:
                record: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if record.get("namespace") == namespace and record.get("event") == "status written":
                patches += 1
    print(
        json.dumps(
            {
                "videojobs": args.count,
                "seconds": round(elapsed, 2),
                "reaction_ms": {
                    "p50": round(statistics.median(reactions), 1),
                    "p95": round(reactions[int(0.95 * (len(reactions) - 1))], 1),
                    "max": round(reactions[-1], 1),
                },
                "writes_per_videojob": {
                    "job_creates": 4,
                    "status_patches": patches / args.count if patches else None,
                    "events": len(ours) / args.count,
                },
            },
            indent=2,
        )
    )
    core.delete_namespace(namespace)


if __name__ == "__main__":
    main()
