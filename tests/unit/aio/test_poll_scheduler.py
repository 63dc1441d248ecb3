"""The loop's poll scheduler: one timer, bounded calls, cancellation, context, and what a wait keeps."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import pytest

from airflow_cleanrooms.aio import client_pool
from airflow_cleanrooms.aio.client_pool import close_shared_clients
from airflow_cleanrooms.aio.poll_scheduler import Finished, PollScheduler
from tests.unit.trigger_support import JOB_ARN, MEMBERSHIP, ScaleTestJobTrigger, ScriptedClient, job

WHO = contextvars.ContextVar("who", default="nobody")


def test_sleepers_wake_in_time_order_on_one_timer():
    async def main() -> tuple[list[int], int, int]:
        scheduler = PollScheduler.for_running_loop()
        woke: list[int] = []

        async def sleeper(n: int, seconds: float) -> None:
            await scheduler.sleep(seconds)
            woke.append(n)

        tasks = [asyncio.ensure_future(sleeper(n, 0.05 * (5 - n))) for n in range(5)]
        await asyncio.sleep(0)
        scheduled = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
        timers = sum(1 for handle in scheduled if not handle.cancelled())
        pending = scheduler.scheduled
        await asyncio.gather(*tasks)
        return woke, timers, pending

    woke, timers, pending = asyncio.run(main())
    assert woke == [4, 3, 2, 1, 0]
    assert pending == 5
    assert timers == 1  # five sleepers, one timer handle on the loop


def test_poll_repeats_as_step_says_and_ends_with_its_result():
    calls: list[dict[str, Any]] = []
    outcomes: list[Any] = []

    async def call(**kwargs: Any) -> int:
        calls.append(kwargs)
        if len(calls) == 2:
            raise ValueError("second call fails")
        return len(calls)

    def step(outcome: Any) -> Any:
        outcomes.append(outcome)
        return 0.01 if len(outcomes) < 3 else Finished("done")

    async def main() -> Any:
        return await PollScheduler.for_running_loop().poll(call, {"a": 1}, step)

    assert asyncio.run(main()) == "done"
    assert calls == [{"a": 1}] * 3
    assert outcomes[0] == 1 and isinstance(outcomes[1], ValueError) and outcomes[2] == 3


def test_an_exception_in_step_ends_the_poll_with_it():
    async def call() -> int:
        return 1

    def step(outcome: Any) -> Any:
        raise RuntimeError("cannot judge")

    async def main() -> Any:
        return await PollScheduler.for_running_loop().poll(call, {}, step)

    with pytest.raises(RuntimeError, match="cannot judge"):
        asyncio.run(main())


def test_a_call_that_cannot_start_ends_its_poll_and_not_the_others():
    def not_a_coroutine_function(**kwargs: Any) -> int:
        return 1

    async def call() -> int:
        return 2

    async def main() -> tuple[Any, Any]:
        scheduler = PollScheduler.for_running_loop()
        broken = scheduler.poll(not_a_coroutine_function, {}, Finished, first_delay=0.01)
        fine = scheduler.poll(call, {}, Finished, first_delay=0.01)
        results = await asyncio.gather(broken, fine, return_exceptions=True)
        return results[0], results[1]

    broken, fine = asyncio.run(main())
    assert isinstance(broken, TypeError)
    assert fine == 2


def test_no_more_than_max_in_flight_calls_run_at_once():
    running = 0
    peak = 0

    async def call() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    async def main() -> list[Any]:
        scheduler = PollScheduler.for_running_loop()
        scheduler.max_in_flight = 3
        counts = [0] * 20

        def step_for(n: int) -> Any:
            def step(outcome: Any) -> Any:
                counts[n] += 1
                return 0 if counts[n] < 2 else Finished(n)

            return step

        return list(await asyncio.gather(*(scheduler.poll(call, {}, step_for(n)) for n in range(20))))

    assert asyncio.run(main()) == list(range(20))  # all 20 polls ran twice...
    assert peak == 3  # ...never more than 3 calls at a time


def test_a_cancelled_poll_is_not_called_again_and_its_running_call_is_dropped():
    calls = 0
    steps = 0

    async def main() -> tuple[int, int]:
        started, release = asyncio.Event(), asyncio.Event()

        async def call() -> int:
            nonlocal calls
            calls += 1
            started.set()
            await release.wait()
            return calls

        def step(outcome: Any) -> Any:
            nonlocal steps
            steps += 1
            return 0.0  # would call again at once, were the outcome not dropped

        scheduler = PollScheduler.for_running_loop()
        future = scheduler.poll(call, {}, step)
        await started.wait()  # the first call is running
        future.cancel()
        release.set()
        while scheduler.in_flight:  # the call finishes; its outcome is dropped, not stepped on
            await asyncio.sleep(0)
        return scheduler.in_flight, scheduler.scheduled

    in_flight, scheduled = asyncio.run(main())
    assert (calls, steps) == (1, 0)
    assert (in_flight, scheduled) == (0, 0)


def test_step_and_call_run_in_the_context_of_whoever_started_the_poll():
    seen: list[tuple[str, str]] = []

    async def call(name: str) -> str:
        return WHO.get()

    def step_for(name: str) -> Any:
        def step(outcome: Any) -> Any:
            seen.append((outcome, WHO.get()))
            return Finished(name)

        return step

    async def wait_as(name: str) -> Any:
        WHO.set(name)  # as the triggerer binds each trigger's log context in its own task
        return await PollScheduler.for_running_loop().poll(call, {"name": name}, step_for(name))

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(wait_as(f"trigger-{n}") for n in range(5))))

    assert asyncio.run(main()) == [f"trigger-{n}" for n in range(5)]
    assert sorted(seen) == [(f"trigger-{n}", f"trigger-{n}") for n in range(5)]


class _Marker:
    """A tracked object inside a response: alive only while something keeps the response."""


def test_a_waiting_trigger_keeps_no_response_between_polls(monkeypatch):
    markers: list[weakref.ref[_Marker]] = []

    class MarkingClient(ScriptedClient):
        def get_trained_model_inference_job(self, **kwargs: Any) -> dict[str, Any]:
            response = dict(super().get_trained_model_inference_job(**kwargs))
            marker = _Marker()
            markers.append(weakref.ref(marker))
            response["trainingContainerImageDigest"] = {"nested": [marker]}
            return response

    scripts = {JOB_ARN.format(n=1): [job("CREATE_IN_PROGRESS")] * 3 + [job("ACTIVE")]}
    monkeypatch.setattr(
        client_pool, "create_client_blocking", lambda hook, transport="thread": MarkingClient(hook, scripts)
    )

    class Paced(ScaleTestJobTrigger):
        def poll_interval(self, rng: Any) -> float:
            return 0.05

    trigger = Paced(membership_identifier=MEMBERSHIP, trained_model_inference_job_arn=JOB_ARN.format(n=1))
    alive_between_polls: list[int] = []

    async def main() -> Any:
        task = asyncio.ensure_future(trigger.run().__anext__())
        while not task.done():
            await asyncio.sleep(0.02)
            gc.collect()
            if markers and PollScheduler.for_running_loop().in_flight == 0:  # between polls
                alive_between_polls.append(sum(ref() is not None for ref in markers))
        await close_shared_clients()
        return task.result().payload

    assert asyncio.run(main())["status"] == "success"
    assert len(markers) == 4
    assert alive_between_polls and max(alive_between_polls) == 0
