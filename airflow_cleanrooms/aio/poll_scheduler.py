"""
The polls of every waiting trigger of one event loop: one timer, a bounded number of calls at once.

Why not a loop of ``await asyncio.sleep(interval)`` and ``await client.get_x()`` per trigger: a
sleeping trigger keeps that sleep's coroutine, future, ``TimerHandle``, argument tuple and context
copy alive for the whole interval, and a due poll keeps its call's coroutine, futures, work item and
callbacks alive while it queues for a thread. With a thousand waits, CPython's young collections
promote thousands of such objects into the old generation, and once the promoted objects exceed a
quarter of the old generation CPython runs a full collection: one pause over the whole heap, which
stops the triggerer's event loop like any other synchronous work. ``scripts/bench`` measures it
(BENCHMARKS.md: "objects promoted to the old generation per wait", and the cost of a full collection).

Here a wait is one :class:`Polling` record, created once: between polls it sits on the scheduler's
heap (ordered by its next due time, no per-poll object), and at most :attr:`PollScheduler.max_in_flight`
calls run at once, the others waiting their turn on the heap or in a queue of records. After each
call the wait's ``step`` decides: a number is the delay before the next poll, a :class:`Finished`
ends the wait with its result. ``step`` and the call run in the context (``contextvars``) of the task that
started the wait, so the triggerer's per-trigger log routing still applies to what they log.

A poll may name an :class:`~airflow_cleanrooms.aio.rate_limiter.AdaptiveRateLimiter` (the waits'
account, Region and operation): when it is due it queues there for a token (FIFO, no per-poll object
but its place in the queue) and only then for a call slot, so the calls offered to one account stay
under its request rate (:attr:`PollScheduler.rate_limiters`).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow_cleanrooms.aio.client_pool import THREAD_WORKERS, ThreadedClient
from airflow_cleanrooms.aio.keys import PerLoop, limiter_key
from airflow_cleanrooms.aio.rate_limiter import RateLimiters

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Mapping

    from airflow_cleanrooms.aio.keys import ClientKey
    from airflow_cleanrooms.aio.rate_limiter import AdaptiveRateLimiter


_NO_ARGUMENTS: dict[str, Any] = {}

T = TypeVar("T")


class Finished(Generic[T]):
    """What a poll's ``step`` returns to end the polling with ``result``."""

    __slots__ = ("result",)

    def __init__(self, result: T) -> None:
        self.result = result


@dataclass(slots=True, eq=False)
class Polling:
    """One repeated call: what to call, what to do with each outcome, when it is next due."""

    call: Callable[..., Coroutine[Any, Any, Any]] | None
    kwargs: dict[str, Any]
    step: Callable[[Any], Any] | None
    future: asyncio.Future[Any]
    context: contextvars.Context | None
    limiter: AdaptiveRateLimiter | None = None
    due: float = 0.0

    def __lt__(self, other: Polling) -> bool:  # heap order; equal times in any order
        return self.due < other.due


class _Limited:
    """
    What :meth:`PollScheduler.limited` returns: a ``with`` block that holds a wait's place in its
    limiter's ceiling. One small object per wait (a generator-based context manager would keep a
    generator and its frame for the whole wait: objects the collector promotes, see the module).
    """

    __slots__ = ("limiter", "rate")

    def __init__(self, limiter: AdaptiveRateLimiter | None, rate: float) -> None:
        self.limiter = limiter
        self.rate = rate

    def __enter__(self) -> AdaptiveRateLimiter | None:
        return self.limiter

    def __exit__(self, *exc: object) -> None:
        if self.limiter is not None:
            self.limiter.unregister(self.rate)
            self.limiter = None


