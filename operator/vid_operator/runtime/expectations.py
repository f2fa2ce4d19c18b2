"""Stage Jobs this operator created that the watch has not delivered yet.

The controller records each Job it creates (:meth:`Expectations.expect`); the
snapshot it builds next marks the ones the Job index now has
(:meth:`Expectations.observe`) and counts the rest as existing
(:meth:`Expectations.pending`), so a reconcile that runs between a create and
its watch event does not create the Job again. An expectation the watch never
meets (the Job was deleted before it was seen) expires after ``timeout``
seconds, after which the next reconcile may create the Job again (a 409 then
means it was there after all).

Concurrency: one lock guards the store, so it may be used from any thread;
the controller uses it from the event loop only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vid_operator.status import ObservedJob


class Expectations:
    """Per VideoJob (by uid), per stage: the Job created and when."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._store: dict[str, dict[str, tuple[ObservedJob, float]]] = {}

    def expect(self, owner: str, stage: str, job: ObservedJob) -> None:
        """``job`` was created for ``owner``'s ``stage``; the watch has yet to say so."""
        with self._lock:
            self._store.setdefault(owner, {})[stage] = (job, self._clock())

    def observe(self, owner: str, stage: str, run: int = 0) -> None:
        """The watch has delivered ``owner``'s Job ``run`` of ``stage`` (which
        meets the expectation of that Job or of an earlier one)."""
        with self._lock:
            pending = self._store.get(owner)
            if pending is not None and stage in pending and pending[stage][0].run <= run:
                del pending[stage]
                if not pending:
                    del self._store[owner]

    def pending(self, owner: str) -> dict[str, ObservedJob]:
        """The Jobs expected for ``owner`` and not yet observed nor expired."""
        with self._lock:
            pending = self._store.get(owner, {})
            now = self._clock()
            for stage in [s for s, (_, since) in pending.items() if now - since > self._timeout]:
                del pending[stage]
            if not pending:
                self._store.pop(owner, None)
            return {stage: job for stage, (job, _) in pending.items()}

    def forget(self, owner: str) -> None:
        """``owner`` is gone: drop what was expected for it."""
        with self._lock:
            self._store.pop(owner, None)
