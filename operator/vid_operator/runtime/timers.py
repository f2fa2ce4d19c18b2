"""Waiting, apart from deciding: keyed delayed calls and a periodic loop.

The controller owns one :class:`DelayedCalls` for held-back progress writes,
one for TTL deletions, one for the rechecks of stages' time limits, and one
:class:`Periodic` for the resync; each takes
the callback to run and knows nothing of what it does. Time comes from a
:class:`Clock`, so tests drive it by hand.

Concurrency: event loop only. Each timer keeps a strong reference to every
task it starts (the loop keeps only weak ones) and drops it when the task ends
or is cancelled; :meth:`DelayedCalls.close` and :meth:`Periodic.stop` cancel
what is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

import structlog

log = structlog.get_logger("vid_operator")

Key = TypeVar("Key", bound=Hashable)


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""


class LoopClock:
    """The running event loop's own clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class DelayedCalls(Generic[Key]):
    """At most one pending call of ``callback(key)`` per key.

    :meth:`schedule` with the ``tag`` of the pending call keeps it (a held-back
    write is not postponed by more progress); another tag replaces it (a TTL
    that changed). The call is no longer pending once it starts, so the
    callback may schedule its key again. An exception in the callback is
    logged, never raised into the loop."""

    def __init__(self, callback: Callable[[Key], Awaitable[None]], clock: Clock) -> None:
        self._callback = callback
        self._clock = clock
        self._pending: dict[Key, tuple[Hashable, asyncio.Task[None]]] = {}

    def schedule(self, key: Key, delay: float, tag: Hashable = None) -> None:
        current = self._pending.get(key)
        if current is not None:
            if current[0] == tag:
                return
            current[1].cancel()
        due = self._clock.now() + delay
        self._pending[key] = (tag, asyncio.get_running_loop().create_task(self._run(key, due)))

    def pending(self, key: Key) -> bool:
        """A call for ``key`` waits to be made."""
        return key in self._pending

    def cancel(self, key: Key) -> None:
        current = self._pending.pop(key, None)
        if current is not None:
            current[1].cancel()

    def __len__(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        tasks = [task for _, task in self._pending.values()]
        self._pending.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, key: Key, due: float) -> None:
        # Due from when it was scheduled, however late the task starts.
        await self._clock.sleep(max(0.0, due - self._clock.now()))
        current = self._pending.get(key)
        if current is None or current[1] is not asyncio.current_task():
            return  # replaced while it slept
        del self._pending[key]
        try:
            await self._callback(key)
        except Exception:
            log.exception("delayed call failed", key=str(key))


class Periodic:
    """``callback()`` every ``interval`` seconds, from :meth:`start` to :meth:`stop`.
    An exception in one round is logged and the next round runs as usual."""

    def __init__(self, interval: float, callback: Callable[[], Awaitable[None]], clock: Clock):
        self._interval = interval
        self._callback = callback
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep(self._interval)
            try:
                await self._callback()
            except Exception:
                log.exception("periodic call failed")