class PollScheduler:
    """
    The polls of the triggers of one event loop.

    :param loop: The event loop the polls belong to.
    """

    #: Calls running at once: the thread transport's workers busy, as many ready to go next. A call
    #: that hangs holds its slot until botocore's read timeout ends it, as it held a worker before.
    max_in_flight: int = 2 * THREAD_WORKERS

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[Polling] = []
        self._ready: deque[Polling] = deque()
        self._running: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        #: The request-rate limiters of this loop's waits (they hand due polls back to this scheduler).
        self.rate_limiters = RateLimiters(loop, self._admit)

    @classmethod
    def for_running_loop(cls) -> PollScheduler:
        """Return the scheduler of the running event loop, creating it on first use."""
        return _SCHEDULERS.get()

    @property
    def in_flight(self) -> int:
        """Calls running now."""
        return len(self._running)

    @property
    def scheduled(self) -> int:
        """Waits on the timer or queued for a call slot (cancelled ones until their turn comes)."""
        return len(self._heap) + len(self._ready)

    def sleep(self, seconds: float) -> Awaitable[None]:
        """An awaitable done after ``seconds`` (after one loop iteration when ``seconds <= 0``)."""
        if seconds <= 0:
            return asyncio.sleep(0)
        polling = Polling(None, _NO_ARGUMENTS, None, self._loop.create_future(), None)
        self._schedule(polling, seconds)
        return polling.future

    def limited(
        self,
        client_key: ClientKey | None,
        client: Any,
        operation: str,
        rate: float | None,
        is_throttling: Callable[[Mapping[str, Any]], bool],
    ) -> _Limited:
        """
        The rate limiter a wait's polls of ``operation`` take turns on, for as long as a ``with`` block runs.

        One limiter per account, Region and operation (:func:`~airflow_cleanrooms.aio.keys.limiter_key`
        of the pooled client's key), fed the throttled answers ``client`` receives, with ``rate``
        counted in its ceiling until the block ends. The block gets ``None`` (no limiter) when
        ``rate`` is ``None`` or 0, or the client has no key.

        :param client: the pooled client (a thread-transport client's boto3 client is watched).
        :param is_throttling: whether a parsed response is a refusal for rate.
        """
        if not rate or client_key is None:
            return _Limited(None, 0.0)
        limiter = self.rate_limiters.get(limiter_key(client_key, operation), rate)
        botocore_client = client.client if isinstance(client, ThreadedClient) else client
        self.rate_limiters.watch(client_key, botocore_client, is_throttling)
        limiter.register(rate)
        return _Limited(limiter, rate)

    def poll(
        self,
        call: Callable[..., Coroutine[Any, Any, Any]],
        kwargs: dict[str, Any],
        step: Callable[[Any], float | Finished[T]],
        first_delay: float = 0.0,
        limiter: AdaptiveRateLimiter | None = None,
    ) -> asyncio.Future[T]:
        """
        Call ``await call(**kwargs)`` after ``first_delay`` seconds, then as ``step`` says.

        ``step`` gets each call's outcome (its result, or the exception it raised) and returns the
        delay in seconds before the next call, or ``Finished(result)`` to end the polling with
        ``result`` as the result of the returned future. An exception raised by ``step`` ends it
        with that exception. Cancelling the future ends the polling: a call running at that moment
        finishes, and its outcome is dropped. With ``limiter`` (one of :attr:`rate_limiters`), each
        call waits for a token from it once due; that wait is not an outcome ``step`` sees.
        """
        polling = Polling(call, kwargs, step, self._loop.create_future(), contextvars.copy_context(), limiter)
        self._schedule(polling, first_delay)
        return polling.future

    # -- timer -------------------------------------------------------------------------------------

    def _schedule(self, polling: Polling, delay: float) -> None:
        if delay <= 0 and polling.call is not None:
            self._due(polling)
            return
        polling.due = self._loop.time() + delay
        heapq.heappush(self._heap, polling)
        if polling.due < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(polling.due, self._wake)
            self._timer_at = polling.due

    def _wake(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        # As the loop's own timers: anything due within the clock's resolution is due now.
        due = self._loop.time() + getattr(self._loop, "_clock_resolution", 0.0)
        heap = self._heap
        while heap and heap[0].due <= due:
            polling = heapq.heappop(heap)
            if polling.future.done():
                continue  # cancelled while it slept
            if polling.call is None:
                polling.future.set_result(None)  # a plain sleep
            elif polling.limiter is not None:
                polling.limiter.submit(polling)  # back through _admit when its token is granted
            else:
                self._ready.append(polling)
        self._dispatch()
        if heap:
            self._timer = self._loop.call_at(heap[0].due, self._wake)
            self._timer_at = heap[0].due

    def _due(self, polling: Polling) -> None:
        if polling.limiter is not None:
            polling.limiter.submit(polling)
        else:
            self._ready.append(polling)
            self._dispatch()

    def _admit(self, polling: Polling) -> bool:
        """A limiter granted ``polling`` its token: queue its call (``False``: it was cancelled)."""
        if polling.future.done():
            return False
        self._ready.append(polling)
        self._dispatch()
        return True

    # -- calls -------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._ready and len(self._running) < self.max_in_flight:
            polling = self._ready.popleft()
            if polling.future.done() or polling.call is None or polling.context is None:
                continue
            try:
                task = polling.context.run(self._loop.create_task, polling.call(**polling.kwargs))
            except Exception as error:  # not a coroutine function, or it failed before its first await
                polling.future.set_exception(error)
                continue
            self._running.add(task)
            task.add_done_callback(partial(self._finished, polling))

    def _finished(self, polling: Polling, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        try:
            if polling.future.done():
                if not task.cancelled():
                    task.exception()  # retrieved: the wait was cancelled, its outcome is not needed
                return
            if task.cancelled():
                polling.future.cancel()  # the loop is shutting down
                return
            outcome = task.exception() or task.result()
            try:
                decision = polling.context.run(polling.step, outcome)  # type: ignore[union-attr,arg-type]
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:
                polling.future.set_exception(error)
                return
            if isinstance(decision, Finished):
                polling.future.set_result(decision.result)
            else:
                self._schedule(polling, float(decision))
        finally:
            self._dispatch()


_SCHEDULERS: PerLoop[PollScheduler] = PerLoop(PollScheduler)
