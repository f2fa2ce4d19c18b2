"""vidop_stages.progress: where a stage's progress goes, the request that
carries it, and how often it goes, against a real HTTP server on loopback
that records what it receives (the real API server: see
tests/integration/test_stage_progress_token.py)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from tests.support import wait_until
from vid_operator import contract
from vidop_stages.progress import (
    ProgressReporter,
    ProgressTarget,
    patch_request,
    target_from_environment,
)

INTERVAL = contract.PROGRESS_MIN_INTERVAL_SECONDS


@dataclass
class Recorder:
    """What the server received, and the status it answers with."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            length = int(self.headers["Content-Length"])
            recorder.requests.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"kind":"Status","message":"as you like"}')

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", recorder
    httpd.shutdown()
    httpd.server_close()


def _target(server: str, token_file: Path) -> ProgressTarget:
    return ProgressTarget(server, "team-a", "cat-video-gen-0-x7k2p", token_file, None)


class Clock:
    """Time by hand, and the timers asked for: run them with :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def later(self, delay: float, call: Callable[[], None]) -> None:
        self.timers.append((self.now + delay, call))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, call in due:
            call()


def _reporter(target: ProgressTarget | None, clock: Clock) -> ProgressReporter:
    return ProgressReporter(target, structlog.get_logger("test"), clock=clock, later=clock.later)


def _values(recorder: Recorder) -> list[contract.Progress | None]:
    return [
        contract.read_progress(r["body"]["metadata"]["annotations"][contract.PROGRESS_ANNOTATION])
        for r in recorder.requests
    ]


def test_the_target_comes_from_the_operators_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    environment = {
        contract.ENV_PROGRESS_TOKEN_FILE: str(token),
        contract.ENV_API_CA_FILE: "/var/run/vidop/progress/ca.crt",
        contract.ENV_POD_NAME: "cat-script-gen-abcde",
        contract.ENV_JOB_NAMESPACE: "team-a",
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
    }

    assert target_from_environment(environment) == ProgressTarget(
        "https://10.96.0.1:443",
        "team-a",
        "cat-script-gen-abcde",
        token,
        Path("/var/run/vidop/progress/ca.crt"),
    )
    # The configured address wins; an IPv6 service address is bracketed.
    named = {**environment, contract.ENV_API_SERVER: "https://api.example:6443/"}
    assert target_from_environment(named).server == "https://api.example:6443"  # type: ignore[union-attr]
    six = {**environment, "KUBERNETES_SERVICE_HOST": "fd00::1"}
    assert target_from_environment(six).server == "https://[fd00::1]:443"  # type: ignore[union-attr]
    # No token (a stage without progress), a token file not there, no pod
    # name or no way to the API server: no target.
    assert target_from_environment({}) is None
    for missing in (contract.ENV_PROGRESS_TOKEN_FILE, contract.ENV_POD_NAME):
        assert target_from_environment({**environment, missing: ""}) is None
    assert (
        target_from_environment({**environment, contract.ENV_PROGRESS_TOKEN_FILE: "/nowhere"})
        is None
    )
    del environment["KUBERNETES_SERVICE_HOST"]
    assert target_from_environment(environment) is None


def test_the_request_is_a_merge_patch_of_the_pods_own_annotation() -> None:
    target = ProgressTarget(
        "https://10.96.0.1:443", "team-a", "cat-script-gen-abcde", Path("/t"), None
    )

    request = patch_request(target, contract.encode_progress(33, "scene 2"), "the-token")

    assert (request.method, request.url) == (
        "PATCH",
        "https://10.96.0.1:443/api/v1/namespaces/team-a/pods/cat-script-gen-abcde",
    )
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    assert request.headers["Authorization"] == "Bearer the-token"
    assert json.loads(request.body) == {
        "metadata": {"annotations": {"vidop.io/progress": '{"percent":33,"message":"scene 2"}'}}
    }


def test_at_most_one_patch_per_interval_and_the_newest_goes_out(
    server: tuple[str, Recorder], tmp_path: Path
) -> None:
    url, recorder = server
    token = tmp_path / "token"
    token.write_text("first\n")
    clock = Clock()
    report = _reporter(_target(url, token), clock)

    report(10, "starting")
    clock.now += INTERVAL / 2
    report(20, "remembered, not sent")
    report(30, "newer, not sent either")
    assert _values(recorder) == [contract.Progress(10, "starting")]

    # Once due, the call sends the newest value, with the token as it is
    # now in the file (the kubelet replaces it).
    token.write_text("rotated\n")
    clock.now += INTERVAL / 2
    report(40, "due")
    assert _values(recorder)[1:] == [contract.Progress(40, "due")]
    assert [r["headers"]["Authorization"] for r in recorder.requests] == [
        "Bearer first",
        "Bearer rotated",
    ]
    assert recorder.requests[0]["path"] == "/api/v1/namespaces/team-a/pods/cat-video-gen-0-x7k2p"

    # What the pod already says is not said again, however long after.
    clock.now += 10 * INTERVAL
    report(40, "due")
    assert len(recorder.requests) == 2
    # Out-of-range percents are clamped as the contract encodes them.
    report(250, "done")
    assert _values(recorder)[2:] == [contract.Progress(100, "done")]


def test_failures_are_logged_without_the_token_and_never_raise(
    server: tuple[str, Recorder], tmp_path: Path
) -> None:
    url, recorder = server
    token = tmp_path / "token"
    token.write_text("secret-token-value")
    clock = Clock()
    report = _reporter(_target(url, token), clock)
    recorder.status = 403

    with capture_logs() as logs:
        report(10, "refused")
        # Refused: tried again with the next call once due, not before.
        report(11, "too soon")
        clock.now += INTERVAL
        recorder.status = 200
        report(12, "accepted")
        clock.now += INTERVAL
        token.unlink()
        report(13, "no token")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    unreachable = _reporter(_target(f"http://127.0.0.1:{closed}", tmp_path / "t"), clock)
    (tmp_path / "t").write_text("x")
    with capture_logs() as more:
        unreachable(50, "nobody listens")

    assert _values(recorder) == [
        contract.Progress(10, "refused"),
        contract.Progress(12, "accepted"),
    ]
    assert [entry["event"] for entry in [*logs, *more]] == ["progress not reported"] * 3
    assert logs[0]["status"] == 403
    assert "secret-token-value" not in repr([*logs, *more])


def test_without_a_target_every_call_does_nothing() -> None:
    report = _reporter(None, Clock())

    with capture_logs() as logs:
        for percent in range(0, 101, 10):
            report(percent, "nowhere to go")

    assert logs == []


def test_a_report_held_back_goes_out_when_due_without_another_call(
    server: tuple[str, Recorder], tmp_path: Path
) -> None:
    """The report just before a long step (video_gen: "encoding") reaches the
    pod while the step runs, not after it."""
    url, recorder = server
    token = tmp_path / "token"
    token.write_text("t\n")
    clock = Clock()
    report = _reporter(_target(url, token), clock)

    report(0, "drawing scene 1")
    clock.advance(0.4)
    report(20, "encoding 480 frames")
    report(20, "encoding 480 frames")  # one timer, however many calls
    assert _values(recorder) == [contract.Progress(0, "drawing scene 1")]
    assert len(clock.timers) == 1

    clock.advance(INTERVAL)
    assert _values(recorder) == [
        contract.Progress(0, "drawing scene 1"),
        contract.Progress(20, "encoding 480 frames"),
    ]
    assert clock.timers == []


def test_the_real_timer_sends_a_held_back_report(
    server: tuple[str, Recorder], tmp_path: Path
) -> None:
    url, recorder = server
    token = tmp_path / "token"
    token.write_text("t\n")
    report = ProgressReporter(_target(url, token), structlog.get_logger("test"), interval=0.3)

    report(0, "first")
    report(50, "second")

    wait_until("the timer's report", lambda: len(recorder.requests) == 2, timeout=5)
    assert _values(recorder)[1] == contract.Progress(50, "second")
