"""
Transient faults: what botocore's retry modes absorb, and what the waits' error budget adds on top.

The emulator's fault switches are deterministic (``*_next`` faults exactly the next N calls), so each
test states a burst size and the layer that must absorb it:

* a single API call is retried by botocore: ``legacy`` mode (the default when nothing is
  configured) makes 5 attempts, ``standard`` mode 3 unless ``max_attempts`` says otherwise; a
  connection's or operator's ``botocore_config`` chooses. (The durable operators' *start* call is the
  exception: botocore's retry could start a second job after a lost answer, so it is made one
  attempt at a time with a lookup by identity tag in between; see ``test_durable.py``.)
* a wait (the hook's ``wait_for``, the trigger's loop) also tolerates a bounded streak of failed
  polls, so it outlasts bursts far longer than one call's retries;
* slow responses are fine while they stay under the read timeout; past it the call fails after its
  retries, which is the budget a wait then spends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from airflow_cleanrooms.hooks.cleanrooms_ml import SYNC_RETRIES, CleanRoomsMLHook
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobCompleteTrigger
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL_INFERENCE_JOB

MEMBERSHIP = "7b2d4f6a-8c0e-4a1b-9d3f-5e7a9c1b3d5f"
GET = "GetTrainedModelInferenceJob"
START = "StartTrainedModelInferenceJob"

pytestmark = pytest.mark.integration


def _hook(emulator: Any, config: Config | None = None) -> CleanRoomsMLHook:
    return CleanRoomsMLHook(aws_conn_id=emulator.conn_id, config=config)


def _start(hook: CleanRoomsMLHook, seeded: dict[str, str], name: str) -> str:
    return hook.start(
        TRAINED_MODEL_INFERENCE_JOB,
        {
            "membershipIdentifier": MEMBERSHIP,
            "name": name,
            "trainedModelArn": seeded["trained_model_arn"],
            "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            "outputConfiguration": {"members": [{"accountId": "111122223333"}]},
            "dataSource": {"mlInputChannelArn": seeded["ml_input_channel_arn"]},
        },
    ).arn


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Shorten botocore's backoff sleeps (up to 20 s each); which attempts are retried stays botocore's.

    Legacy mode sleeps ``random.random() * 2 ** (attempt - 1)``; standard and adaptive modes ask
    ``ExponentialBackoff.delay_amount``.
    """
    import botocore.retries.standard
    import botocore.retryhandler

    monkeypatch.setattr(botocore.retryhandler.random, "random", lambda: 0.01)
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0.02)


@pytest.fixture
def seeded(cleanrooms_emulator: Any) -> dict[str, str]:
    cleanrooms_emulator.control.set_timings(pending_seconds=0.1, running_seconds=0.5)
    return cleanrooms_emulator.control.seed_membership(MEMBERSHIP, trained_model=True)


def _attempts(emulator: Any, operation: str) -> list[dict[str, Any]]:
    return emulator.control.requests(operation)


@pytest.mark.parametrize("fault", ["throttle_next", "error_next", "drop_next"])
def test_default_config_retries_a_start_call_through_a_burst_of_four(
    cleanrooms_emulator: Any, seeded: dict, fault: str
) -> None:
    cleanrooms_emulator.control.set_faults(operations=[START], **{fault: 4})
    arn = _start(_hook(cleanrooms_emulator), seeded, f"burst-{fault}")
    attempts = _attempts(cleanrooms_emulator, START)
    assert arn and len(attempts) == 5
    assert [a["fault"] for a in attempts[:4]] == [fault.split("_")[0]] * 4
    # One job, though the call was sent five times: a faulted attempt never reached the backend.
    jobs = cleanrooms_emulator.client().list_trained_model_inference_jobs(membershipIdentifier=MEMBERSHIP)
    assert len(jobs["trainedModelInferenceJobs"]) == 1


