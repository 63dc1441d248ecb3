"""
One client-side request-rate limiter per AWS account, Region and operation, shared by the waits of
one event loop (the triggerer's).

Why: AWS meters each Clean Rooms ML operation per account and Region (the published default is
:data:`DEFAULT_MAX_REQUESTS_PER_SECOND` requests per second) and answers ``ThrottlingException``
beyond it. A triggerer holding hundreds of waits on one account would offer far more than that if
every wait polled on its own schedule; each throttled call is then retried by botocore, which offers
more still. Here every poll of a wait asks the limiter of its account, Region and operation for a
token first:

* **pacing**: a token bucket that holds one token (no burst), so in any window of ``T`` seconds at
  most ``T * rate + 1`` calls are offered. Polls that find no token queue in arrival order (FIFO),
  so a wait that becomes due waits at most ``(waits sharing the limiter) / rate`` seconds for its
  turn: its detection latency is bounded by that plus one poll interval. Waiting for a token is
  not an error and costs the wait none of its attempts or its transient-error budget;
* **adapting** (AIMD): a ``ThrottlingException`` from the service (some other client of the account
  uses the same quota, or the account's quota is lower than configured) cuts the rate in half, at
  most once per :attr:`AdaptiveRateLimiter.cut_interval`; without throttling the rate creeps back up
  linearly, to the configured ceiling in :attr:`AdaptiveRateLimiter.recovery_seconds`. The service's
  answers reach the limiter from the clients themselves (botocore's ``response-received`` event,
  every attempt, botocore's own retries included: :meth:`RateLimiters.watch`);
* **ceiling**: the smallest ``max_requests_per_second`` among the waits sharing the limiter now.

The key (:class:`~airflow_cleanrooms.aio.keys.LimiterKey`) is the one the client pool uses
(:class:`~airflow_cleanrooms.aio.keys.ClientKey`: endpoint, Region, a hash of the credentials)
narrowed to what AWS meters by: the account when the connection names it (the account of its
``role_arn``), else the credential hash, and the operation. Two connections with different
credentials for one account (and no role ARN) thus get a limiter each; the AIMD cut keeps their sum
near the quota when they exceed it together.

Limiters are per event loop (the poll scheduler's :attr:`~airflow_cleanrooms.aio.poll_scheduler.
PollScheduler.rate_limiters`); a wait takes its turn on one through :meth:`~airflow_cleanrooms.aio.
poll_scheduler.PollScheduler.limited`, and the scheduler hands due polls to it
(:meth:`AdaptiveRateLimiter.submit`); other callers ``await limiter.acquire()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from airflow_cleanrooms.aio.keys import ClientKey, LimiterKey, limiter_key

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Clean Rooms' published default request-rate quota: requests per second per operation, account and
#: Region ("AWS Clean Rooms quotas", API rate quotas). Raise it for an account with a raised quota.
DEFAULT_MAX_REQUESTS_PER_SECOND = 5.0


class AdaptiveRateLimiter:
    """
    A token bucket of one token refilled at :attr:`rate`, cut in half on throttling; see the module.

    :param loop: The event loop whose timer releases the queued callers.
    :param deliver: Called with each queued item (not a future) when its token is granted; returns
        whether the item used it (``False``: the caller had gone, the token goes to the next one).
    :param ceiling: Requests per second at most.
    """

    #: Lowest rate the AIMD cut goes to (requests per second).
    min_rate: float = 0.1
    #: Factor of a cut.
    decrease: float = 0.5
    #: Seconds after a cut during which further throttles do not cut again (they answer calls made
    #: at the old rate).
    cut_interval: float = 2.0
    #: Seconds to climb from 0 back to the ceiling without throttling (linear).
    recovery_seconds: float = 20.0

    def __init__(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Any], bool], ceiling: float
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._queue: deque[Any] = deque()
        self._ceilings: Counter[float] = Counter()
        self._default_ceiling = float(ceiling)
        self._rate = float(ceiling)
        self._rate_at = loop.time()  # when _rate was last set
        self._last_cut = float("-inf")
        self._next_token = loop.time()  # earliest time the next token is available
        self._timer: asyncio.TimerHandle | None = None
        #: Tokens granted, and throttles seen, since creation (for tests and benchmarks).
        self.granted = 0
        self.throttles = 0
        self.cuts = 0

    # -- configuration ---------------------------------------------------------------------------

    @property
    def ceiling(self) -> float:
        """The smallest rate asked for by the callers registered now (or the rate it was made with)."""
        return min(self._ceilings) if self._ceilings else self._default_ceiling

    def register(self, ceiling: float) -> None:
        """A wait that asks for at most ``ceiling`` requests/second starts using the limiter."""
        self._rate = self.rate
        self._rate_at = self._loop.time()
        self._ceilings[float(ceiling)] += 1
        self._rate = min(self._rate, self.ceiling)

    def unregister(self, ceiling: float) -> None:
        """The wait registered with ``ceiling`` is done."""
        ceiling = float(ceiling)
        self._ceilings[ceiling] -= 1
        if self._ceilings[ceiling] <= 0:
            del self._ceilings[ceiling]

    @property
    def rate(self) -> float:
        """Requests per second allowed now: the last cut plus the linear recovery since, capped."""
        ceiling = self.ceiling
        recovered = self._rate + (self._loop.time() - self._rate_at) * ceiling / self.recovery_seconds
        return max(self.min_rate, min(ceiling, recovered))

    @property
    def queued(self) -> int:
        """Callers waiting for a token."""
        return len(self._queue)

    # -- feedback --------------------------------------------------------------------------------

    def throttled(self) -> None:
        """The service throttled a call of this key: cut the rate (at most once per cut_interval)."""
        self.throttles += 1
        now = self._loop.time()
        if now - self._last_cut < self.cut_interval:
            return
        self._rate = max(self.min_rate, self.rate * self.decrease)
        self._rate_at = self._last_cut = now
        self.cuts += 1
        # Tokens already promised at the old pace are taken back: the next comes at the new pace.
        self._next_token = max(self._next_token, now + 1.0 / self._rate)

    # -- tokens ----------------------------------------------------------------------------------

    def submit(self, item: Any) -> None:
        """Queue ``item``; ``deliver(item)`` is called when its token is granted (FIFO)."""
        self._queue.append(item)
        if self._timer is None:
            self._release()

    def acquire(self) -> asyncio.Future[None]:
        """An awaitable that completes when the caller may make one request."""
        future: asyncio.Future[None] = self._loop.create_future()
        self.submit(future)
        return future

    def _grant(self, item: Any) -> bool:
        if isinstance(item, asyncio.Future):
            if item.done():
                return False
            item.set_result(None)
            return True
        return self._deliver(item)

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._queue and self._next_token <= now:
            if self._grant(self._queue.popleft()):
                self.granted += 1
                # No burst: a token that was ready long ago does not let a second call through now.
                self._next_token = max(self._next_token, now) + 1.0 / self.rate
        if self._queue:
            self._timer = self._loop.call_at(self._next_token, self._release)


class RateLimiters:
    """
    The limiters of one event loop, by :class:`LimiterKey`.

    :param loop: The event loop.
    :param deliver: What a limiter calls with a queued item whose token is granted (the poll
        scheduler's admission of a due poll).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Any], bool]) -> None:
        self._loop = loop
        self._deliver = deliver
        self._limiters: dict[LimiterKey, AdaptiveRateLimiter] = {}
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self._watch_lock = threading.Lock()

    def get(self, key: LimiterKey, ceiling: float = DEFAULT_MAX_REQUESTS_PER_SECOND) -> AdaptiveRateLimiter:
        """The limiter of ``key``, created with ``ceiling`` on first use."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AdaptiveRateLimiter(self._loop, self._deliver, ceiling)
        return limiter

    @property
    def limiters(self) -> dict[LimiterKey, AdaptiveRateLimiter]:
        """The limiters made so far, by key (a copy)."""
        return dict(self._limiters)

    def __getitem__(self, key: LimiterKey) -> AdaptiveRateLimiter:
        return self._limiters[key]

    def __contains__(self, key: object) -> bool:
        return key in self._limiters

    def throttled(self, key: LimiterKey) -> None:
        """The service throttled a call of ``key`` (on the loop)."""
        limiter = self._limiters.get(key)
        if limiter is not None:
            limiter.throttled()

    def watch(
        self, client_key: ClientKey, client: Any, is_throttling: Callable[[Mapping[str, Any]], bool]
    ) -> None:
        """
        Report the throttled answers ``client`` receives (every attempt, botocore's retries included)
        to the limiters of ``client_key``; once per client.

        :param client: a botocore or aiobotocore client (its ``response-received`` event).
        :param is_throttling: whether a parsed response is a refusal for rate (the caller's rule:
            :func:`airflow_cleanrooms.wait_semantics.is_throttling`).
        """
        if client in self._watched:
            return
        with self._watch_lock:
            if client in self._watched:
                return
            self._watched.add(client)
        loop = self._loop

        def on_response(event_name: str = "", parsed_response: Any = None, **_: Any) -> None:
            if not isinstance(parsed_response, dict) or not is_throttling(parsed_response):
                return
            key = limiter_key(client_key, event_name.rsplit(".", 1)[-1])
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self.throttled, key)

        events = getattr(getattr(client, "meta", None), "events", None)
        if events is None:
            return  # not a botocore client (a test double): the limiter paces without feedback
        service_id = _service_id(client_key.service_name, client)
        events.register(f"response-received.{service_id}", on_response)


def _service_id(service_name: str, client: Any) -> str:
    try:
        return str(client.meta.service_model.service_id.hyphenize())
    except AttributeError:
        return service_name
