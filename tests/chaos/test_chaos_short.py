"""The short chaos run, part of ``make test``: a few dozen VideoJobs (some
failing, some disrupted, some hostile), the operator killed once, kube-apiserver
restarted once; then every invariant of :mod:`tests.chaos.invariants`.

The full run is ``make chaos`` (``chaos_full.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import ChaosPlan, ChaosRun, prepare
from tests.support import Cluster

pytestmark = pytest.mark.cluster

SHORT = ChaosPlan(
    ok=16,
    retried=2,
    invalid=2,
    disrupted=2,
    cycles=1,
    oom=2,
    pull=2,
    hostile_rounds=1,
    submit_seconds=8,
    kills=1,
    kill_window=(3, 4),
    down_seconds=(2, 2),
    apiserver_restart_at=11,
    settle_timeout=120,
)


@pytest.mark.timeout(300)
def test_nothing_is_lost_when_the_operator_and_the_api_server_restart(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    prepare(cluster)

    report = ChaosRun(cluster, namespace, tmp_path, SHORT, cluster.dev).run()

    print(report.describe())
    assert not report.violations, report.describe()
