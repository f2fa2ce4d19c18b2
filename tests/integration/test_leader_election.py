"""High availability on the real control plane: two operator processes with
``--leader-elect``, one leading on the Lease and one standing by; the leader
killed with SIGKILL mid-run, the standby taking over within the lease
duration, every VideoJob Succeeded with exactly one Job per stage; a clean
stop handing the Lease over at once; a leader that loses its Lease exiting.
The failover times are printed (``pytest -s``)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from kubernetes import client

from tests.support import Cluster, Operator, kwok_videojob, wait_for_phase, wait_until
from vid_operator import leader
from vid_operator.api.models import STAGE_NAMES

pytestmark = pytest.mark.cluster

LEASE = "vid-operator"
DEFAULTS = leader.Timings()
# What the controller logs once it has listed what exists: its first step
# as the leader. A standby never gets there.
STARTED = "stage jobs, pods and pipelines listed"


def _replica(
    cluster: Cluster, folder: Path, namespace: str, identity: str, *timing_flags: str
) -> Operator:
    folder.mkdir()
    return Operator(
        cluster,
        folder,
        {
            "watchNamespaces": [namespace],
            "priorityClasses": {"high": None, "low": None},
            "s3": {"credentialsSecret": None, "bucket": "videos"},
        },
        (
            "--leader-elect",
            f"--leader-elect-namespace={namespace}",
            f"--leader-elect-lease-name={LEASE}",
            f"--leader-elect-identity={identity}",
            *timing_flags,
        ),
    )


def _holder(cluster: Cluster, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(LEASE, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return lease.spec.holder_identity  # type: ignore[no-any-return]


def _leading(replica: Operator) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{replica.port}/healthz", timeout=2) as answer:
        return bool(json.load(answer)["leading"])


def _started(replica: Operator) -> bool:
    return STARTED in replica.log.read_text()


def test_the_standby_takes_over_when_the_leader_is_killed(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.install_videojob_crd()
    first = _replica(cluster, tmp_path / "a", namespace, "replica-a")
    second = _replica(cluster, tmp_path / "b", namespace, "replica-b")
    try:
        first.start()
        wait_until("replica-a to lead", lambda: _holder(cluster, namespace) == "replica-a")
        second.start()  # its health endpoint answers while it stands by
        names = [f"ha-{index}" for index in range(6)]
        for name in names:
            cluster.apply(kwok_videojob(name, run_time="3s"), namespace)
        batch = client.BatchV1Api(cluster.api)
        wait_until(
            "the leader to create stage Jobs",
            lambda: batch.list_namespaced_job(namespace).items,
            timeout=30,
        )

        # One leads and works; the other only waits.
        assert _leading(first) and not _leading(second)
        assert _started(first) and not _started(second)
        assert _holder(cluster, namespace) == "replica-a"

        first.kill()
        killed = time.monotonic()
        wait_until(
            "replica-b to take the Lease",
            lambda: _holder(cluster, namespace) == "replica-b",
            timeout=DEFAULTS.lease_duration + 3 * DEFAULTS.retry_period + 5,
        )
        takeover = time.monotonic() - killed
        wait_until("replica-b to start reconciling", lambda: _started(second), timeout=30)
        reconciling = time.monotonic() - killed

        for name in names:
            wait_for_phase(cluster, namespace, name, "Succeeded", timeout=120)
        jobs = batch.list_namespaced_job(namespace, label_selector="vidop.io/videojob").items
        per_stage = Counter(
            (job.metadata.labels["vidop.io/videojob"], job.metadata.labels["vidop.io/stage"])
            for job in jobs
        )
        assert sorted(per_stage) == sorted((n, s) for n in names for s in STAGE_NAMES)
        assert set(per_stage.values()) == {1}, per_stage

        # The killed replica comes back as a standby; the leader stays.
        first.start()
        time.sleep(2 * DEFAULTS.retry_period)
        assert _holder(cluster, namespace) == "replica-b"
        assert not _leading(first) and _leading(second)

        # A clean stop releases the Lease: the standby takes it at its next try.
        second.stop()
        assert second.process is not None and second.process.returncode == 0
        stopped = time.monotonic()
        wait_until(
            "replica-a to take the released Lease",
            lambda: _holder(cluster, namespace) == "replica-a",
            timeout=2 * DEFAULTS.retry_period + 3,
        )
        handover = time.monotonic() - stopped
    finally:
        first.stop()
        second.stop()
    lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(LEASE, namespace)
    assert lease.spec.lease_transitions == 2  # a to b, b to a
    print(
        f"\nfailover after SIGKILL: Lease taken in {takeover:.1f} s, reconciling in "
        f"{reconciling:.1f} s (lease duration {DEFAULTS.lease_duration:g} s); "
        f"handover after SIGTERM: {handover:.1f} s"
    )
    assert takeover <= DEFAULTS.lease_duration + 2 * DEFAULTS.retry_period + 2


def test_a_leader_that_loses_its_lease_exits_at_once(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.install_videojob_crd()
    timings = ("--leader-elect-lease-duration=6", "--leader-elect-renew-deadline=4",
               "--leader-elect-retry-period=1")  # fmt: skip
    replica = _replica(cluster, tmp_path / "a", namespace, "replica-a", *timings)
    try:
        replica.start()
        wait_until("replica-a to lead", lambda: _started(replica), timeout=30)
        leases = client.CoordinationV1Api(cluster.api)
        lease = leases.read_namespaced_lease(LEASE, namespace)
        # Another candidate's write, as one that saw the Lease expire would make.
        lease.spec.holder_identity = "intruder"
        leases.replace_namespaced_lease(LEASE, namespace, lease)
        taken = time.monotonic()

        assert replica.process is not None
        code = replica.process.wait(timeout=10)
        exited = time.monotonic() - taken
    finally:
        replica.stop()

    assert code == 1
    assert exited <= 1 + 2  # its next renewal, and some slack
    assert "leadership lost" in replica.log.read_text()
    assert _holder(cluster, namespace) == "intruder"  # it wrote nothing on the way out
