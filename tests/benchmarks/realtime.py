"""The real-time benchmark: a 60-second VideoJob made by the real stages, against
the video's own length.

``make bench-realtime`` runs ``python -m tests.benchmarks.realtime``
(``--help`` for the knobs). It starts its own development control plane, the
S3 server and the local node (stage pods as host processes: real Pillow,
ffmpeg and espeak-ng; ``--gpus`` simulated GPUs, so that many scenes render at
once), and runs the same VideoJob (``--seconds``, 24 fps) in turn:

- ``720p``: 1280x720, video_gen fanned out over the scenes (the default);
- ``720p-one-job``: 1280x720, video_gen one pod for every scene;
- ``1080p``: 1920x1080, fanned out.

For each it prints every stage's time (its Job created to its completion, from
the status) and the end-to-end time (VideoJob created to Succeeded) against
the video's length: target at most 0.5 x real time at 720p. Caching is off
(``spec.cache: false``): every run computes. Results go to
``bench-results/realtime-<time>.json``. Development tooling: nothing here is
shipped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.benchmarks.queueing import _namespace, _table, save_results
from tests.support import (
    Cluster,
    LocalNodeProcess,
    Operator,
    create_s3_secret,
    stages_on,
    wait_until,
)
from vidop_devcluster import DevCluster
from vidop_devcluster.s3 import S3Server

RUNS = {
    "720p": ("1280x720", True),
    "720p-one-job": ("1280x720", False),
    "1080p": ("1920x1080", True),
}
BUCKET = "bench-realtime"
SECRET = "bench-s3"
PROMPT = (
    "A huge wave rolls in at sunset. Surfers paddle out past the break. A cat watches"
    " from the beach. The sky turns orange, then purple. Night falls over the bay."
    " Stars come out above the water. A lighthouse sweeps the dark sea. Morning returns."
)


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = datetime.datetime.fromisoformat
    return (parse(end) - parse(start)).total_seconds()


def _run(
    cluster: Cluster,
    namespace: str,
    name: str,
    resolution: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    custom = client.CustomObjectsApi(cluster.api)
    videojob = {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": {
            "prompt": PROMPT,
            "durationSeconds": args.seconds,
            "resolution": resolution,
            "fps": 24,
            "cache": False,
        },
    }
    began = time.monotonic()
    custom.create_namespaced_custom_object("vidop.io", "v1alpha1", namespace, "videojobs", videojob)

    def finished() -> dict[str, Any] | None:
        found = custom.get_namespaced_custom_object(
            "vidop.io", "v1alpha1", namespace, "videojobs", name
        )
        status: dict[str, Any] = found.get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_until(f"{name} to finish", finished, timeout=1800, interval=0.25)
    end_to_end = time.monotonic() - began
    if status["phase"] != "Succeeded":
        raise SystemExit(f"{name} failed: {json.dumps(status, indent=1)}")
    result: dict[str, Any] = {
        "end_to_end_seconds": round(end_to_end, 1),
        "video_seconds": args.seconds,
        "over_real_time": round(end_to_end / args.seconds, 3),
    }
    for stage in status["stages"]:
        took = _seconds(stage.get("startTime"), stage.get("completionTime"))
        result[f"{stage['name']}_seconds"] = took
        if items := (stage.get("outputs") or {}).get("items"):
            result[f"{stage['name']}_items"] = items
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="the video's length")
    parser.add_argument(
        "--gpus", type=int, default=4, help="simulated GPUs of the local node (scenes at once)"
    )
    parser.add_argument("--runs", default=",".join(RUNS), help=f"of {', '.join(RUNS)}")
    args = parser.parse_args()
    runs = args.runs.split(",")
    if set(runs) - set(RUNS):
        parser.error(f"runs are {', '.join(RUNS)}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vidop-bench-realtime-") as root:
        dev = DevCluster(Path(root) / "cluster", detach=False)
        dev.up()
        api = dev.api_client()
        s3 = S3Server(Path(root) / "s3")
        s3.start()
        try:
            cluster = Cluster(api, dev.kubeconfig, dev.bin_dir, dev)
            cluster.install_videojob_crd()
            node = LocalNodeProcess(cluster, Path(root) / "node", gpus=args.gpus)
            node.folder.mkdir()
            node.start()
            s3.create_bucket(BUCKET)
            for run in runs:
                resolution, fan_out = RUNS[run]
                namespace = f"bench-{run.replace('p', '')}"
                _namespace(cluster.api, namespace)
                create_s3_secret(cluster, namespace, s3, SECRET)
                configuration = stages_on(node.placement(), s3, BUCKET, SECRET)
                if not fan_out:
                    configuration["stages"]["video_gen"] = {
                        **configuration["stages"]["video_gen"],
                        "fanOut": None,
                    }
                folder = Path(root) / f"operator-{run}"
                folder.mkdir()
                operator = Operator(
                    cluster,
                    folder,
                    {
                        **configuration,
                        "watchNamespaces": [namespace],
                        "priorityClasses": {"high": None, "low": None},
                    },
                )
                operator.start()
                try:
                    print(f"== {run}: {args.seconds} s at {resolution}", flush=True)
                    results[run] = _run(cluster, namespace, f"wave-{run}", resolution, args)
                    print(json.dumps(results[run]), flush=True)
                finally:
                    operator.stop()
            node.stop()
        finally:
            s3.stop()
            api.close()
            dev.down()
    print(_table(results))
    save_results("realtime", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