@pytest.mark.emulator_limits(
    request_rate="off", reason="counts the attempts injected faults cause; retried back to back, over 5/s"
)
def test_default_config_gives_up_on_a_burst_as_long_as_its_attempts(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    attempts = SYNC_RETRIES["total_max_attempts"]
    cleanrooms_emulator.control.set_faults(operations=[START], drop_next=attempts)
    with pytest.raises(ConnectionClosedError):
        _start(_hook(cleanrooms_emulator), seeded, "long-burst")
    assert len(_attempts(cleanrooms_emulator, START)) == attempts


@pytest.mark.emulator_limits(
    request_rate="off", reason="counts the attempts injected faults cause; retried back to back, over 5/s"
)
def test_standard_mode_with_more_attempts_absorbs_longer_bursts(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    cleanrooms_emulator.control.set_faults(operations=[START], throttle_next=7)
    config = Config(retries={"mode": "standard", "total_max_attempts": 10})
    assert _start(_hook(cleanrooms_emulator, config), seeded, "standard-10")
    assert len(_attempts(cleanrooms_emulator, START)) == 8


def test_adaptive_mode_absorbs_a_throttling_burst(cleanrooms_emulator: Any, seeded: dict) -> None:
    cleanrooms_emulator.control.set_faults(operations=[START], throttle_next=3)
    config = Config(retries={"mode": "adaptive", "total_max_attempts": 5})
    assert _start(_hook(cleanrooms_emulator, config), seeded, "adaptive")
    assert len(_attempts(cleanrooms_emulator, START)) == 4


def test_slow_responses_under_the_read_timeout_are_fine(cleanrooms_emulator: Any, seeded: dict) -> None:
    cleanrooms_emulator.control.set_faults(operations=[START], latency_seconds=0.6)
    config = Config(read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2})
    assert _start(_hook(cleanrooms_emulator, config), seeded, "slow")
    assert len(_attempts(cleanrooms_emulator, START)) == 1


def test_responses_slower_than_the_read_timeout_fail_after_the_retries(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    cleanrooms_emulator.control.set_faults(operations=[GET], latency_seconds=1.5)
    hook = _hook(
        cleanrooms_emulator, Config(read_timeout=0.5, retries={"mode": "standard", "max_attempts": 2})
    )
    arn = _start(hook, seeded, "too-slow")
    with pytest.raises(ReadTimeoutError):
        hook.get_state(TRAINED_MODEL_INFERENCE_JOB, MEMBERSHIP, arn)


def test_a_wait_outlasts_a_burst_longer_than_one_calls_retries(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    """
    12 throttled polls in a row: more than botocore's 5 attempts, within the wait's error budget.

    The job cannot finish on its own (an hour per phase), so the wait cannot run out of attempts
    while the job is still moving: the test waits until the emulator has served the whole burst,
    then moves the emulator's clock past the job's end, and the wait must see ``ACTIVE``.
    """
    control = cleanrooms_emulator.control
    control.set_timings(pending_seconds=3600, running_seconds=3600)
    hook = _hook(cleanrooms_emulator)
    arn = _start(hook, seeded, "wait-through-burst")
    control.set_faults(operations=[GET], throttle_next=12)
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["state"] = hook.wait_for(
                TRAINED_MODEL_INFERENCE_JOB, MEMBERSHIP, arn, waiter_delay=1, waiter_max_attempts=600
            )
        except BaseException as error:  # handed to the test thread
            outcome["error"] = error

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    while waiter.is_alive() and _throttled(cleanrooms_emulator) < 12:
        time.sleep(0.05)  # waits on the emulator's state (the burst served), not on a count of polls
    control.advance_clock(3 * 3600)
    waiter.join(timeout=120)
    assert not waiter.is_alive(), "the wait did not see the job end after the clock moved past it"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["state"].status == "ACTIVE"
    assert _throttled(cleanrooms_emulator) == 12


def _throttled(emulator: Any) -> int:
    return sum(1 for g in _attempts(emulator, GET) if g["fault"] == "throttle")


@pytest.mark.emulator_limits(
    request_rate="off", reason="counts the attempts injected faults cause; retried back to back, over 5/s"
)
def test_a_wait_gives_up_when_the_error_streak_exceeds_its_budget(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    hook = _hook(cleanrooms_emulator, Config(retries={"mode": "standard", "max_attempts": 2}))
    arn = _start(hook, seeded, "endless-errors")
    cleanrooms_emulator.control.set_faults(operations=[GET], error_rate=1.0)
    with pytest.raises(ClientError, match="InternalServiceException"):
        hook.wait_for(
            TRAINED_MODEL_INFERENCE_JOB,
            MEMBERSHIP,
            arn,
            waiter_delay=0,
            waiter_max_attempts=100,
            max_error_streak=2,
        )
    # 3 failed polls (the first plus a streak of 2 tolerated), each sent 3 times by botocore
    # (botocore's max_attempts counts retries: 2 retries, 3 attempts).
    assert len(_attempts(cleanrooms_emulator, GET)) == 9


def test_the_trigger_outlasts_throttling_5xx_and_dropped_connections(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    cleanrooms_emulator.control.set_timings(running_seconds=2.0)
    hook = _hook(cleanrooms_emulator)
    arn = _start(hook, seeded, "trigger-through-faults")
    # The next 5 reads fail (a dropped connection, two 500s, two throttles): more than one read's
    # botocore retries (the trigger's client: standard mode, 3 attempts), within its error budget.
    cleanrooms_emulator.control.set_faults(operations=[GET], drop_next=1, error_next=2, throttle_next=2)
    trigger = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier=MEMBERSHIP,
        trained_model_inference_job_arn=arn,
        waiter_delay=1,
        waiter_max_attempts=200,
        aws_conn_id=cleanrooms_emulator.conn_id,
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event
        return None

    event = asyncio.run(first_event())
    assert event is not None and event.payload["status"] == "success", event
    faulted = [g["fault"] for g in _attempts(cleanrooms_emulator, GET) if g["fault"]]
    assert sorted(faulted) == ["drop", "error", "error", "throttle", "throttle"]
