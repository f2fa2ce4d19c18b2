"""The oracle: the 4-stage DAG driven with nothing but stage Jobs.

The benchmark driver runs it as its own process (as the operator runs), once
per scenario, beside the operator's run of the same scenario:

    python -m tests.benchmarks.oracle --kubeconfig K --namespace NS \\
        --config operator-config.yaml --arrival burst --count 100 --run-time 0s \\
        --result oracle.json

No VideoJob, no operator, no status: it creates each pipeline's first stage
Job, watches Jobs, and creates a stage's Job as soon as the watch shows the
Jobs of all its dependencies Complete. The Jobs are the operator's own (built
by :func:`vid_operator.jobs.build_stage_job` from the same configuration and
spec), minus the owner reference and with a label of their own, so the
operator never sees them. This is the least any controller of this DAG
could do on this control plane: the floor the operator is measured against.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config

from tests.benchmarks.arrivals import Arrival, Completions, drive, pipeline_spec
from tests.benchmarks.rawapi import RawApi, Seen, Watcher
from vid_operator import config, jobs, naming, pipeline
from vid_operator.api.models import VideoJobSpec

ORACLE_LABEL = "vidop.io/bench-oracle"
# As many Jobs in creation at once as kopf's worker threads would make.
CREATE_WORKERS = 8


def oracle_job(manifest: dict[str, Any], pipeline_name: str, stage: str) -> dict[str, Any]:
    """The operator's Job for a stage, made the oracle's: no owner (there is
    no VideoJob to own it), and labels the operator's watches do not select."""
    labels = {ORACLE_LABEL: naming.label_value(pipeline_name), naming.STAGE_LABEL: stage}
    manifest["metadata"].pop("ownerReferences", None)
    manifest["metadata"]["labels"] = labels
    manifest["spec"]["template"]["metadata"]["labels"] = dict(labels)
    return manifest


class Oracle:
    """Drives pipelines of identical spec in one namespace."""

    def __init__(
        self, raw: RawApi, namespace: str, spec: dict[str, Any], settings: config.OperatorConfig
    ) -> None:
        self.raw = raw
        self.namespace = namespace
        self.settings = settings
        self.spec = VideoJobSpec.model_validate(spec)
        self.stages = pipeline.resolve(self.spec, settings)
        self.completions = Completions()
        self._done: dict[str, set[str]] = {}
        self._started: dict[str, set[str]] = {}
        self._by_job: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(CREATE_WORKERS, thread_name_prefix="create")
        self._watcher = Watcher(
            raw, f"/apis/batch/v1/namespaces/{namespace}/jobs", self._seen, ORACLE_LABEL
        )

    def start(self) -> None:
        self._watcher.start()

    def stop(self) -> None:
        self._watcher.stop()
        self._pool.shutdown(wait=True)

    def submit(self, name: str) -> None:
        """Start a pipeline: create the Jobs of its stages without dependencies."""
        with self._lock:
            self._done[name] = set()
            self._started[name] = set()
            ready = self._ready(name)
        for stage in ready:
            self._create(name, stage)

    def _ready(self, name: str) -> list[str]:
        """Stages whose dependencies are done and that have not been started;
        marks them started. Called under the lock."""
        done, started = self._done[name], self._started[name]
        ready = [
            s.name
            for s in self.stages
            if s.name not in started and all(d in done for d in s.depends_on)
        ]
        started.update(ready)
        return ready

    def _create(self, name: str, stage_name: str) -> None:
        stage = next(s for s in self.stages if s.name == stage_name)
        owner = jobs.Owner(name=name, namespace=self.namespace, uid=str(uuid.uuid4()))
        manifest = oracle_job(
            jobs.build_stage_job(owner, self.spec, stage, self.settings), name, stage_name
        )
        with self._lock:
            self._by_job[manifest["metadata"]["name"]] = (name, stage_name)
        self.raw.request("POST", f"/apis/batch/v1/namespaces/{self.namespace}/jobs", body=manifest)

    def _seen(self, seen: Seen) -> None:
        conditions = (seen.object.get("status") or {}).get("conditions") or []
        finished = {c["type"] for c in conditions if c.get("status") == "True"} & {
            "Complete",
            "Failed",
        }
        if not finished:
            return
        with self._lock:
            owner = self._by_job.get(seen.object["metadata"]["name"])
            if owner is None:
                return
            name, stage = owner
            if "Failed" in finished:
                self.completions.end(name, "Failed")
                return
            if stage in self._done[name]:
                return
            self._done[name].add(stage)
            ready = self._ready(name)
            if len(self._done[name]) == len(self.stages):
                self.completions.end(name, "Succeeded")
        for next_stage in ready:
            # Off the watch thread: the next event must not wait for a create.
            self._pool.submit(self._create, name, next_stage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--config", type=Path, required=True, help="the operator's config file")
    parser.add_argument("--arrival", choices=["sequential", "burst", "steady"], required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--run-time", default="0s")
    parser.add_argument("--prefix", default="p")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    raw = RawApi(
        kube_config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    )
    oracle = Oracle(raw, args.namespace, pipeline_spec(args.run_time), config.load(args.config))
    oracle.start()
    names = [f"{args.prefix}-{index:05d}" for index in range(args.count)]
    cpu_before = time.process_time()
    submitted = drive(
        Arrival(args.arrival, args.rate), names, oracle.submit, oracle.completions, args.timeout
    )
    cpu = time.process_time() - cpu_before
    oracle.stop()
    args.result.write_text(
        json.dumps(
            {
                "submitted": submitted,
                "ended": oracle.completions.ended,
                "cpu_seconds": cpu,
                "job_names": {
                    name: {s.name: naming.stage_job_name(name, s.name) for s in oracle.stages}
                    for name in names
                },
            }
        )
    )


if __name__ == "__main__":
    main()
