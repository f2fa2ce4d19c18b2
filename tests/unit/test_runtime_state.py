"""Memory (one record per VideoJob), expectations (created, not yet seen)
and the timers, without a cluster; a hand-driven clock where time matters."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import structlog

from vid_operator import status
from vid_operator.config import Queueing
from vid_operator.runtime.expectations import Expectations
from vid_operator.runtime.memory import Memories, keep
from vid_operator.runtime.observed import Observed
from vid_operator.runtime.queue import Queue, Starts
from vid_operator.runtime.timers import DelayedCalls, Periodic


class HandClock:
    """A clock that moves only when the test says so (the timers' Clock)."""

    def __init__(self) -> None:
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), waiter))
        await waiter

    async def advance(self, seconds: float) -> None:
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)
        for _ in range(5):  # let the woken tasks run to their next await
            await asyncio.sleep(0)


def _body(uid: str = "u1", phase: str | None = None, **spec: object) -> dict[str, object]:
    return {
        "metadata": {
            "namespace": "media",
            "name": "cat",
            "uid": uid,
            "generation": 2,
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        },
        "spec": {"prompt": "a cat", **spec},
        "status": {"phase": phase} if phase else {},
    }


JOB = status.ObservedJob(name="cat-script-gen", created="", suspended=False)


# Memory


def test_keep_holds_what_the_reconciler_needs_and_drops_the_rest() -> None:
    kept = keep(_body(ttlSecondsAfterFinished=60))

    assert (kept.namespace, kept.name, kept.generation) == ("media", "cat", 2)
    assert kept.spec == {"prompt": "a cat", "ttlSecondsAfterFinished": 60}
    assert kept.ttl_seconds_after_finished == 60
    assert not kept.deleting
    # Nothing of the metadata beyond those fields is reachable from it.
    reachable = repr(kept)
    assert "managedFields" not in reachable and "last-applied" not in reachable


def test_a_finished_videojob_is_kept_without_its_spec() -> None:
    running = keep(_body(phase="Running", prompt="x" * 4000))
    assert running.spec is not None

    assert keep(_body(phase="Succeeded", prompt="x" * 4000)).spec is None
    assert running.with_status({"phase": "Failed"}).spec is None
    assert running.with_status({"phase": "Failed"}).ttl_seconds_after_finished is None


def test_one_record_per_uid_and_the_newest_of_a_name() -> None:
    memories = Memories()
    old = memories.recall("media", "cat", "u1")

    assert memories.recall("media", "cat", "u1") is old
    new = memories.recall("media", "cat", "u2")
    assert memories.newest("media", "cat") is new
    assert len(memories) == 2


def test_forgetting_marks_the_record_and_keeps_the_newer_name_holder() -> None:
    memories = Memories()
    old = memories.recall("media", "cat", "u1")
    new = memories.recall("media", "cat", "u2")

    memories.forget("u1")
    memories.forget("u1")  # twice is harmless

    assert old.forgotten and memories.get("u1") is None
    assert memories.newest("media", "cat") is new  # the newer name holder stays
    memories.forget("u2")
    assert memories.newest("media", "cat") is None and len(memories) == 0


def test_the_status_to_build_on_is_the_last_written_until_its_echo() -> None:
    memories = Memories()
    record = memories.recall("media", "cat", "u1")
    record.videojob = keep(_body(phase="Running"))
    assert record.status == {"phase": "Running"} and not record.finished

    record.written = {"phase": "Succeeded"}

    assert record.status == {"phase": "Succeeded"} and record.finished
    assert memories.unfinished() == []


# The watches' views


def test_jobs_are_found_by_their_videojob_and_forgotten_when_gone() -> None:
    observed = Observed()
    observed.job_seen("media", "cat-script-gen", "u1", "script_gen", JOB)

    assert observed.jobs_of("u1") == {"script_gen": JOB}
    assert observed.owner_of("media", "cat-script-gen") == "u1"
    observed.job_gone("media", "cat-script-gen")
    observed.job_gone("media", "cat-script-gen")  # twice is harmless
    assert observed.jobs_of("u1") == {} and observed.owner_of("media", "cat-script-gen") is None


def test_a_copy_of_the_views_does_not_change_them() -> None:
    observed = Observed()
    observed.job_seen("media", "cat-script-gen", "u1", "script_gen", JOB)

    observed.jobs_of("u1").clear()

    assert observed.jobs_of("u1") == {"script_gen": JOB}


def test_the_newest_pod_of_a_job_is_the_last_created() -> None:
    observed = Observed()
    first, retry = status.ObservedPod(failure="exit 1"), status.ObservedPod(finished=True)
    observed.pod_seen("media", "cat-a", "cat-script-gen", "2026-11-22T06:00:00Z", first)
    observed.pod_seen("media", "cat-b", "cat-script-gen", "2026-11-22T06:00:05Z", retry)

    assert observed.newest_pod("media", "cat-script-gen") == retry
    observed.pod_gone("media", "cat-b")
    assert observed.newest_pod("media", "cat-script-gen") == first
    observed.pod_gone("media", "cat-a")
    assert observed.newest_pod("media", "cat-script-gen") is None


