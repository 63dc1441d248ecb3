"""
Base waiter trigger shared by every Clean Rooms ML trigger.

It keeps ``AwsBaseWaiterTrigger``'s constructor, ``serialize()`` and hook construction, and replaces
only :meth:`CleanRoomsMLBaseWaiterTrigger.run`: client creation and the polling loop.

Why replace it: the amazon provider's ``run()`` opens a fresh aiobotocore client per trigger
(``async with await hook.get_async_conn()``) and the client's construction blocks the triggerer's
event loop; with hundreds of waits that stalls the loop for seconds and costs hundreds of KiB per
wait (BENCHMARKS.md has the figures, ours and the provider's path side by side). Here, a trigger
leases one client per connection identity from the running loop's
:class:`~airflow_cleanrooms.aio.client_pool.SharedClientPool` (built off the loop, shared,
reference-counted, closed when idle; by default a boto3 client whose calls run on a small thread
pool), and its polls run on the loop's :class:`~airflow_cleanrooms.aio.poll_scheduler.PollScheduler`
(one timer for every wait, a bounded number of calls at once, jittered intervals). Between polls a
wait keeps one small record and what its events need (status, status details, a description),
never a response: with a thousand waits, whatever a wait keeps across its interval is promoted into
the garbage collector's old generation, and enough of that triggers a full collection, a pause over
the whole process.

Waiter semantics are botocore's and shared with the sync waits: :mod:`airflow_cleanrooms.wait_semantics`
loads the waiter model (the hook's custom waiter JSON, or the service's official waiters) and matches
each response against its acceptors in order, as ``botocore.waiter.Waiter.wait`` does.
"""

from __future__ import annotations

import asyncio
import json
import random
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.triggers.base import TriggerEvent
from botocore import xform_name

