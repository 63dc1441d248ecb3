"""
The triggerer's waits on one account share its request rate (the emulator's limit: 5 requests per
second per operation and account, AWS's default), against real HTTP and the pooled clients.

Thirty waits polling every second would offer 30 requests/second: with the shared limiter none of
them is throttled (and a trigger that tolerated no transient error at all still succeeds, so a wait
slowed by the limiter never counts as an error); without it the same waits are throttled (the proof
can fail). When the service's limit is lower than the waits were told, the limiter halves its rate
on the throttles the pooled client receives and every wait still succeeds. Two triggerers (two event
loops, each with its own limiters) sharing the waits stay under the rate from the first poll when
``[cleanrooms_ml] triggerers`` says there are two, and are throttled when it does not.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_cleanrooms.aio.client_pool import close_shared_clients
from airflow_cleanrooms.aio.poll_scheduler import PollScheduler
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobCompleteTrigger

pytestmark = [pytest.mark.integration]

WAITS = 30
GET = "GetTrainedModelInferenceJob"


class StrictTrigger(CleanRoomsMLTrainedModelInferenceJobCompleteTrigger):
    """Gives up at the first transient error (throttling never ends a wait: the emulator counts those)."""

    max_transient_errors = 0
    max_first_poll_spread = 0.5


@pytest.fixture
def jobs(cleanrooms_emulator: Any) -> tuple[str, list[str]]:
    """Thirty running jobs of one membership (created with the limits off), then AWS's request rate."""
    control = cleanrooms_emulator.control
    control.set_limits(inference_jobs_per_membership=None, inference_jobs_per_account=None, request_rate=None)
    control.set_timings(pending_seconds=1, running_seconds=5)
    membership = str(uuid.uuid4())
    seed = control.seed_membership(membership, trained_model=True)
    client = cleanrooms_emulator.client()
    arns = [
        client.start_trained_model_inference_job(
            membershipIdentifier=membership,
            name=f"rate-{i}",
            trainedModelArn=seed["trained_model_arn"],
            resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            outputConfiguration={"members": [{"accountId": "111122223333"}]},
            dataSource={"mlInputChannelArn": seed["ml_input_channel_arn"]},
        )["trainedModelInferenceJobArn"]
        for i in range(WAITS)
    ]
    control.set_limits(request_rate=5)
    control.clear_stats()
    return membership, arns


def _run(triggers: list[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Run every trigger to its event on one loop; also the loop's rate limiters at the end."""

    async def main() -> tuple[list[dict[str, Any]], list[Any]]:
        async def first(trigger: Any) -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("no event")

        try:
            events = await asyncio.gather(*(first(t) for t in triggers))
            limiters = list(PollScheduler.for_running_loop().rate_limiters.limiters.values())
            return list(events), limiters
        finally:
            await close_shared_clients()

    return asyncio.run(main())


def _triggers(cls: type, emulator: Any, membership: str, arns: list[str], **kwargs: Any) -> list[Any]:
    return [
        cls(
            membership_identifier=membership,
            trained_model_inference_job_arn=arn,
            waiter_delay=1,
            waiter_max_attempts=600,
            aws_conn_id=emulator.conn_id,
            **kwargs,
        )
        for arn in arns
    ]


@pytest.mark.timeout(300)
def test_waits_sharing_an_account_stay_under_its_rate_and_none_is_throttled(cleanrooms_emulator, jobs):
    membership, arns = jobs
    events, limiters = _run(_triggers(StrictTrigger, cleanrooms_emulator, membership, arns))
    assert [e["status"] for e in events] == ["success"] * WAITS, [
        e for e in events if e["status"] != "success"
    ]
    assert cleanrooms_emulator.control.throttled_count(GET) == 0
    (limiter,) = limiters  # one account, Region and operation: one limiter
    assert limiter.granted == len(cleanrooms_emulator.control.requests(GET)) and limiter.cuts == 0


@pytest.mark.timeout(300)
def test_without_the_limiter_the_same_waits_are_throttled(cleanrooms_emulator, jobs):
    membership, arns = jobs
    triggers = _triggers(
        CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
        cleanrooms_emulator,
        membership,
        arns,
        max_requests_per_second=None,
    )
    _run(triggers)
    assert cleanrooms_emulator.control.throttled_count(GET) > 0


@pytest.mark.timeout(300)
def test_the_limiter_slows_down_when_the_service_allows_less_than_configured(cleanrooms_emulator, jobs):
    membership, arns = jobs
    cleanrooms_emulator.control.set_limits(request_rate=2, request_burst=2)
    events, (limiter,) = _run(
        _triggers(CleanRoomsMLTrainedModelInferenceJobCompleteTrigger, cleanrooms_emulator, membership, arns)
    )
    assert [e["status"] for e in events] == ["success"] * WAITS
    throttled = cleanrooms_emulator.control.throttled_count(GET)
    # Every throttled answer (botocore's retries included) reached the limiter, which cut its rate.
    assert throttled > 0 and limiter.throttles == throttled and limiter.cuts >= 1


def _run_on_two_triggerers(triggers: list[Any]) -> list[dict[str, Any]]:
    """Half the triggers on each of two event loops in two threads: two triggerers, two sets of limiters."""
    halves = [triggers[0::2], triggers[1::2]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run, halves))
    return [event for events, _ in results for event in events]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("configured", [2, 1], ids=["told-2", "told-1"])
def test_two_triggerers_share_the_rate_when_told_how_many_they_are(
    cleanrooms_emulator, jobs, monkeypatch, configured
):
    membership, arns = jobs
    monkeypatch.setenv("AIRFLOW__CLEANROOMS_ML__TRIGGERERS", str(configured))
    events = _run_on_two_triggerers(_triggers(StrictTrigger, cleanrooms_emulator, membership, arns))
    assert [e["status"] for e in events] == ["success"] * WAITS
    throttled = cleanrooms_emulator.control.throttled_count(GET)
    if configured == 2:
        assert throttled == 0  # 2 x 2.5 requests/s: never above the emulator's 5
    else:
        assert throttled > 0  # 2 x 5 requests/s until the AIMD cuts react
