"""The operator's own cap on running VideoJobs, on the real control plane:
never more than the cap Running (from a watch, the operator killed three
times meanwhile), queue positions shown and moving, high priority first, and
one tenant's flood kept from starving another's VideoJob."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support import (
    Cluster,
    Operator,
    WatchThread,
    get_videojob,
    kwok_videojob,
    running_operator,
    wait_for_phase,
    wait_until,
)

pytestmark = pytest.mark.cluster


class PhaseWatch:
    """Every VideoJob phase and queue position of a namespace, from a watch,
    and the most VideoJobs Running at any moment."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.phases: dict[str, str] = {}
        self.most_running = 0
        self.positions: dict[str, list[int]] = {}
        """Each VideoJob's queue positions, in the order they were written."""
        self.started: dict[str, float] = {}
        """When each VideoJob was first seen Running (monotonic)."""
        self.watching = WatchThread(
            self._record,
            client.CustomObjectsApi(cluster.api).list_namespaced_custom_object,
            "vidop.io",
            "v1alpha1",
            namespace,
            "videojobs",
        )

    def _record(self, _: str, videojob: dict[str, Any], now: float) -> None:
        name = videojob["metadata"]["name"]
        status = videojob.get("status") or {}
        self.phases[name] = str(status.get("phase"))
        if status.get("phase") == "Running":
            self.started.setdefault(name, now)
        position = status.get("queuePosition")
        if position is not None:
            seen = self.positions.setdefault(name, [])
            if not seen or seen[-1] != position:
                seen.append(position)
        running = sum(phase == "Running" for phase in self.phases.values())
        self.most_running = max(self.most_running, running)


@contextlib.contextmanager
def _operator(
    cluster: Cluster, folder: Path, namespace: str, **queueing: Any
) -> Iterator[Operator]:
    with running_operator(
        cluster,
        folder,
        {
            "s3": {"credentialsSecret": None, "bucket": "videos"},
            "stages": {"video_gen": {"maxGpus": 8}},
            "watchNamespaces": [namespace],
            "queueing": queueing,
        },
    ) as operator:
        yield operator


def _conditions(videojob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (videojob.get("status") or {}).get("conditions") or []}


def test_the_cap_holds_through_operator_kills_and_high_priority_goes_first(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    names = [f"default-{i}" for i in range(8)]
    seen = PhaseWatch(cluster, namespace)
    with _operator(cluster, tmp_path, namespace, maxRunning=3) as operator, seen.watching:
        # Stages of 3 s: the first three hold their slots for some 12 s, long
        # after the high-priority ones come.
        for name in names:
            cluster.apply(kwok_videojob(name, run_time="3s"), namespace)

        def queued_with_position() -> dict[str, Any] | None:
            last = get_videojob(cluster, namespace, names[-1])
            return last if last and (last.get("status") or {}).get("queuePosition") else None

        last = wait_until("the last VideoJob to show its queue position", queued_with_position)
        assert last["status"]["phase"] == "Queued"
        queued = _conditions(last)["Queued"]
        assert queued["status"] == "True" and queued["reason"] == "ConcurrencyLimit"
        assert queued["message"].startswith(f"position {last['status']['queuePosition']} ")
        assert "queueing.maxRunning" in queued["message"]

        # Two high-priority VideoJobs, after the eight: they go before the
        # default ones still waiting.
        waiting = {n for n, phase in seen.phases.items() if phase == "Queued"}
        for name in ("high-0", "high-1"):
            cluster.apply(kwok_videojob(name, run_time="3s", priority="high"), namespace)

        # The operator killed three times while the queue drains.
        for _ in range(3):
            time.sleep(2.5)
            operator.kill()
            time.sleep(1)
            operator.start()

        for name in [*names, "high-0", "high-1"]:
            wait_for_phase(cluster, namespace, name, "Succeeded", timeout=180)

    assert seen.most_running <= 3, f"{seen.most_running} VideoJobs were Running at once"
    assert seen.most_running == 3  # and the cap was used, not left idle
    # Positions shown, and moving towards the head of the queue (the high
    # ones pushed the default ones back by two first).
    assert any(p[-1] < max(p) for p in seen.positions.values()), seen.positions
    # Both high-priority VideoJobs started no later than any default one that
    # was still waiting when they were applied: in the first round of starts
    # after they came (rounds are some 12 s apart; a default one may take the
    # third slot freed in that round).
    overtaken = [seen.started[n] for n in waiting]
    assert overtaken, "no default VideoJob was still waiting when the high ones came"
    assert max(seen.started["high-0"], seen.started["high-1"]) <= min(overtaken) + 1.0


def test_a_namespace_cap_keeps_one_tenants_flood_from_starving_another(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    other = f"{namespace[:50]}-b"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": other, "labels": {"vidop.io/test": "true"}}})
    wait_until(
        f"the default ServiceAccount in {other}",
        lambda: core.list_namespaced_service_account(other).items,
    )
    try:
        with running_operator(
            cluster,
            tmp_path,
            {
                "s3": {"credentialsSecret": None, "bucket": "videos"},
                "stages": {"video_gen": {"maxGpus": 8}},
                "watchNamespaces": [namespace, other],
                "queueing": {"maxRunningPerNamespace": 2},
            },
        ):
            alone = _time_to_succeed(cluster, other, "alone")
            # The flood: 40 VideoJobs whose video_gen holds 4 of the 16 GPUs
            # for 10 s; unqueued, they keep every GPU busy for 100 s.
            for i in range(40):
                flood = kwok_videojob(f"flood-{i}", run_time="1s")
                flood["spec"]["stages"]["video_gen"]["gpus"] = 4
                flood["spec"]["stages"]["video_gen"]["podAnnotations"]["kwok.vidop.io/run-time"] = (
                    "10s"
                )
                # One scene: one pod of 4 GPUs (kwok's script_gen says 2 otherwise).
                flood["spec"]["stages"]["script_gen"]["podAnnotations"][
                    "kwok.vidop.io/termination-message"
                ] = '{"scenes": 1}'

                cluster.apply(flood, namespace)
            wait_until(
                "the flood to fill its namespace's two slots",
                lambda: (
                    sum(
                        (get_videojob(cluster, namespace, f"flood-{i}") or {})
                        .get("status", {})
                        .get("phase")
                        == "Running"
                        for i in range(4)
                    )
                    == 2
                ),
            )
            during = _time_to_succeed(cluster, other, "during")
    finally:
        core.delete_namespace(other)
    print(f"\nanother tenant's VideoJob: {alone:.1f} s alone, {during:.1f} s during the flood")
    assert during <= 2 * alone


def _time_to_succeed(cluster: Cluster, namespace: str, name: str) -> float:
    started = time.monotonic()
    cluster.apply(kwok_videojob(name, run_time="1s"), namespace)
    wait_for_phase(cluster, namespace, name, "Succeeded", timeout=120)
    return time.monotonic() - started
