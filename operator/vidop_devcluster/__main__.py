"""Command line of the development cluster: ``up``, ``down`` and ``status``.

``make cluster-up`` and ``make cluster-down`` call it. The cluster's folder is
``$VIDOP_CLUSTER_DIR``, by default ``.cluster`` in the current directory.
``up --kueue`` (``make cluster-up KUEUE=1``) runs Kueue's manager as well, and
adds it to a cluster that already runs without it. ``up --real-node``
(``make cluster-up REAL_NODE=1``) adds a real node (containerd and a kubelet,
with the images ``hack/images.sh`` builds; see ``docs/devcluster.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from vidop_devcluster import processes
from vidop_devcluster.cluster import ClusterError, DevCluster
from vidop_devcluster.realnode import DEV_NODE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidop-devcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("VIDOP_CLUSTER_DIR", ".cluster")),
        help="the cluster's folder (default: $VIDOP_CLUSTER_DIR or .cluster)",
    )
    parser.add_argument(
        "--kueue",
        action="store_true",
        help="up: run Kueue's manager too (added to a cluster that runs without it)",
    )
    parser.add_argument(
        "--real-node",
        action="store_true",
        help=f"up: run a real node too ({DEV_NODE.name}, {DEV_NODE.gpus} simulated GPU)",
    )
    args = parser.parse_args(argv)
    cluster = DevCluster(
        args.dir.resolve(), kueue=args.kueue, real_node=DEV_NODE if args.real_node else None
    )

    if args.command == "up":
        started = time.monotonic()
        try:
            cluster.up()
        except ClusterError as error:
            print(f"cluster-up failed: {error}", file=sys.stderr)
            return 1
        extras = [
            *(["Kueue"] if cluster.kueue_running() else []),
            *([f"the real node {node[0].name}"] if (node := cluster.running_node()) else []),
        ]
        with_extras = f" with {' and '.join(extras)}" if extras else ""
        print(
            f"control plane up{with_extras} in {time.monotonic() - started:.1f} s; "
            f"logs in {cluster.logs}"
        )
        if node:
            print(f"pods reach this host at {node[1].gateway} (serve on it, not on 127.0.0.1)")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    elif args.command == "down":
        cluster.down()
        print("control plane stopped")
    else:
        up = cluster.is_up()
        print(f"control plane is {'up' if up else 'down'} ({cluster.root})")
        total_now = total_peak = 0
        for component in cluster.components():
            memory = processes.memory_mib(component)
            if memory is None:
                print(f"  {component.name:24} pid {component.pid:>7}  not running")
                continue
            total_now, total_peak = total_now + memory[0], total_peak + memory[1]
            print(
                f"  {component.name:24} pid {component.pid:>7}  "
                f"RSS {memory[0]:>5} MiB  peak {memory[1]:>5} MiB"
            )
        if total_now:
            print(
                f"  {'all components':24} {'':11}  RSS {total_now:>5} MiB  peak {total_peak:>5} MiB"
            )
        return 0 if up else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
