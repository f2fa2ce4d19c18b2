"""The fan-out benchmark: one video's scenes on many GPUs, against one GPU.

``make bench-fanout`` runs ``python -m tests.benchmarks.fanout`` (``--help``
for the knobs). It starts its own development control plane (kwok's 16 GPUs)
and runs the same work twice, side by side in one run:

- ``fan-out``: the default pipeline, video_gen one Indexed Job with a pod
  per scene, each ``--scene-seconds`` on one GPU;
- ``one-job``: the same pipeline with video_gen's ``fanOut`` removed, one pod
  rendering every scene in turn (scenes x scene seconds on one GPU).

Each mode runs two rounds: one VideoJob alone (``--scenes`` scenes, all GPUs
free), then ``--batch`` VideoJobs submitted together (more scenes than
GPUs: scenes wait). It prints, per round, video_gen's wall time (its Job
created to its last pod finished, by watch arrival times) against the ideal
``ceil(scenes / free GPUs) x scene seconds`` (target: at most 1.2 x), and for
the batch the GPU utilisation while scenes wait (target: at least 0.9) and
the makespan, and the VideoJobs' writes (a status patch per stage every few
seconds at most: scenes that finish together share one). Results go to
``bench-results/fanout-<time>.json``. Development tooling: nothing here is
shipped.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.benchmarks.queueing import GpuWork, _namespace, _table, figures, save_results
from tests.support import Cluster, Operator, WatchThread, kwok_videojob, wait_until
from vidop_devcluster import DevCluster

MODES = ("fan-out", "one-job")


def _submit(
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    mode: str,
    args: argparse.Namespace,
) -> None:
    videojob = kwok_videojob(name, run_time=f"{args.stage_seconds}s")
    stages = videojob["spec"]["stages"]
    stages["script_gen"]["podAnnotations"]["kwok.vidop.io/termination-message"] = json.dumps(
        {"scenes": args.scenes}
    )
    # One pod renders one scene, or all of them in turn.
    seconds = args.scene_seconds * (1 if mode == "fan-out" else args.scenes)
    stages["video_gen"]["podAnnotations"]["kwok.vidop.io/run-time"] = f"{seconds}s"
    custom.create_namespaced_custom_object("vidop.io", "v1alpha1", namespace, "videojobs", videojob)


def _video_gen_wall_times(work: GpuWork) -> list[float]:
    """Per video_gen Job: from its creation to its last piece finished."""
    jobs = {job for job, _ in work.created}
    walls = []
    for job in jobs:
        pieces = [piece for piece in work.created if piece[0] == job]
        created = min(work.created[piece] for piece in pieces)
        finished = max(work.finished.get(piece, math.inf) for piece in pieces)
        walls.append(finished - created)
    return walls


def _round(
    cluster: Cluster, namespace: str, mode: str, count: int, args: argparse.Namespace
) -> dict[str, float]:
    custom = client.CustomObjectsApi(cluster.api)
    prefix = f"r{count}"
    versions: dict[str, set[str]] = {}

    def written(_: str, videojob: Any, __: float) -> None:
        name = videojob["metadata"]["name"]
        if name.startswith(prefix):
            versions.setdefault(name, set()).add(videojob["metadata"]["resourceVersion"])

    watched = WatchThread(
        written,
        custom.list_namespaced_custom_object,
        "vidop.io",
        "v1alpha1",
        namespace,
        "videojobs",
    )
    with watched, GpuWork(cluster.api, namespace) as work:
        began = time.monotonic()
        for index in range(count):
            _submit(custom, namespace, f"{prefix}-{index:03d}", mode, args)

        def succeeded() -> bool:
            listed = custom.list_namespaced_custom_object(
                "vidop.io", "v1alpha1", namespace, "videojobs"
            )
            mine = [v for v in listed["items"] if v["metadata"]["name"].startswith(prefix)]
            return sum((v.get("status") or {}).get("phase") == "Succeeded" for v in mine) == count

        wait_until(f"{count} VideoJobs to succeed ({mode})", succeeded, 1800, 0.5)
        makespan = time.monotonic() - began
    walls = _video_gen_wall_times(work)
    work_seconds = args.scenes * args.scene_seconds
    if mode == "fan-out":
        ideal = math.ceil(count * args.scenes / args.gpus) * args.scene_seconds
    else:
        ideal = math.ceil(count / args.gpus) * work_seconds
    result = {
        "video_gen_wall_seconds_max": round(max(walls), 2),
        "video_gen_wall_seconds_mean": round(sum(walls) / len(walls), 2),
        "ideal_seconds": round(ideal, 2),
        "wall_over_ideal": round(max(walls) / ideal, 3),
        "makespan_seconds": round(makespan, 1),
        # Every version the watch saw but the first (the create): the
        # operator's writes, the status patches for progress among them.
        "videojob_writes_mean": round(
            sum(len(v) - 1 for v in versions.values()) / max(len(versions), 1), 1
        ),
    }
    if count > 1:
        result.update(figures(work, args.gpus))
    return result


def run_mode(cluster: Cluster, folder: Path, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench-{mode}"
    _namespace(cluster.api, namespace)
    stages = {} if mode == "fan-out" else {"video_gen": {"fanOut": None}}
    (folder / mode).mkdir(parents=True)
    operator = Operator(
        cluster,
        folder / mode,
        {
            "s3": {"credentialsSecret": None, "bucket": "videos"},
            "watchNamespaces": [namespace],
            "priorityClasses": {"high": None, "low": None},
            "stages": stages,
            "overridePolicy": {"allowedPodAnnotations": ["kwok.vidop.io/"]},
        },
    )
    operator.start()
    try:
        alone = _round(cluster, namespace, mode, 1, args)
        print(f"one VideoJob: {json.dumps(alone)}", flush=True)
        batch = _round(cluster, namespace, mode, args.batch, args)
        print(f"{args.batch} VideoJobs: {json.dumps(batch)}", flush=True)
    finally:
        operator.stop()
    client.CoreV1Api(cluster.api).delete_namespace(namespace)
    return {"alone": alone, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8, help="scenes per VideoJob")
    parser.add_argument("--scene-seconds", type=float, default=10.0, help="one scene's time")
    parser.add_argument("--batch", type=int, default=6, help="VideoJobs submitted together")
    parser.add_argument("--gpus", type=int, default=16, help="GPUs (the kwok fleet has 16)")
    parser.add_argument("--stage-seconds", type=float, default=0.5, help="other stages' time")
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if set(modes) - set(MODES):
        parser.error(f"modes are {', '.join(MODES)}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vidop-bench-fanout-") as root:
        # The Job controller's default client rate (20 requests/s) would be
        # what is measured once dozens of pods start at once.
        rate = ["--kube-api-qps=200", "--kube-api-burst=400"]
        dev = DevCluster(
            Path(root) / "cluster",
            detach=False,
            extra_args={"kube-controller-manager": rate, "kube-scheduler": rate},
        )
        dev.up()
        api = dev.api_client()
        try:
            cluster = Cluster(api, dev.kubeconfig, dev.bin_dir, dev)
            cluster.install_videojob_crd()
            for mode in modes:
                print(
                    f"== {mode}: {args.scenes} scenes of {args.scene_seconds} s on"
                    f" {args.gpus} GPUs",
                    flush=True,
                )
                results[mode] = run_mode(cluster, Path(root), mode, args)
        finally:
            api.close()
            dev.down()
    flat = {
        f"{mode} {round_}": figures_
        for mode, rounds in results.items()
        for round_, figures_ in rounds.items()
    }
    print(_table(flat))
    save_results("fanout", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