from airflow_cleanrooms.aio.client_pool import SharedClientPool, run_sync
from airflow_cleanrooms.aio.poll_scheduler import Finished, PollScheduler
from airflow_cleanrooms.aio.rate_limiter import DEFAULT_MAX_REQUESTS_PER_SECOND
from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS, conf, trigger_hook_parameters
from airflow_cleanrooms.wait_semantics import (
    Acceptor,
    cached_waiter_config,
    count_poll,
    is_throttling,
    judge_poll,
    load_waiter_config,
    search,
    wait_event,
    waiter_acceptors,
    waiter_config_key,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

    from botocore.waiter import SingleWaiterConfig

    from airflow_cleanrooms.aio.keys import ClientKey

# One generator for every trigger: a per-trigger random.Random() would read os.urandom on the loop.
_RNG = random.Random()

#: (status, status details, description) of the last answered poll.
_Observation = tuple["str | None", "dict[str, Any] | None", str]
_NOTHING_SEEN: _Observation = (None, None, "")


def triggerer_count() -> int:
    """
    How many triggerers poll the same AWS accounts: Airflow's ``[cleanrooms_ml] triggerers``
    (``AIRFLOW__CLEANROOMS_ML__TRIGGERERS``; default 1).

    Each triggerer paces its waits on its own limiters, so N triggerers would offer N times the
    rate; each takes ``1/N`` of it instead. A triggerer cannot count the live ones (Airflow 3 gives
    triggers no access to the metadata database), so this is the number the deployment runs: on
    Amazon MWAA, the number of schedulers (each runs a triggerer); with the Helm chart,
    ``triggerer.replicas``. With fewer triggerers alive the waits poll less often than they could
    (never above the rate); throttling still halves a limiter's rate (AIMD) when the count is too
    low or other clients share the quota.
    """
    count = conf.getint("cleanrooms_ml", "triggerers", fallback=1)
    if count < 1:
        raise ValueError(f"[cleanrooms_ml] triggerers must be 1 or more, not {count}")
    return count


#: A task instance's state while its trigger waits (``TaskInstanceState.DEFERRED``).
TASK_DEFERRED = "deferred"


async def deferred_task_state(trigger: AwsBaseWaiterTrigger) -> str | None:
    """
    The state of the task instance that deferred to ``trigger``, read now (``None``: the task
    instance has no state).

    Read by way of asgiref (:func:`~airflow_cleanrooms.aio.client_pool.run_sync`), as the amazon
    provider's EMR Serverless trigger does: on Airflow 3 from the API server (the Task SDK's
    ``RuntimeTaskInstance.get_task_states``; mapped task instances are keyed
    ``<task_id>_<map_index>``), on Airflow 2.11 from the metadata database. A trigger that runs
    without a task instance (outside a triggerer) has nobody else waiting on it, and reads as killed
    (``"unknown"``). Raises when the state cannot be read.
    """
    ti = getattr(trigger, "task_instance", None)
    if ti is None:
        return "unknown"
    map_index = getattr(ti, "map_index", -1)
    map_index = -1 if map_index is None else map_index
    read = _task_state_from_api if AIRFLOW_V_3_0_PLUS else _task_state_from_database
    state = await run_sync(partial(read, ti.dag_id, ti.run_id, ti.task_id, map_index))
    return None if state is None else str(getattr(state, "value", state))


def _task_state_from_api(dag_id: str, run_id: str, task_id: str, map_index: int) -> Any:
    """Airflow 3: one task instance's state, through the Task SDK's supervisor channel (blocking)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(
        dag_id=dag_id, map_index=map_index, task_ids=[task_id], run_ids=[run_id]
    )
    key = _task_key(task_id, map_index)
    by_task = (states or {}).get(run_id) or {}
    if key not in by_task:
        raise LookupError(f"task instance {dag_id}/{run_id}/{key} not found")
    return by_task[key]


def _task_state_from_database(dag_id: str, run_id: str, task_id: str, map_index: int) -> Any:
    """Airflow 2.11: one task instance's state, from the metadata database (blocking)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        ).one_or_none()
    if row is None:
        raise LookupError(f"task instance {dag_id}/{run_id}/{_task_key(task_id, map_index)} not found")
    return row[0]


def _task_key(task_id: str, map_index: int) -> str:
    """A task instance's key among its run's: the Task SDK's ``<task_id>_<map_index>`` when mapped."""
    return task_id if map_index < 0 else f"{task_id}_{map_index}"


class _WaitState:
    """One wait's progress between polls (created once per wait); calling it judges one outcome."""

    __slots__ = ("acceptors", "attempts", "last_seen", "streak", "trigger")

    def __init__(self, trigger: CleanRoomsMLBaseWaiterTrigger, acceptors: tuple[Acceptor, ...]) -> None:
        self.trigger = trigger
        self.acceptors = acceptors
        self.attempts = 0  # answered polls
        self.streak = 0  # consecutive transient failures
        self.last_seen: _Observation = _NOTHING_SEEN

    def __call__(self, outcome: Any) -> float | Finished[TriggerEvent]:
        # The scheduler's step: a callable object rather than a bound method or partial per wait.
        return self.trigger._step(self, outcome)


class CleanRoomsMLBaseWaiterTrigger(AwsBaseWaiterTrigger):
    """
    Base class of the provider's waiter triggers; same constructor as ``AwsBaseWaiterTrigger``.

    Subclasses set ``aws_hook_class`` (a hook with a ``client_type``) and pass the usual
    ``AwsBaseWaiterTrigger`` arguments. The events are::

        {"status": "success", <return_key>: <return_value>}
        {"status": "error", "message": str, <return_key>: <return_value>,
         "job_status": <last status or None>, "status_details": <statusDetails dict or None>}

    Polling: the first poll comes after a random delay in ``[0, min(max_first_poll_spread,
    waiter_delay)]`` seconds, the next ones every ``waiter_delay * (1 - jitter)`` to ``waiter_delay``
    seconds (random per poll). Waits deferred together (a DAG fanning out hundreds of jobs) thus
    spread their polls over the whole interval instead of hitting the API and the triggerer's loop
    in one burst, while no interval, the first included, exceeds ``waiter_delay``: a job is seen
    ``ACTIVE`` at most ``waiter_delay`` (plus the request's latency) after it turns ``ACTIVE``.

    ``waiter_max_attempts`` counts answered polls; when it is exhausted the trigger emits an error
    event saying it timed out (as the intervals are at most ``waiter_delay``, that is after at most,
    and at least ``1 - jitter`` times, ``waiter_delay * waiter_max_attempts`` seconds). Transient
    failures (throttling, 5xx, connection errors, timeouts; botocore's "standard" retry mode already
    retries each call) do not use an attempt; more than ``max_transient_errors`` of them in a row,
    throttling aside, end the wait with an error event. Throttling never ends a wait.

    Request rate: the polls of every wait of the triggerer that reach one account, Region and
    operation take turns on one :class:`~airflow_cleanrooms.aio.rate_limiter.AdaptiveRateLimiter`
    capped at ``max_requests_per_second`` (default: AWS's published 5; ``None`` or 0: no limiter),
    which halves its rate when the service throttles and creeps back up. A poll waiting for its turn
    is neither an attempt nor an error; a wait's detection latency is then at most (waits sharing the
    limiter) / (rate) plus one ``waiter_delay``.
    """

    #: JMESPath of the resource's status in the poll response (default: the first status query).
    status_query: str | None = None
    #: JMESPath of the resource's status details in the poll response (``None``: not reported).
    status_details_query: str | None = "statusDetails"
    #: Fraction of ``waiter_delay`` by which a poll interval may be shortened at random.
    jitter: float = 0.2
    #: Upper bound (seconds) of the random delay before the first poll (never above waiter_delay).
    max_first_poll_spread: float = 300.0
    #: Consecutive transient errors tolerated before the trigger gives up.
    max_transient_errors: int = 5
    #: How API calls are made: ``"thread"`` (a shared boto3 client, calls on the pool's threads) or
    #: ``"aio"`` (a shared aiobotocore client on the loop); see :mod:`airflow_cleanrooms.aio.client_pool`.
    client_transport: str = "thread"
    #: Requests per second the waits sharing an account, Region and operation offer at most
    #: (``None`` or 0: unlimited); subclasses take it as an argument and serialize it.
    max_requests_per_second: float | None = DEFAULT_MAX_REQUESTS_PER_SECOND

    @property
    def triggerer_request_rate(self) -> float | None:
        """
        This triggerer's share of ``max_requests_per_second``: divided by ``[cleanrooms_ml]
        triggerers``, the number of triggerers that poll the same accounts (see
        :func:`triggerer_count`), so that together they stay under the rate from their first poll.
        """
        rate = self.max_requests_per_second
        return rate / triggerer_count() if rate else rate

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # AwsBaseWaiterTrigger's import-time check (aws_hook_class or hook() override) is skipped for
        # this base because it overrides hook(); apply the same check to our concrete subclasses.
        super().__init_subclass__(**kwargs)
        if cls.hook is not CleanRoomsMLBaseWaiterTrigger.hook:
            return
        hook_class = getattr(cls, "aws_hook_class", None)
        if not (isinstance(hook_class, type) and issubclass(hook_class, AwsGenericHook)):
            raise AttributeError(
                f"Class attribute '{cls.__name__}.aws_hook_class' should be set to an AwsGenericHook "
                f"subclass, or {cls.__name__}.hook() overridden."
            )

    def hook(self) -> AwsGenericHook:
        """Build the hook this trigger waits with (``aws_hook_class`` with the serialized AWS args)."""
        hook_class = getattr(self, "aws_hook_class", None)
        if hook_class is None:
            raise AttributeError(f"Class attribute '{type(self).__name__}.aws_hook_class' should be set.")
        return hook_class(**trigger_hook_parameters(self))

    # -- polling schedule ------------------------------------------------------------------------

    def first_poll_delay(self, rng: random.Random) -> float:
        """Random delay before the first poll, at most ``min(max_first_poll_spread, waiter_delay)``."""
        return rng.uniform(0.0, min(self.max_first_poll_spread, float(max(self.waiter_delay, 0))))

    def poll_interval(self, rng: random.Random) -> float:
        """Random interval between polls, within ``[(1 - jitter) * waiter_delay, waiter_delay]``."""
        delay = float(max(self.waiter_delay, 0))
        return rng.uniform((1.0 - self.jitter) * delay, delay)

    def _sleep(self, seconds: float) -> Awaitable[None]:
        # On the loop's poll scheduler's timer, not asyncio.sleep: see airflow_cleanrooms.aio.poll_scheduler.
        return PollScheduler.for_running_loop().sleep(seconds)

    # -- events ----------------------------------------------------------------------------------

    def _observe(self, response: dict[str, Any] | None) -> _Observation:
        """What the events and logs need of a response: status, status details and a description."""
        if not response or "Error" in response:
            return _NOTHING_SEEN
        query = self.status_query or (self.status_queries[0] if self.status_queries else None)
        status = search(query, response) if query else None
        details = search(self.status_details_query, response) if self.status_details_query else None
        return (
            str(status) if status is not None else None,
            details if isinstance(details, dict) else None,
            self._describe(response),
        )

    def _describe(self, response: dict[str, Any] | None) -> str:
        values = []
        for query in self.status_queries or []:
            value = search(query, response or {})
            if value is not None and value != "":
                values.append(
                    json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
                )
        return " - ".join(values)

    def _final_fields(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """What an event that ends on ``response`` adds for the final state block (``None``: nothing)."""
        return None

    def _error_event(
        self, message: str, seen: _Observation = (None, None, ""), final: dict[str, Any] | None = None
    ) -> TriggerEvent:
        status, details, _ = seen
        return TriggerEvent(
            wait_event(
                self.return_key,
                self.return_value,
                message=message,
                status=status,
                status_details=details,
                final=final,
            )
        )

    def _success_event(
        self, seen: _Observation = _NOTHING_SEEN, final: dict[str, Any] | None = None
    ) -> TriggerEvent:
        return TriggerEvent(wait_event(self.return_key, self.return_value, status=seen[0], final=final))

    # -- run -------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The first-poll spread comes before anything else, so that triggers created together (the
        # triggerer picks up a whole batch at once) reach the pool spread out, not as one herd that
        # wakes up in a single loop iteration when the shared client is ready.
        await self._sleep(self.first_poll_delay(_RNG))
        try:
            pool = SharedClientPool.for_running_loop()
            entry, waiter = await self._lease(pool)
            try:
                self._client_key: ClientKey | None = entry.key
                self._client_id: int | None = id(entry.client)
                event = await self._wait(entry.client, waiter, entry.key)
            finally:
                pool.release(entry)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as error:
            self.log.exception("%s: the wait could not run", self.failure_message)
            event = self._error_event(f"{self.failure_message}: {type(error).__name__}: {error}")
        # The lease is released before the event is handed to the triggerer.
        yield event

    async def _lease(self, pool: SharedClientPool) -> tuple[Any, SingleWaiterConfig]:
        """
        Lease the shared client and load the waiter; the hook lives only for this call.

        Nothing built here is kept for the wait but the lease (shared by every wait on the same
        connection): the hook and its connection lookup, kept for hours by a thousand waits, would
        be promoted into the collector's old generation (see ``airflow_cleanrooms.aio.poll_scheduler``).
        """
        hook = self.hook()
        entry = await pool.acquire(hook, self.client_transport)
        try:
            cache_key = waiter_config_key(hook, self.waiter_name, self.waiter_config_overrides)
            waiter = cached_waiter_config(cache_key) or await pool.run_blocking(
                ("waiter", *cache_key),
                load_waiter_config,
                hook,
                self.waiter_name,
                self.waiter_config_overrides,
            )
        except BaseException:
            pool.release(entry)
            raise
        return entry, waiter

    async def _wait(
        self, client: Any, waiter: SingleWaiterConfig, client_key: ClientKey | None = None
    ) -> TriggerEvent:
        """
        Poll on the loop's :class:`~airflow_cleanrooms.aio.poll_scheduler.PollScheduler` until an event,
        taking turns on the rate limiter of the client's account, Region and operation.
        """
        scheduler = PollScheduler.for_running_loop()
        rate = self.triggerer_request_rate
        with scheduler.limited(client_key, client, waiter.operation, rate, is_throttling) as limiter:
            event: TriggerEvent = await scheduler.poll(
                getattr(client, xform_name(waiter.operation)),
                self.waiter_args,
                _WaitState(self, waiter_acceptors(waiter)),
                limiter=limiter,
            )
        return event

    def _step(self, state: _WaitState, outcome: Any) -> float | Finished[TriggerEvent]:
        """
        Judge one poll's outcome: the event that ends the wait, or the delay before the next poll.

        The outcome is judged by :func:`~airflow_cleanrooms.wait_semantics.judge_poll` and counted by
        :func:`~airflow_cleanrooms.wait_semantics.count_poll`, as the sync waits do. Runs in the
        context of the trigger's task (the scheduler keeps it), so its log lines reach this trigger's
        log. Only what a later event or log line needs is kept between polls, never a whole response
        (see :mod:`airflow_cleanrooms.aio.poll_scheduler`).
        """
        verdict = judge_poll(state.acceptors, outcome)  # raises an error it cannot judge
        response = outcome if verdict.answered and isinstance(outcome, dict) else None
        last_seen = state.last_seen
        seen = self._observe(response) if response is not None else last_seen
        if verdict.state == "retry" and last_seen[0] is not None and seen[0] != last_seen[0]:
            # Status changes only (the final status is in the event the triggerer logs): a log write
            # is a blocking call on the loop, so not one per poll.
            self.log.info("%s: %s", self.status_message, seen[2])
        if seen != last_seen:
            state.last_seen = seen  # an equal observation keeps the older object: nothing new to keep
        if verdict.state == "success":
            return Finished(self._success_event(seen, self._final_fields(response or {})))
        if verdict.state == "failure":
            message = f"{self.failure_message}: {seen[2] or verdict.explanation}"
            return Finished(self._error_event(message, seen, self._final_fields(response or {})))
        if verdict.state == "error":
            return Finished(self._error_event(f"{self.failure_message}: {verdict.explanation}", seen))
        state.attempts, state.streak, ends = count_poll(
            verdict,
            state.attempts,
            state.streak,
            max_attempts=self.attempts,
            max_transient=self.max_transient_errors,
        )
        if ends == "attempts":
            message = (
                f"{self.failure_message}: timed out after {state.attempts} attempts "
                f"({self.waiter_delay} s apart) waiting for {self.waiter_name}; "
                f"last status: {seen[2] or 'unknown'}"
            )
            return Finished(self._error_event(message, seen))
        if ends == "transient":
            message = (
                f"{self.failure_message}: gave up after {state.streak} consecutive transient errors "
                f"(last: {verdict.explanation})"
            )
            return Finished(self._error_event(message, seen))
        if verdict.throttled:
            self.log.info("Throttled while waiting (not counted as an error): %s", verdict.explanation)
        elif verdict.state == "transient":
            self.log.warning(
                "Transient error while waiting (%d/%d): %s",
                state.streak,
                self.max_transient_errors,
                verdict.explanation,
            )
        return self.poll_interval(_RNG)
