"""
The triggerer's request-rate limiter on a manual clock: pacing, FIFO turns, AIMD, ceilings, keys.

The limiter only reads ``loop.time()`` and schedules with ``loop.call_at()``, so a loop double whose
clock the test moves decides every grant exactly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airflow_cleanrooms.aio.keys import ClientKey, LimiterKey, limiter_key, role_account
from airflow_cleanrooms.aio.rate_limiter import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    AdaptiveRateLimiter,
    RateLimiters,
)
from airflow_cleanrooms.wait_semantics import is_throttling
from tests.unit.unit_support import JOB_ARN, MEMBERSHIP


class ManualLoop:
    """``time()`` and ``call_at()`` on a clock the test moves with :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> Timer:
        timer = Timer(callback, args)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback(*timer.args)
        self.now = end


class Timer:
    def __init__(self, callback: Any, args: tuple[Any, ...]) -> None:
        self.callback, self.args, self.cancelled = callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


def limiter(ceiling: float = 5.0) -> tuple[ManualLoop, AdaptiveRateLimiter, list[tuple[float, Any]]]:
    loop = ManualLoop()
    granted: list[tuple[float, Any]] = []

    def deliver(item: Any) -> bool:
        if item == "gone":
            return False
        granted.append((loop.now, item))
        return True

    return loop, AdaptiveRateLimiter(loop, deliver, ceiling), granted  # type: ignore[arg-type]


def test_tokens_come_one_per_interval_in_arrival_order_and_never_in_a_burst():
    loop, lim, granted = limiter(5.0)
    for i in range(10):
        lim.submit(i)
    assert granted == [(1000.0, 0)]  # the first at once, the others queue
    loop.advance(2.0)
    assert [item for _, item in granted] == list(range(10))  # FIFO
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(granted)]
    assert gaps == pytest.approx([0.2] * 9)
    # Idle for a long time: the next two calls are still a full interval apart (one token, no burst).
    loop.advance(60.0)
    lim.submit("x")
    lim.submit("y")
    loop.advance(1.0)
    assert granted[-2][0] == pytest.approx(1062.0) and granted[-1][0] == pytest.approx(1062.2)


def test_a_caller_that_left_does_not_use_a_token():
    loop, lim, granted = limiter(5.0)
    lim.submit("a")
    lim.submit("gone")
    lim.submit("b")
    loop.advance(1.0)
    assert granted == [(1000.0, "a"), (pytest.approx(1000.2), "b")]
    assert lim.granted == 2


def test_waiting_n_callers_wait_at_most_n_over_rate():
    loop, lim, granted = limiter(5.0)
    n = 50
    for i in range(n):
        lim.submit(i)
    loop.advance(n / 5.0)
    assert len(granted) == n
    assert granted[-1][0] - 1000.0 <= n / 5.0


def test_throttling_halves_the_rate_once_per_interval_then_it_creeps_back_to_the_ceiling():
    loop, lim, _ = limiter(5.0)
    for _ in range(3):  # the answers to calls made at the old rate arrive together: one cut
        lim.throttled()
    assert lim.rate == pytest.approx(2.5) and lim.cuts == 1 and lim.throttles == 3
    loop.advance(lim.cut_interval)
    lim.throttled()
    rate = lim.rate
    assert lim.cuts == 2 and rate < 2.5 * 0.5 + 5.0 * lim.cut_interval / lim.recovery_seconds + 1e-9
    loop.advance(lim.recovery_seconds / 2)
    assert rate < lim.rate < 5.0  # creeping back, linearly
    loop.advance(lim.recovery_seconds)
    assert lim.rate == 5.0  # and never above the ceiling


def test_after_a_cut_the_queued_callers_are_paced_at_the_new_rate():
    loop, lim, granted = limiter(4.0)
    for i in range(6):
        lim.submit(i)
    lim.throttled()  # 4 -> 2 per second
    loop.advance(1.0)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(granted)]
    assert gaps and min(gaps) >= 1 / 2.5  # slower than the old 0.25 s, creeping back from 0.5 s


def test_the_cut_has_a_floor():
    loop, lim, _ = limiter(5.0)
    for _ in range(50):
        lim.throttled()
        loop.advance(lim.cut_interval)
        lim._rate_at = loop.now  # no recovery in between
    assert lim.rate == lim.min_rate


def test_the_ceiling_is_the_smallest_rate_asked_for_by_the_waits_using_it():
    loop, lim, _ = limiter(5.0)
    lim.register(5.0)
    lim.register(2.0)
    assert lim.ceiling == 2.0 and lim.rate == 2.0
    lim.unregister(2.0)
    assert lim.ceiling == 5.0
    loop.advance(lim.recovery_seconds)
    assert lim.rate == 5.0


def test_acquire_for_callers_outside_the_scheduler():
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        lim = AdaptiveRateLimiter(loop, lambda item: True, 50.0)
        times = []
        for _ in range(3):
            await lim.acquire()
            times.append(loop.time())
        return times

    times = asyncio.run(main())
    assert times[1] - times[0] >= 1 / 50 - 1e-3 and times[2] - times[1] >= 1 / 50 - 1e-3


