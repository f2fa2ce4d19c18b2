"""Leader election on a coordination.k8s.io Lease, so that of the operator's
replicas exactly one reconciles and writes while the others stand by.

Called by :mod:`vid_operator.main` under ``--leader-elect``: it awaits
:meth:`LeaseElector.acquire` (the standby's only write is its try at the
Lease), runs kopf once that returns, and exits at once when
:meth:`LeaseElector.hold` returns (the Lease could not be renewed within the
renew deadline), so that a replica that may have lost the Lease never writes
again. On a clean shutdown it calls :meth:`LeaseElector.release`, so that a
standby takes over within one retry period instead of a lease duration.

The rules are client-go's (``k8s.io/client-go/tools/leaderelection``): a
candidate takes the Lease when it has no holder, or when its record has not
changed for ``leaseDurationSeconds`` by the candidate's own clock (clocks of
different machines are never compared); the holder renews every retry period
and gives up once ``renew_deadline`` has passed since its last successful
renewal was sent, which is before any standby can see the Lease as expired
(``renew_deadline < lease_duration``). Every write is a replace carrying the
resourceVersion read, so two candidates can never both win one record.

Why not the client library's ``kubernetes.leaderelection`` (or its
``kubernetes.aio`` twin), read for this: neither bounds a single API call by
the renew deadline (a renewal stuck on a dead connection keeps the holder
"leading" past the point where a standby takes over: two writers), neither
releases the Lease on shutdown, neither keeps ``leaseTransitions``, both log
a traceback or an INFO line per retry, the threaded one calls ``sys.exit``
on a bad setting and runs the leader's work in a thread of its own, and the
asyncio one stores the duration as ``str(float)`` and reads it back with
``int()``. What is here is the same algorithm with those points fixed, on
the typed CoordinationV1Api, in some 150 lines.

The API calls block, so they run on a thread of their own: never behind the
controller's calls in the default executor, whose queue may be long exactly
when a renewal matters.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("vid_operator.leader")

_NOT_FOUND = 404
_CONFLICT = 409
# client-go's margin between a renew deadline and the retry period.
_JITTER = 1.2


@dataclass(frozen=True)
class Timings:
    """Seconds: how long a record holds, how long the holder keeps trying to
    renew before it gives up, and how often anyone tries."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > _JITTER * self.retry_period > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > "
                f"{_JITTER} * retry period > 0; got {self.lease_duration}, "
                f"{self.renew_deadline}, {self.retry_period}"
            )


@dataclass(frozen=True)
class Observed:
    """A Lease record as one candidate saw it, and when (its monotonic clock)
    it first saw this version of it."""

    holder: str | None
    version: str
    duration: float
    seen_at: float


def observe(previous: Observed | None, lease: client.V1Lease, now: float) -> Observed:
    """The record of ``lease``, dated ``now`` unless it is the version seen before."""
    spec = lease.spec or client.V1LeaseSpec()
    version = str(lease.metadata.resource_version if lease.metadata else "")
    if previous is not None and previous.version == version:
        return previous
    return Observed(spec.holder_identity or None, version, spec.lease_duration_seconds or 0, now)


def may_take(observed: Observed, identity: str, now: float) -> bool:
    """Whether ``identity`` may write the Lease: it holds it, nobody does
    (released), or its record has not changed for a whole lease duration."""
    return observed.holder in (None, identity) or now >= observed.seen_at + observed.duration


