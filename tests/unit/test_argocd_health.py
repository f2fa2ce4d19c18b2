"""The Argo CD health check (Lua) read from the chart and run by a real Lua
interpreter against VideoJob objects shaped as the operator writes them."""

from pathlib import Path
from typing import Any

import lupa
import pytest

from vid_operator import queueing
from vid_operator.api.common import Condition
from vid_operator.api.models import Phase, Priority, VideoJobStatus
from vid_operator.config import Queueing

SCRIPT = (
    Path(__file__).resolve().parents[2]
    / "charts"
    / "vid-operator"
    / "argocd"
    / "videojob-health.lua"
).read_text()


def _health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    # Argo CD runs the script as a chunk whose return value is the health.
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]


def _videojob(status: VideoJobStatus | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": "x"},
        "spec": {"prompt": "p"},
    }
    if status is not None:
        obj["status"] = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return obj


def _condition(kind: str, message: str) -> Condition:
    return Condition(
        type=kind,
        status="True",
        reason="R",
        message=message,
        last_transition_time="2026-11-22T06:00:00Z",
    )


@pytest.mark.parametrize(
    ("phase", "health"),
    [
        (Phase.PENDING, "Progressing"),
        (Phase.QUEUED, "Progressing"),
        (Phase.RUNNING, "Progressing"),
        (Phase.SUCCEEDED, "Healthy"),
        (Phase.FAILED, "Degraded"),
        (Phase.SUSPENDED, "Suspended"),
    ],
)
def test_each_phase_maps_to_its_health(phase: Phase, health: str) -> None:
    assert _health(_videojob(VideoJobStatus(phase=phase, progress="2/4")))[0] == health


def test_no_status_yet_is_progressing() -> None:
    assert _health(_videojob(None))[0] == "Progressing"


def test_failure_and_waiting_messages_come_from_the_conditions() -> None:
    failed = VideoJobStatus(
        phase=Phase.FAILED,
        conditions=[_condition("Failed", "stage voice_gen: BackoffLimitExceeded")],
    )
    waiting = VideoJobStatus(
        phase=Phase.RUNNING,
        stage="video_gen",
        conditions=[_condition("Unschedulable", "stage video_gen: waiting for a node")],
    )

    assert _health(_videojob(failed)) == ("Degraded", "stage voice_gen: BackoffLimitExceeded")
    assert _health(_videojob(waiting)) == ("Progressing", "stage video_gen: waiting for a node")


def test_a_queued_videojob_says_why_it_waits() -> None:
    """Its Queued condition's message: its place in the operator's queue (as
    vid_operator.queueing words it) or the stage waiting for Kueue's quota;
    without one, where it stands."""

    def contender(name: str, running: bool) -> queueing.Contender:
        return queueing.Contender(
            uid=name,
            namespace="team-a",
            name=name,
            priority=Priority.DEFAULT,
            created=f"2026-11-22T06:00:0{len(name)}Z",
            running=running,
        )

    turns = queueing.line_up(
        [contender("a", True), contender("bb", False)], Queueing(max_running=1)
    )
    turn = turns["bb"]
    assert turn is not None
    capped = VideoJobStatus(
        phase=Phase.QUEUED,
        queue_position=turn.position,
        conditions=[_condition("Queued", turn.message)],
    )
    quota = VideoJobStatus(
        phase=Phase.QUEUED,
        stage="script_gen",
        progress="0/4",
        conditions=[
            _condition(
                "Queued",
                "stage script_gen: waiting for quota in LocalQueue team-a:"
                " Kueue has not admitted its Workload yet",
            )
        ],
    )

    assert _health(_videojob(capped)) == ("Progressing", turn.message)
    assert turn.message.startswith("position 1 in the queue: ")
    assert _health(_videojob(quota))[1].startswith("stage script_gen: waiting for quota")
    assert _health(_videojob(VideoJobStatus(phase=Phase.QUEUED, progress="1/4"))) == (
        "Progressing",
        "Queued at 1/4 stages",
    )
