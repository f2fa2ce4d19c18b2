"""In-stage progress reports: a stage tells its VideoJob how far it is.

:func:`vidop_stages.runtime.run_stage` builds one :class:`ProgressReporter`
from the environment (:func:`from_environment`) and hands it to the work as
``context.progress``; the work calls ``context.progress(percent, message)``
as often as it likes. Where the operator gave the pod a progress token
(``contract.ENV_PROGRESS_TOKEN_FILE``), the reporter merge-patches the
annotation ``contract.PROGRESS_ANNOTATION`` of the stage's own pod with
``contract.encode_progress``; the operator reads it from its pod watch. The
chart's admission policy lets that token do nothing else.

- At most one patch every ``contract.PROGRESS_MIN_INTERVAL_SECONDS``: a call
  in between is remembered, and the newest value goes out once that much
  time has passed, from a timer thread if no call comes first (the report
  just before a long step, "encoding", must not wait for the step's end); a
  value the pod already carries is not sent again.
- The token file is read before each patch: the kubelet replaces it well
  before it expires.
- Short timeouts and no retries; any failure is logged (never the token)
  and the stage carries on: progress is a courtesy, not part of its result.
- Without a token (or without an API server address) every call does
  nothing.

HTTP goes through urllib3, which the stage images have through botocore.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import structlog
import urllib3

from vid_operator import contract

_TIMEOUT = urllib3.Timeout(connect=2.0, read=5.0)
_MAX_LOGGED_ANSWER = 300


@dataclass(frozen=True)
class ProgressTarget:
    """Where progress goes: the stage's own pod, on the API server at
    ``server``, with the token in ``token_file``."""

    server: str
    """``https://host:port``, no trailing slash."""
    namespace: str
    pod: str
    token_file: Path
    ca_file: Path | None


@dataclass(frozen=True)
class PatchRequest:
    """One progress report as an HTTP request."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def target_from_environment(environ: Mapping[str, str]) -> ProgressTarget | None:
    """The target the operator's environment names; None when the stage is
    to report no progress (no token file, or no way to the API server)."""
    token_file = environ.get(contract.ENV_PROGRESS_TOKEN_FILE)
    pod = environ.get(contract.ENV_POD_NAME)
    namespace = environ.get(contract.ENV_JOB_NAMESPACE)
    if not token_file or not Path(token_file).is_file() or not pod or not namespace:
        return None
    server = environ.get(contract.ENV_API_SERVER) or _in_cluster_server(environ)
    if server is None:
        return None
    ca_file = environ.get(contract.ENV_API_CA_FILE)
    return ProgressTarget(
        server=server.rstrip("/"),
        namespace=namespace,
        pod=pod,
        token_file=Path(token_file),
        ca_file=Path(ca_file) if ca_file else None,
    )


def _in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """The address every kubelet gives its pods, as client-go's in-cluster
    configuration reads it."""
    host = environ.get("KUBERNETES_SERVICE_HOST")
    port = environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def patch_request(target: ProgressTarget, value: str, token: str) -> PatchRequest:
    """The merge patch that sets the progress annotation to ``value``."""
    body = {"metadata": {"annotations": {contract.PROGRESS_ANNOTATION: value}}}
    return PatchRequest(
        method="PATCH",
        url=(
            f"{target.server}/api/v1/namespaces/{quote(target.namespace, safe='')}"
            f"/pods/{quote(target.pod, safe='')}"
        ),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/merge-patch+json",
            "Accept": "application/json",
        },
        body=json.dumps(body, separators=(",", ":")).encode(),
    )


Later = Callable[[float, Callable[[], None]], None]
"""Call the second argument once the first's seconds have passed."""


def _daemon_timer(delay: float, call: Callable[[], None]) -> None:
    # A daemon: a report still pending when the stage ends is not worth
    # keeping the process for.
    timer = threading.Timer(delay, call)
    timer.daemon = True
    timer.start()


class ProgressReporter:
    """``reporter(percent, message)``: see the module's docstring. With no
    target, a no-op. Thread-safe: the timer sends under the same lock."""

    def __init__(
        self,
        target: ProgressTarget | None,
        log: structlog.typing.FilteringBoundLogger,
        *,
        clock: Callable[[], float] = time.monotonic,
        later: Later = _daemon_timer,
        interval: float = contract.PROGRESS_MIN_INTERVAL_SECONDS,
    ) -> None:
        self._target = target
        self._interval = interval
        self._log = log
        self._clock = clock
        self._later = later
        self._lock = threading.Lock()
        self._timer_set = False
        self._pool = (
            None
            if target is None
            else urllib3.PoolManager(
                cert_reqs="CERT_REQUIRED",
                ca_certs=str(target.ca_file) if target.ca_file else None,
                timeout=_TIMEOUT,
                retries=False,
            )
        )
        self._pending: str | None = None
        self._sent: str | None = None
        self._last_try: float | None = None

    def __call__(self, percent: float, message: str = "") -> None:
        if self._target is None:
            return
        value = contract.encode_progress(percent, message)
        with self._lock:
            self._pending = None if value == self._sent else value
            self._send_if_due()

    def _send_if_due(self) -> None:
        """Send the pending value if the interval has passed, else make sure
        a timer will. Called with the lock held."""
        assert self._target is not None
        if self._pending is None:
            return
        now = self._clock()
        wait = 0.0 if self._last_try is None else self._interval - (now - self._last_try)
        if wait > 0:
            if not self._timer_set:
                self._timer_set = True
                self._later(wait, self._on_timer)
            return
        self._last_try = now
        if self._send(self._target, self._pending):
            self._sent, self._pending = self._pending, None

    def _on_timer(self) -> None:
        with self._lock:
            self._timer_set = False
            self._send_if_due()

    def _send(self, target: ProgressTarget, value: str) -> bool:
        """Whether the API server took the patch; failures are logged only."""
        assert self._pool is not None
        try:
            token = target.token_file.read_text().strip()
        except OSError as error:
            self._log.warning(
                "progress not reported", token_file=str(target.token_file), error=error.strerror
            )
            return False
        request = patch_request(target, value, token)
        try:
            response = self._pool.request(
                request.method, request.url, body=request.body, headers=request.headers
            )
        except urllib3.exceptions.HTTPError as error:
            self._log.warning("progress not reported", server=target.server, error=str(error))
            return False
        if response.status >= 300:
            self._log.warning(
                "progress not reported",
                status=response.status,
                answer=response.data[:_MAX_LOGGED_ANSWER].decode(errors="replace"),
            )
            return False
        return True


def from_environment(log: structlog.typing.FilteringBoundLogger) -> ProgressReporter:
    """The stage's reporter, from its environment (a no-op without a token)."""
    target = target_from_environment(os.environ)
    if target is not None:
        log.info("progress reports on", server=target.server, pod=target.pod)
    return ProgressReporter(target, log)