# Expectations


def test_an_expected_job_counts_until_the_watch_shows_it() -> None:
    expectations = Expectations(timeout=30, clock=lambda: 0.0)
    expectations.expect("u1", "script_gen", JOB)

    assert expectations.pending("u1") == {"script_gen": JOB}
    expectations.observe("u1", "script_gen")
    assert expectations.pending("u1") == {}


def test_an_expectation_the_watch_never_meets_expires() -> None:
    now = [0.0]
    expectations = Expectations(timeout=30, clock=lambda: now[0])
    expectations.expect("u1", "script_gen", JOB)

    now[0] = 30.0
    assert expectations.pending("u1") == {"script_gen": JOB}
    now[0] = 30.5
    assert expectations.pending("u1") == {}


def test_expectations_are_per_owner_and_forgotten_with_it() -> None:
    expectations = Expectations(timeout=30, clock=lambda: 0.0)
    expectations.expect("u1", "script_gen", JOB)
    expectations.expect("u2", "script_gen", JOB)

    expectations.observe("u3", "script_gen")  # nothing expected: harmless
    expectations.forget("u1")

    assert expectations.pending("u1") == {}
    assert expectations.pending("u2") == {"script_gen": JOB}


# Timers


async def test_a_delayed_call_runs_once_when_due_and_not_before() -> None:
    clock, calls = HandClock(), []

    async def record(key: str) -> None:
        calls.append((key, clock.now()))

    delayed: DelayedCalls[str] = DelayedCalls(record, clock)
    delayed.schedule("u1", 0.5, tag="held")
    delayed.schedule("u1", 0.5, tag="held")  # same tag: not postponed, not doubled

    await clock.advance(0.4)
    assert calls == []
    await clock.advance(0.1)
    assert calls == [("u1", 0.5)]
    await clock.advance(10)
    assert calls == [("u1", 0.5)] and len(delayed) == 0


async def test_another_tag_replaces_the_pending_call_and_cancel_drops_it() -> None:
    clock, calls = HandClock(), []

    async def record(key: str) -> None:
        calls.append((key, clock.now()))

    delayed: DelayedCalls[str] = DelayedCalls(record, clock)
    delayed.schedule("u1", 60, tag="due at 60")
    delayed.schedule("u1", 120, tag="due at 120")
    delayed.schedule("u2", 5)
    delayed.cancel("u2")

    await clock.advance(100)
    assert calls == []
    await clock.advance(20)
    assert calls == [("u1", 120)]


async def test_a_failing_callback_is_logged_and_the_timer_stays_usable() -> None:
    clock, calls = HandClock(), []

    async def flaky(key: str) -> None:
        calls.append(key)
        if key == "bad":
            raise RuntimeError("boom")

    delayed: DelayedCalls[str] = DelayedCalls(flaky, clock)
    delayed.schedule("bad", 1)
    with structlog.testing.capture_logs() as logged:
        await clock.advance(1)
    assert calls == ["bad"] and len(delayed) == 0
    assert [(e["event"], e["key"]) for e in logged] == [("delayed call failed", "bad")]

    delayed.schedule("bad", 1)  # the key is free again after the failure
    await clock.advance(1)
    assert calls == ["bad", "bad"]
    await delayed.close()


async def test_a_callback_may_schedule_its_own_key_again() -> None:
    clock, calls = HandClock(), []
    delayed: DelayedCalls[str]

    async def again(key: str) -> None:
        calls.append(clock.now())
        if len(calls) < 3:
            delayed.schedule(key, 1)

    delayed = DelayedCalls(again, clock)
    delayed.schedule("u1", 1)
    for _ in range(4):
        await clock.advance(1)

    assert calls == [1, 2, 3]


async def test_close_cancels_what_is_pending() -> None:
    clock, calls = HandClock(), []

    async def record(key: str) -> None:
        calls.append(key)

    delayed: DelayedCalls[str] = DelayedCalls(record, clock)
    delayed.schedule("u1", 1)
    await delayed.close()
    await clock.advance(5)

    assert calls == [] and len(delayed) == 0


async def test_periodic_survives_a_failing_round_and_stops_when_told() -> None:
    clock, rounds = HandClock(), []

    async def work() -> None:
        rounds.append(clock.now())
        if len(rounds) == 1:
            raise RuntimeError("one VideoJob's bug")

    periodic = Periodic(30, work, clock)
    periodic.start()
    await asyncio.sleep(0)
    for _ in range(3):
        await clock.advance(30)
    await periodic.stop()
    await clock.advance(30)

    assert rounds == [30, 60, 90]