def _client_key(identity: str, account: str | None = None, region: str = "us-east-1") -> ClientKey:
    return ClientKey(
        transport="thread",
        hook_class="h",
        service_name="cleanroomsml",
        aws_conn_id=f"conn-{identity}",
        region_name=region,
        verify="None",
        botocore_config="{}",
        endpoint_url="http://emulator",
        identity=identity,
        account=account,
    )


def test_limiter_keys_are_the_account_when_a_role_names_it_else_the_credentials():
    assert role_account("arn:aws:iam::210987654321:role/airflow") == "210987654321"
    assert role_account("not-an-arn") is None and role_account(None) is None
    op = "GetTrainedModelInferenceJob"
    # Two connections assuming roles of one account share a limiter; other accounts, Regions and
    # operations do not; without a role ARN, the credential hash keys it.
    assert limiter_key(_client_key("a", "111122223333"), op) == limiter_key(
        _client_key("b", "111122223333"), op
    )
    assert limiter_key(_client_key("a", "111122223333"), op) != limiter_key(
        _client_key("a", "444455556666"), op
    )
    assert limiter_key(_client_key("a", "111122223333"), op) != limiter_key(
        _client_key("a", "111122223333", region="eu-west-1"), op
    )
    assert limiter_key(_client_key("a"), op) != limiter_key(_client_key("a"), "GetTrainedModel")
    assert limiter_key(_client_key("a"), op) != limiter_key(_client_key("b"), op)
    assert limiter_key(_client_key("a"), op).account == "identity:a"


def test_throttled_answers_of_a_pooled_client_cut_its_keys_limiter(monkeypatch):
    """The client's response-received event (every attempt) reaches the limiter of its key."""
    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    async def main() -> tuple[float, float, int]:
        loop = asyncio.get_running_loop()
        limiters = RateLimiters(loop, lambda item: True)
        key = _client_key("a")
        client = boto3.client(
            "cleanroomsml",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="k",
            aws_secret_access_key="s",
            config=Config(retries={"mode": "standard", "max_attempts": 2}),
        )
        op = "GetTrainedModelInferenceJob"
        lim = limiters.get(limiter_key(key, op), DEFAULT_MAX_REQUESTS_PER_SECOND)
        other = limiters.get(limiter_key(key, "GetTrainedModel"))
        limiters.watch(key, client, is_throttling)
        limiters.watch(key, client, is_throttling)  # once per client

        def answer_429(request: Any, **_: Any) -> AWSResponse:  # every attempt, without a network
            raw = type("Raw", (), {"stream": lambda self, **kw: iter([b'{"message": "Rate exceeded"}'])})()
            return AWSResponse(request.url, 429, {"x-amzn-ErrorType": "ThrottlingException"}, raw)

        client.meta.events.register("before-send.cleanroomsml", answer_429)
        request = {"membershipIdentifier": MEMBERSHIP, "trainedModelInferenceJobArn": JOB_ARN}
        with pytest.raises(ClientError, match="ThrottlingException"):  # not modeled in botocore 1.37
            await loop.run_in_executor(None, lambda: client.get_trained_model_inference_job(**request))
        await asyncio.sleep(0)  # the report is scheduled on the loop from the calling thread
        return lim.rate, other.rate, lim.throttles

    rate, other_rate, throttles = asyncio.run(main())
    # botocore's own retries were throttled too: each attempt is reported, one cut.
    assert throttles >= 2 and rate == pytest.approx(DEFAULT_MAX_REQUESTS_PER_SECOND / 2, rel=0.05)
    assert other_rate == DEFAULT_MAX_REQUESTS_PER_SECOND


def test_limiter_key_is_hashable_and_frozen():
    key = LimiterKey("cleanroomsml", None, "us-east-1", "identity:x", "Op")
    assert {key: 1}[key] == 1


def test_operators_and_sensors_pass_the_rate_to_their_triggers_which_serialize_it():
    from airflow_cleanrooms.hooks.cleanrooms_ml import JobRef
    from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
    from airflow_cleanrooms.sensors.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobSensor
    from airflow_cleanrooms.triggers.cleanrooms_ml import (
        CleanRoomsMLTrainedModelInferenceJobCompleteTrigger as Trigger,
    )
    from tests.unit.unit_support import INFERENCE_ARGS

    sensor = CleanRoomsMLTrainedModelInferenceJobSensor(
        task_id="s",
        membership_identifier=MEMBERSHIP,
        trained_model_inference_job_arn=JOB_ARN,
        max_requests_per_second=2,
    )
    operator = CleanRoomsMLStartTrainedModelInferenceJobOperator(
        task_id="o", max_requests_per_second=None, **INFERENCE_ARGS
    )
    operator.request = {"membershipIdentifier": MEMBERSHIP}
    for trigger, expected in ((sensor.trigger(), 2), (operator.trigger_for(JobRef(JOB_ARN)), None)):
        _, kwargs = trigger.serialize()
        assert kwargs["max_requests_per_second"] == expected
        assert Trigger(**kwargs).max_requests_per_second == expected
    default = CleanRoomsMLTrainedModelInferenceJobSensor(
        task_id="d", membership_identifier=MEMBERSHIP, trained_model_inference_job_arn=JOB_ARN
    )
    assert default.trigger().serialize()[1]["max_requests_per_second"] == DEFAULT_MAX_REQUESTS_PER_SECOND