def default_identity() -> str:
    """Unique per process, as controller-runtime's: the host name (in a pod,
    the pod's name) and a random part, so that two processes on one host
    differ, and a container restarted in the same pod waits like any
    standby instead of taking its dead predecessor's record as its own."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaseElector:
    """One candidate for the Lease ``namespace/name`` under ``identity``."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        timings: Timings,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.timings = timings
        self.leading = False
        self._leases = client.CoordinationV1Api(api)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lease")
        self._observed: Observed | None = None
        self._lease: client.V1Lease | None = None
        # Monotonic time until which this candidate may act as the leader.
        self._valid_until = 0.0

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease; until then, try every
        retry period."""
        log.info("standing by for the lease", lease=self.name, identity=self.identity)
        holder: str | None = None
        while not await self._attempt(self.timings.renew_deadline):
            if self._observed is not None and self._observed.holder != holder:
                holder = self._observed.holder
                log.info("the lease is held by another replica", holder=holder)
            await asyncio.sleep(self.timings.retry_period)
        self.leading = True
        log.info("leading", lease=self.name, identity=self.identity)

    async def hold(self) -> None:
        """Renew every retry period; return once the Lease is lost: another
        holder is seen, or the renew deadline passed without a renewal."""
        while True:
            await asyncio.sleep(self.timings.retry_period)
            while True:
                remaining = self._valid_until - time.monotonic()
                if remaining <= 0:
                    log.error("lease not renewed within the renew deadline", lease=self.name)
                    self.leading = False
                    return
                try:
                    renewed = await asyncio.wait_for(self._attempt(remaining), remaining)
                except TimeoutError:
                    continue  # the deadline has passed: said above
                if renewed:
                    break
                if self._observed is not None and self._observed.holder != self.identity:
                    log.error("the lease was taken over", holder=self._observed.holder)
                    self.leading = False
                    return
                await asyncio.sleep(self.timings.retry_period)

    async def release(self) -> None:
        """Give the Lease up (no holder, a one-second duration) if this
        candidate still holds it, so that a standby takes it at its next try."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._release)
        self._thread.shutdown(wait=False)

    async def _attempt(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._try_acquire_or_renew, timeout)

    def _try_acquire_or_renew(self, timeout: float) -> bool:
        sent = time.monotonic()
        now = datetime.datetime.now(datetime.UTC)
        try:
            try:
                lease = self._leases.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=timeout
                )
            except ApiException as error:
                if error.status != _NOT_FOUND:
                    raise
                written = self._leases.create_namespaced_lease(
                    self.namespace,
                    client.V1Lease(
                        metadata=client.V1ObjectMeta(name=self.name),
                        spec=self._spec(now, now, transitions=0),
                    ),
                    _request_timeout=timeout,
                )
            else:
                self._observed = observe(self._observed, lease, time.monotonic())
                if not may_take(self._observed, self.identity, time.monotonic()):
                    return False
                spec = lease.spec or client.V1LeaseSpec()
                ours = spec.holder_identity == self.identity
                lease.spec = self._spec(
                    now,
                    spec.acquire_time if ours and spec.acquire_time else now,
                    transitions=(spec.lease_transitions or 0) + (0 if ours else 1),
                )
                written = self._leases.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=timeout
                )
        except ApiException as error:
            if error.status != _CONFLICT:  # a conflict: another candidate wrote first
                log.warning("lease not written", lease=self.name, status=error.status)
            return False
        except (urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("lease not written", lease=self.name, error=type(error).__name__)
            return False
        self._lease = written
        self._observed = observe(self._observed, written, time.monotonic())
        self._valid_until = sent + self.timings.renew_deadline
        return True

    def _spec(
        self, now: datetime.datetime, acquired: datetime.datetime, transitions: int
    ) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=math.ceil(self.timings.lease_duration),
            acquire_time=acquired,
            renew_time=now,
            lease_transitions=transitions,
        )

    def _release(self) -> None:
        lease = self._lease
        if not self.leading or lease is None or lease.spec is None:
            return
        self.leading = False
        now = datetime.datetime.now(datetime.UTC)
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        lease.spec.renew_time = now
        try:
            self._leases.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self.timings.retry_period
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            # Taken already, or no API: the standby waits out the duration.
            log.warning("lease not released", lease=self.name, error=type(error).__name__)
            return
        log.info("lease released", lease=self.name)
