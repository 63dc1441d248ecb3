"""
Quota-aware starts against the emulator's job quotas (real HTTP, real 402 answers).

The quotas are lowered for these tests (``set_limits``) so that a single job fills one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from airflow_cleanrooms.exceptions import CleanRoomsMLQuotaUnreachableError
from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLJobQuotaSlotTrigger
from tests.integration.test_core_emulator import _TI, _first_event
from tests.unit.unit_support import needs_quota_value

pytestmark = pytest.mark.integration

QUOTA = "Pending/in progress custom model inference jobs per membership"


@pytest.fixture
def seeded(cleanrooms_emulator: Any) -> dict[str, str]:
    return cleanrooms_emulator.control.seed_membership(str(uuid.uuid4()), trained_model=True)


def _operator(emulator: Any, seeded: dict[str, str], name: str, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "task_id": f"start_{name}",
        "aws_conn_id": emulator.conn_id,
        "membership_identifier": seeded["membership_id"],
        "name": name,
        "trained_model_arn": seeded["trained_model_arn"],
        "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "output_configuration": {"members": [{"accountId": "444455556666"}]},
        "data_source": {"mlInputChannelArn": seeded["ml_input_channel_arn"]},
        "wait_for_completion": False,
        "quota_poll_interval": 0.5,
    }
    arguments.update(overrides)
    return CleanRoomsMLStartTrainedModelInferenceJobOperator(**arguments)


def _statuses(emulator: Any, seeded: dict[str, str]) -> dict[str, str]:
    jobs = emulator.client().list_trained_model_inference_jobs(membershipIdentifier=seeded["membership_id"])
    return {job["name"]: job["status"] for job in jobs["trainedModelInferenceJobs"]}


def test_sync_start_waits_until_the_job_holding_the_slot_ends(cleanrooms_emulator, seeded) -> None:
    control = cleanrooms_emulator.control
    control.set_limits(inference_jobs_per_membership=1)
    control.set_timings(pending_seconds=0.5, running_seconds=2)
    _operator(cleanrooms_emulator, seeded, "first").execute({"ti": _TI()})

    second = _operator(cleanrooms_emulator, seeded, "second").execute({"ti": _TI()})

    statuses = _statuses(cleanrooms_emulator, seeded)
    assert statuses["first"] == "ACTIVE"  # the second started only once the first had ended
    assert statuses["second"] in ("CREATE_PENDING", "CREATE_IN_PROGRESS", "ACTIVE")
    assert "/trained-model-inference-job/" in second
    refusals = [c for c in control.requests("StartTrainedModelInferenceJob") if c["status"] == 402]
    assert refusals, "the second start was never refused: the test did not meet the quota"
    assert control.max_running_inference_jobs(seeded["membership_id"]) == 1


# Without quotaValue (botocore 1.37) a quota of zero cannot be told from a full one: the start waits.
@needs_quota_value
def test_a_quota_of_zero_fails_at_once(cleanrooms_emulator, seeded) -> None:
    cleanrooms_emulator.control.set_limits(inference_jobs_per_membership=0)
    started = time.monotonic()
    with pytest.raises(CleanRoomsMLQuotaUnreachableError, match="per membership"):
        _operator(cleanrooms_emulator, seeded, "never").execute({"ti": _TI()})
    assert time.monotonic() - started < 30  # no quota wait (the bound is 6 hours)
    assert _statuses(cleanrooms_emulator, seeded) == {}


def test_quota_trigger_fires_when_a_slot_is_free(cleanrooms_emulator, seeded) -> None:
    control = cleanrooms_emulator.control
    control.set_limits(inference_jobs_per_membership=2)
    control.set_timings(pending_seconds=0.5, running_seconds=2)
    for name in ("a", "b"):
        _operator(cleanrooms_emulator, seeded, name).execute({"ti": _TI()})
    trigger = CleanRoomsMLJobQuotaSlotTrigger(
        resource="trained_model_inference_job_arn",
        membership_identifier=seeded["membership_id"],
        quota_name=QUOTA,
        quota_value=2.0,
        deadline=time.time() + 120,
        poll_interval=0.5,
        aws_conn_id=cleanrooms_emulator.conn_id,
    )
    event = _first_event(trigger, timeout=60)
    assert event["status"] == "success"
    assert event["pending_jobs"] is not None and event["pending_jobs"] < 2
    # It fired on state: a slot is free now, so a start is admitted.
    assert (
        sum(
            status in ("CREATE_PENDING", "CREATE_IN_PROGRESS")
            for status in _statuses(cleanrooms_emulator, seeded).values()
        )
        < 2
    )
    _operator(cleanrooms_emulator, seeded, "c", quota_wait_timeout=0).execute({"ti": _TI()})
