"""
One timer per event loop for the poll intervals of every waiting trigger.

Why not ``asyncio.sleep``: each ``asyncio.sleep(d)`` makes a coroutine, a future, a ``TimerHandle``,
its argument tuple and a copy of the context, and all of them live for the whole interval. A
thousand triggers sleeping between polls keep thousands of such objects alive at any moment, so the
young collections of CPython's garbage collector promote them into the old generation, and once the
promoted objects exceed a quarter of the old generation CPython runs a full collection: a pause over
the whole heap (about 120 ms on the project machine for a process that has only imported
``airflow.sdk``), which stops the triggerer's event loop like any other synchronous work.
Measured with ``scripts/bench`` (BENCHMARKS.md): the sleeps were about a third of the objects the
1,000 waits promoted. Here a sleep is one future and one heap entry, and one ``TimerHandle`` serves
the earliest entry of all triggers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable


class PollClock:
    """
    The sleeps of the triggers of one event loop, on one timer.

    :param loop: The event loop the sleeps belong to.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties on the wake-up time are broken by arrival
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    @classmethod
    def for_running_loop(cls) -> PollClock:
        """Return the clock of the running event loop, creating it on first use."""
        loop = asyncio.get_running_loop()
        clock = _CLOCKS.get(loop)
        if clock is None:
            clock = _CLOCKS[loop] = cls(loop)
        return clock

    def sleep(self, seconds: float) -> Awaitable[None]:
        """
        An awaitable done after ``seconds`` (after one loop iteration when ``seconds <= 0``).

        A plain function returning the future, not a coroutine: one object fewer per sleep. A
        cancelled sleeper's entry stays on the heap until its time comes, then is dropped.
        """
        if seconds <= 0:
            return asyncio.sleep(0)
        future: asyncio.Future[None] = self._loop.create_future()
        when = self._loop.time() + seconds
        heapq.heappush(self._heap, (when, next(self._order), future))
        if when < self._timer_at:
            self._arm(when)
        return future

    @property
    def pending(self) -> int:
        """Entries on the timer (sleepers, and cancelled ones not yet due); for tests."""
        return len(self._heap)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._wake)
        self._timer_at = when

    def _wake(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        # As the loop's own timers: anything due within the clock's resolution is due now.
        due = self._loop.time() + getattr(self._loop, "_clock_resolution", 0.0)
        heap = self._heap
        while heap and heap[0][0] <= due:
            future = heapq.heappop(heap)[2]
            if not future.done():
                future.set_result(None)
        if heap:
            self._arm(heap[0][0])


_CLOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PollClock] = weakref.WeakKeyDictionary()
