"""The queueing benchmark: many VideoJobs on few GPUs, through Kueue and without.

``make bench-queueing`` runs ``python -m tests.benchmarks.queueing`` (``--help``
for the knobs). It starts its own development control plane with Kueue, and
runs the same work once per mode, side by side in one run:

- ``kueue``: the GPU stage's Jobs admitted by Kueue (``queueing.kueue.stages:
  gpu``), a ClusterQueue with a quota of all the GPUs (``--gpus``, 16 on the
  standard kwok fleet); ``kueue-all``: every stage's Jobs through it;
- ``scheduler``: no queueing, every stage Job at once; the GPU pods wait in
  kube-scheduler's queue, as before queueing existed;
- ``cap`` (on request): the operator's own cap, ``queueing.maxRunning`` = the
  GPUs.

Each VideoJob's video_gen holds one GPU for ``--gpu-seconds``; its other
stages take ``--stage-seconds`` on CPU nodes. From a watch of the video_gen
pods (arrival times, not the pods' one-second timestamps) it prints, per mode:
the GPU utilisation while work waits (GPU-seconds used / GPU-seconds
available, from the first video_gen start to the last one: until then some
waits), the refill latency (from a GPU freed while work waits to the next
video_gen start, p50 and p99), and the makespan against the ideal
(VideoJobs x GPU seconds / GPUs). Target: utilisation >= 0.9 while work waits.
Results go to ``bench-results/queueing-<time>.json``. Development tooling:
nothing here is shipped.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support import (
    Cluster,
    Operator,
    WatchThread,
    kueue_queues,
    kwok_videojob,
    wait_until,
)
from vidop_devcluster import DevCluster

REPO = Path(__file__).resolve().parents[2]
MODES = ("kueue", "kueue-all", "scheduler", "cap")


class GpuWork:
    """When each piece of video_gen work of a namespace was created (it waits
    from then), and when its pod was first seen running and finished, by
    watches (arrival times: the objects' own stamps have one-second
    resolution). A piece is a Job, or one item of a Job that fans out (an
    Indexed Job's completions all wait from its creation)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.created: dict[Piece, float] = {}
        self.started: dict[Piece, float] = {}
        self.finished: dict[Piece, float] = {}
        self._watches = [
            WatchThread(
                self._job,
                client.BatchV1Api(api).list_namespaced_job,
                namespace,
                label_selector=GPU_STAGE,
            ),
            WatchThread(
                self._pod,
                client.CoreV1Api(api).list_namespaced_pod,
                namespace,
                label_selector=GPU_STAGE,
            ),
        ]

    def __enter__(self) -> GpuWork:
        for watching in self._watches:
            watching.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        for watching in self._watches:
            watching.__exit__()

    def _job(self, _: str, job: Any, now: float) -> None:
        items = job.spec.completions if job.spec.completion_mode == "Indexed" else None
        for index in range(items or 1):
            self.created.setdefault((job.metadata.name, index), now)

    def _pod(self, _: str, pod: Any, now: float) -> None:
        job = pod.metadata.labels["batch.kubernetes.io/job-name"]
        index = (pod.metadata.annotations or {}).get(COMPLETION_INDEX, "0")
        piece = (job, int(index))
        if pod.status.phase in ("Running", "Succeeded", "Failed"):
            self.started.setdefault(piece, now)
        if pod.status.phase in ("Succeeded", "Failed"):
            self.finished.setdefault(piece, now)


Piece = tuple[str, int]
"""A Job's name and an item index (0 for a Job that does not fan out)."""
GPU_STAGE = "vidop.io/stage=video_gen"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def figures(work: GpuWork, gpus: int) -> dict[str, float]:
    """GPU utilisation over the time some video_gen work waits (its Job
    exists, its pod has not started), and the refill latencies: from a GPU
    freed while work waits to the next start."""
    changes: list[tuple[float, int, int]] = []  # (when, waiting +/-, running +/-)
    for piece, created in work.created.items():
        started = work.started.get(piece)
        changes.append((created, 1, 0))
        if started is not None:
            changes.append((started, -1, 1))
            changes.append((work.finished.get(piece, started), 0, -1))
    changes.sort()
    waiting = running = 0
    waited = used = 0.0
    for (when, waits, runs), (after, _, _) in itertools.pairwise(changes):
        waiting += waits
        running += runs
        if waiting > 0:
            waited += after - when
            used += min(running, gpus) * (after - when)
    starts = sorted(work.started.values())
    refills = []
    for freed in sorted(work.finished.values()):
        later = [s for s in starts if s >= freed]
        still_waiting = any(
            created < freed and work.started.get(piece, float("inf")) > freed
            for piece, created in work.created.items()
        )
        if later and still_waiting:
            refills.append(later[0] - freed)
    quantiles = statistics.quantiles(refills, n=100) if len(refills) >= 2 else [0.0] * 99
    return {
        "utilisation_while_waiting": round(used / (gpus * waited), 3) if waited else 0.0,
        "seconds_work_waited": round(waited, 1),
        "refill_p50_seconds": round(quantiles[49], 3),
        "refill_p99_seconds": round(quantiles[98], 3),
    }


def _namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    wait_until(
        f"the default ServiceAccount in {name}",
        lambda: core.list_namespaced_service_account(name).items,
    )


def run_mode(
    cluster: Cluster, folder: Path, mode: str, args: argparse.Namespace
) -> dict[str, float]:
    namespace = f"bench-{mode}"
    _namespace(cluster.api, namespace)
    queueing: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if mode.startswith("kueue"):
            queues = stack.enter_context(
                kueue_queues(cluster, namespace, gpus=args.gpus, strategy=args.strategy)
            )
            queueing = {
                "kueue": {
                    "enabled": True,
                    "defaultQueueName": queues.local_queue,
                    "stages": "all" if mode == "kueue-all" else "gpu",
                }
            }
        elif mode == "cap":
            queueing = {"maxRunning": args.gpus}
        (folder / mode).mkdir(parents=True)
        operator = Operator(
            cluster,
            folder / mode,
            {
                "s3": {"credentialsSecret": None, "bucket": "videos"},
                "watchNamespaces": [namespace],
                "queueing": queueing,
            },
        )
        operator.start()
        stack.callback(operator.stop)
        custom = client.CustomObjectsApi(cluster.api)

        def submit(index: int) -> None:
            videojob = kwok_videojob(f"vj-{index:05d}", run_time=f"{args.stage_seconds}s")
            stages = videojob["spec"]["stages"]
            stages["video_gen"]["podAnnotations"]["kwok.vidop.io/run-time"] = f"{args.gpu_seconds}s"
            # One scene: one GPU for --gpu-seconds (the fan-out benchmark
            # measures more).
            script = stages["script_gen"]["podAnnotations"]
            script["kwok.vidop.io/termination-message"] = json.dumps({"scenes": 1})
            custom.create_namespaced_custom_object(
                "vidop.io", "v1alpha1", namespace, "videojobs", videojob
            )

        with GpuWork(cluster.api, namespace) as times:
            began = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(submit, range(args.count)))
            submitted = time.monotonic() - began

            def succeeded() -> bool:
                listed = custom.list_namespaced_custom_object(
                    "vidop.io", "v1alpha1", namespace, "videojobs"
                )
                phases = [(v.get("status") or {}).get("phase") for v in listed["items"]]
                return phases.count("Succeeded") == args.count

            wait_until(f"{args.count} VideoJobs to succeed ({mode})", succeeded, 3600, 2.0)
            makespan = time.monotonic() - began
    result = {
        **figures(times, args.gpus),
        "makespan_seconds": round(makespan, 1),
        "ideal_seconds": round(args.count * args.gpu_seconds / args.gpus, 1),
        "submit_seconds": round(submitted, 1),
    }
    client.CoreV1Api(cluster.api).delete_namespace(namespace)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="VideoJobs per mode")
    parser.add_argument("--gpus", type=int, default=16, help="GPUs (the kwok fleet has 16)")
    parser.add_argument("--gpu-seconds", type=float, default=2.0, help="video_gen run time")
    parser.add_argument("--stage-seconds", type=float, default=0.5, help="other stages' time")
    parser.add_argument(
        "--client-qps", type=int, default=200, help="the controllers' and Kueue's client rate"
    )
    parser.add_argument(
        "--strategy",
        default="StrictFIFO",
        choices=["StrictFIFO", "BestEffortFIFO"],
        help="the ClusterQueue's queueingStrategy",
    )
    parser.add_argument(
        "--modes", default="kueue,scheduler", help=f"comma-separated, of {', '.join(MODES)}"
    )
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="vidop-bench-queueing-") as root:
        # The default client rates (20 requests/s) cap the Job controller at
        # some 4 stages/s (see bench.py) and Kueue at a few admissions a
        # second, below anything measured here; clusters that run batch work
        # raise them.
        qps = args.client_qps
        rate = [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * qps}"]
        dev = DevCluster(
            Path(root) / "cluster",
            detach=False,
            kueue=any(mode.startswith("kueue") for mode in modes),
            extra_args={"kube-controller-manager": rate, "kube-scheduler": rate},
            kueue_settings={"clientConnection": {"qps": qps, "burst": 2 * qps}},
        )
        dev.up()
        api = dev.api_client()
        try:
            cluster = Cluster(api, dev.kubeconfig, dev.bin_dir, dev)
            cluster.install_videojob_crd()
            for mode in modes:
                print(
                    f"== {mode}: {args.count} VideoJobs, video_gen {args.gpu_seconds} s on 1 of"
                    f" {args.gpus} GPUs",
                    flush=True,
                )
                results[mode] = run_mode(cluster, Path(root), mode, args)
                print(json.dumps(results[mode], indent=2), flush=True)
        finally:
            api.close()
            dev.down()
    print(_table(results))
    save_results("queueing", {"args": vars(args), "results": results})


def save_results(benchmark: str, payload: dict[str, Any]) -> None:
    """``payload`` as ``bench-results/<benchmark>-<time>.json``, and where it went."""
    out = REPO / "bench-results" / f"{benchmark}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"results in {out.relative_to(REPO)} ({os.cpu_count()} cores)")


def _table(results: dict[str, dict[str, float]]) -> str:
    keys = sorted({key for figures in results.values() for key in figures})
    lines = ["| figure | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for key in keys:
        lines.append(
            f"| {key} | " + " | ".join(str(r.get(key, "")) for r in results.values()) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