def test_a_refusal_is_known_only_while_the_job_has_no_pod() -> None:
    observed = Observed()
    observed.refusal_seen("media", "cat-script-gen", "exceeded quota", "t1")
    observed.refusal_seen("media", "cat-script-gen", "exceeded quota again", "t2")
    # The newest words, since the first time they were read.
    assert observed.refusal("media", "cat-script-gen") == ("exceeded quota again", "t1")

    observed.pod_seen("media", "cat-script-gen-x1", "cat-script-gen", "t", status.ObservedPod())
    assert observed.refusal("media", "cat-script-gen") is None
    observed.refusal_seen("media", "cat-voice-gen", "denied by a webhook", "t1")
    observed.job_gone("media", "cat-voice-gen")
    assert observed.refusal("media", "cat-voice-gen") is None


# -- the cap's queue: slots derived from memory, starts under way ---------------


def _queue(cap: int, clock: list[float]) -> tuple[Queue, Memories, Observed]:
    memories, observed = Memories(), Observed()
    queue = Queue(
        Queueing(max_running=cap),
        memories,
        observed,
        observed.jobs_of,
        Starts(30.0, lambda: clock[0]),
    )
    return queue, memories, observed


def _remember(memories: Memories, uid: str, created: str, phase: str | None = None) -> None:
    body = _body(uid, phase)
    body["metadata"]["name"] = uid  # type: ignore[index]
    body["metadata"]["creationTimestamp"] = created  # type: ignore[index]
    kept = keep(body)
    memories.recall(kept.namespace, kept.name, uid).videojob = kept


def test_the_queue_counts_running_videojobs_and_those_with_running_jobs() -> None:
    clock = [0.0]
    queue, memories, observed = _queue(2, clock)
    _remember(memories, "running", "2026-12-03T09:00:00Z", "Running")
    # Its status not yet written (the operator stopped after creating its Job).
    _remember(memories, "unwritten", "2026-12-03T09:00:01Z")
    job = status.ObservedJob(name="unwritten-script-gen", created="", suspended=False)
    observed.job_seen("media", job.name, "unwritten", "script_gen", job)
    _remember(memories, "next", "2026-12-03T09:00:02Z")

    turn = queue.turn("next")

    assert turn is not None and turn.position == 1
    assert queue.turn("running") is None and queue.turn("unwritten") is None


def test_a_start_under_way_holds_its_slot_until_memory_shows_it_or_it_expires() -> None:
    clock = [0.0]
    queue, memories, _ = _queue(1, clock)
    _remember(memories, "first", "2026-12-03T09:00:00Z")
    _remember(memories, "second", "2026-12-03T09:00:01Z")

    assert queue.next_up() == ["first"]
    queue.starting("first")
    assert queue.next_up() == []
    turn = queue.turn("second")
    assert turn is not None and turn.position == 1

    clock[0] = 31.0  # its Jobs never came: the slot goes to the next
    queue.changed()
    assert queue.turn("first") is None
    assert queue.next_up() == ["first"]


def test_a_finished_or_suspended_videojob_frees_its_slot() -> None:
    clock = [0.0]
    queue, memories, _ = _queue(1, clock)
    _remember(memories, "done", "2026-12-03T09:00:00Z", "Succeeded")
    _remember(memories, "paused", "2026-12-03T09:00:01Z", "Suspended")
    memories.get("paused").videojob = keep(  # type: ignore[union-attr]
        _body("paused", "Suspended", suspend=True)
    )
    _remember(memories, "waiting", "2026-12-03T09:00:02Z")

    assert queue.next_up() == ["waiting"]


def test_a_videojob_waiting_for_its_pipeline_takes_no_place_in_the_queue() -> None:
    clock = [0.0]
    queue, memories, _ = _queue(1, clock)
    _remember(memories, "no-pipeline", "2026-12-03T09:00:00Z")
    memories.get("no-pipeline").videojob = keep(  # type: ignore[union-attr]
        _body("no-pipeline", pipeline="not-there")
    )
    _remember(memories, "next", "2026-12-03T09:00:01Z")

    assert queue.next_up() == ["next"]


def test_a_deleted_videojob_keeps_its_slot_until_it_is_gone() -> None:
    clock = [0.0]
    queue, memories, _ = _queue(1, clock)
    _remember(memories, "deleting", "2026-12-03T09:00:00Z", "Running")
    body = _body("deleting", "Running")
    body["metadata"]["deletionTimestamp"] = "2026-12-03T09:01:00Z"  # type: ignore[index]
    memories.get("deleting").videojob = keep(body)  # type: ignore[union-attr]
    _remember(memories, "next", "2026-12-03T09:00:01Z")

    assert queue.next_up() == []
    memories.forget("deleting")
    queue.forget("deleting")
    assert queue.next_up() == ["next"]
