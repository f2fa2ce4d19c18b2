"""The short chaos run, part of ``make test``: a few dozen VideoJobs (some
failing, some disrupted, some hostile), the operator killed once, kube-apiserver
restarted once; then every invariant of :mod:`tests.chaos.invariants`. Then
the same with two operators electing a leader: the leader killed twice, the
standby taking over each time.

The full run is ``make chaos`` (``chaos_full.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosPlan, ChaosRun, prepare
from tests.support import Cluster, kueue_queues
from vid_operator import leader

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
    max_running=8,
)


@pytest.mark.timeout(300)
def test_nothing_is_lost_when_the_operator_and_the_api_server_restart(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    prepare(cluster)

    report = ChaosRun(cluster, namespace, tmp_path, SHORT, cluster.dev).run()

    print(report.describe())
    assert not report.violations, report.describe()


# Short timings, so that two failovers fit in the run: each takes about a
# lease duration after the kill. No kube-apiserver restart: the test above
# has one, and here it would only end the leader's term too (a leader that
# cannot renew exits) when a slow machine takes longer than the renew
# deadline to restart it.
SHORT_HA = dataclasses.replace(
    SHORT,
    kills=2,
    kill_window=(2, 10),
    down_seconds=(1, 3),
    apiserver_restart_at=None,
    leader_election=leader.Timings(lease_duration=6, renew_deadline=4, retry_period=1),
)


@pytest.mark.timeout(300)
def test_nothing_is_lost_when_the_leader_is_killed_and_the_standby_takes_over(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    prepare(cluster)

    report = ChaosRun(cluster, namespace, tmp_path, SHORT_HA, cluster.dev).run()

    print(report.describe())
    assert not report.violations, report.describe()


@pytest.mark.timeout(300)
def test_nothing_is_lost_when_kueue_admits_every_stage(
    kueue: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The same trouble with every stage Job admitted by a real Kueue (8 GPUs
    of quota): Kueue starts every Job, never the operator."""
    prepare(kueue)

    with kueue_queues(kueue, namespace, gpus=8) as queues:
        plan = dataclasses.replace(SHORT, max_running=None, kueue_queue=queues.local_queue)
        report = ChaosRun(kueue, namespace, tmp_path, plan, kueue.dev).run()

    print(report.describe())
    assert not report.violations, report.describe()
