"""The full chaos run: ``make chaos`` (``pytest tests/chaos/chaos_full.py``).

A few hundred VideoJobs applied over two minutes, among them retried and
non-retryable failures, disrupted pods, a dependency cycle and rounds of
hostile input; the operator killed with SIGKILL at random moments and started
again after a random pause; kube-apiserver restarted once in the middle. Then
every invariant of :mod:`tests.chaos.invariants`. The same again with two
operators electing a leader on the chart's default timings, the leader killed
at each of those moments. Its name keeps ``pytest
tests`` from collecting it: it runs for several minutes. Set
``VIDOP_CHAOS_SEED`` to replay another sequence of moments.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosPlan, ChaosRun, prepare
from tests.support import Cluster
from vid_operator import leader

pytestmark = pytest.mark.cluster

FULL = ChaosPlan(
    ok=240,
    retried=20,
    invalid=20,
    disrupted=10,
    cycles=5,
    oom=10,
    pull=10,
    hostile_rounds=5,
    submit_seconds=120,
    kills=6,
    kill_window=(5, 150),
    down_seconds=(0, 5),
    apiserver_restart_at=60,
    settle_timeout=900,
    seed=int(os.environ.get("VIDOP_CHAOS_SEED", "6")),
)


@pytest.mark.timeout(1800)
def test_nothing_is_lost_under_sustained_chaos(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    prepare(cluster)

    report = ChaosRun(cluster, namespace, tmp_path, FULL, cluster.dev).run()

    print(report.describe())
    assert not report.violations, report.describe()


@pytest.mark.timeout(1800)
def test_nothing_is_lost_when_the_leader_is_killed_again_and_again(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    prepare(cluster)
    plan = dataclasses.replace(FULL, leader_election=leader.Timings())

    report = ChaosRun(cluster, namespace, tmp_path, plan, cluster.dev).run()

    print(report.describe())
    assert not report.violations, report.describe()
