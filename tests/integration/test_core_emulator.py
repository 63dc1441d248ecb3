"""
Triggers, cancel-on-kill and the wait loop against the emulator (real HTTP, real boto3/aiobotocore).

The triggers run their ``run()`` to the first event, as the triggerer would; the events must carry
what the operators' ``execute_complete`` needs (the final status and ``statusDetails``).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError, CleanRoomsMLWaitTimeoutError
from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLTrainedModelCompleteTrigger,
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
)
from tests.topology import wait_until

pytestmark = [pytest.mark.integration]

RECEIVER = "444455556666"


class _TI:
    task_id = "t"
    map_index = -1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get(key)


@pytest.fixture
def seeded(cleanrooms_emulator: Any) -> dict[str, str]:
    membership_id = str(uuid.uuid4())
    return cleanrooms_emulator.control.seed_membership(membership_id, trained_model=True)


def _inference(emulator: Any, seeded: dict[str, str], name: str, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "task_id": "start_inference",
        "aws_conn_id": emulator.conn_id,
        "membership_identifier": seeded["membership_id"],
        "name": name,
        "trained_model_arn": seeded["trained_model_arn"],
        "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "output_configuration": {"members": [{"accountId": RECEIVER}]},
        "data_source": {"mlInputChannelArn": seeded["ml_input_channel_arn"]},
        # A poll a second on the emulator's clock: the wait ends on the job's status, not on a count
        # of back-to-back polls that a slow machine could exhaust first.
        "waiter_delay": 1,
        "waiter_max_attempts": 120,
    }
    arguments.update(overrides)
    return CleanRoomsMLStartTrainedModelInferenceJobOperator(**arguments)


def _first_event(trigger: Any, timeout: float = 30) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        generator = trigger.run()
        try:
            event = await asyncio.wait_for(generator.__anext__(), timeout)
        finally:
            await generator.aclose()
        return event.payload

    return asyncio.run(first())


def _job_status(emulator: Any, seeded: dict[str, str], arn: str) -> str:
    return emulator.client().get_trained_model_inference_job(
        membershipIdentifier=seeded["membership_id"], trainedModelInferenceJobArn=arn
    )["status"]


def _start(emulator: Any, seeded: dict[str, str], name: str) -> str:
    op = _inference(emulator, seeded, name, wait_for_completion=False)
    return op.execute({"ti": _TI()})


def _trigger(emulator: Any, seeded: dict[str, str], arn: str, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "membership_identifier": seeded["membership_id"],
        "trained_model_inference_job_arn": arn,
        "waiter_delay": 1,
        "waiter_max_attempts": 120,
        "aws_conn_id": emulator.conn_id,
    }
    arguments.update(overrides)
    return CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(**arguments)


class TestTriggers:
    def test_success_event(self, cleanrooms_emulator, seeded) -> None:
        arn = _start(cleanrooms_emulator, seeded, "trigger-ok")
        event = _first_event(_trigger(cleanrooms_emulator, seeded, arn))
        assert event["status"] == "success"
        assert event["trained_model_inference_job_arn"] == arn

    def test_failure_event_then_operator_error_carries_status_details(
        self, cleanrooms_emulator, seeded
    ) -> None:
        cleanrooms_emulator.control.fail_job("trigger-fail", code="OutOfMemory", message="container killed")
        arn = _start(cleanrooms_emulator, seeded, "trigger-fail")
        event = _first_event(_trigger(cleanrooms_emulator, seeded, arn))
        assert event["status"] == "error"
        assert event["trained_model_inference_job_arn"] == arn

        op = _inference(cleanrooms_emulator, seeded, "trigger-fail", deferrable=True)
        with pytest.raises(CleanRoomsMLJobFailedError) as raised:
            op.execute_complete({"ti": _TI()}, event)
        assert raised.value.status == "CREATE_FAILED"
        assert raised.value.status_details == {"statusCode": "OutOfMemory", "message": "container killed"}

    def test_exhausted_attempts_then_operator_cancels(self, cleanrooms_emulator, seeded) -> None:
        cleanrooms_emulator.control.set_timings(pending_seconds=60, running_seconds=60)
        arn = _start(cleanrooms_emulator, seeded, "trigger-slow")
        event = _first_event(_trigger(cleanrooms_emulator, seeded, arn, waiter_max_attempts=2))
        assert event["status"] == "error"

        op = _inference(cleanrooms_emulator, seeded, "trigger-slow", deferrable=True)
        with pytest.raises(CleanRoomsMLWaitTimeoutError):
            op.execute_complete({"ti": _TI()}, event)
        assert cleanrooms_emulator.control.requests("CancelTrainedModelInferenceJob")
        assert _job_status(cleanrooms_emulator, seeded, arn) in {
            "CANCEL_PENDING",
            "CANCEL_IN_PROGRESS",
            "INACTIVE",
        }

    def test_trigger_on_kill_cancels_the_job(self, cleanrooms_emulator, seeded) -> None:
        cleanrooms_emulator.control.set_timings(pending_seconds=60, running_seconds=60)
        arn = _start(cleanrooms_emulator, seeded, "trigger-killed")
        trigger = _trigger(cleanrooms_emulator, seeded, arn, cancel_on_kill=True)
        asyncio.run(trigger.on_kill())
        (cancel,) = cleanrooms_emulator.control.requests("CancelTrainedModelInferenceJob")
        assert cancel["params"]["trainedModelInferenceJobArn"] == arn
        assert _job_status(cleanrooms_emulator, seeded, arn) != "CREATE_PENDING"

    def test_trained_model_trigger(self, cleanrooms_emulator, seeded) -> None:
        trigger = CleanRoomsMLTrainedModelCompleteTrigger(
            membership_identifier=seeded["membership_id"],
            trained_model_arn=seeded["trained_model_arn"],
            version_identifier=seeded.get("trained_model_version_identifier"),  # absent on botocore 1.37
            waiter_delay=1,
            waiter_max_attempts=5,
            aws_conn_id=cleanrooms_emulator.conn_id,
        )
        event = _first_event(trigger)
        # The final status (and, where the model has them, logs/metrics publishing fields) ride along.
        assert event["status"] == "success"
        assert event["trained_model_arn"] == seeded["trained_model_arn"]
        assert event.get("job_status", "ACTIVE") == "ACTIVE"


class TestCancelOnKill:
    def test_killing_a_waiting_operator_cancels_its_job(self, cleanrooms_emulator, seeded) -> None:
        cleanrooms_emulator.control.set_timings(pending_seconds=60, running_seconds=60)
        op = _inference(cleanrooms_emulator, seeded, "killed-while-waiting", waiter_delay=0.05)
        killed: dict[str, Any] = {}

        def kill_once_waiting() -> None:
            # What Airflow calls on SIGTERM / execution_timeout, once the operator polls its job. The
            # operator runs on the test's own thread, as in a task process (Airflow 2.11's executor
            # safeguard refuses an operator's execute() on any other thread).
            try:
                wait_until(
                    lambda: cleanrooms_emulator.control.requests("GetTrainedModelInferenceJob"),
                    timeout=30,
                    what="the operator's first poll",
                    interval=0.05,
                )
                op.on_kill()
            except Exception as error:
                killed["error"] = error

        killer = threading.Thread(target=kill_once_waiting, daemon=True)
        killer.start()
        # The wait loop sees the cancellation and fails the task with the final status (if the kill
        # never came, the job would succeed and nothing would raise).
        with pytest.raises(CleanRoomsMLJobFailedError) as failed:
            op.execute({"ti": _TI()})
        killer.join(30)
        assert "error" not in killed, killed
        (cancel,) = cleanrooms_emulator.control.requests("CancelTrainedModelInferenceJob")
        assert failed.value.status.startswith("CANCEL_") or failed.value.status == "INACTIVE"
        assert cancel["params"]["trainedModelInferenceJobArn"] == failed.value.arn

    def test_training_cancel_on_kill(self, cleanrooms_emulator, seeded) -> None:
        cleanrooms_emulator.control.set_timings(training_seconds=60)
        op = CleanRoomsMLCreateTrainedModelOperator(
            task_id="create_trained_model",
            aws_conn_id=cleanrooms_emulator.conn_id,
            membership_identifier=seeded["membership_id"],
            name="killed-training",
            configured_model_algorithm_association_arn=seeded["configured_model_algorithm_association_arn"],
            resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 10},
            data_channels=[{"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}],
            wait_for_completion=False,
        )
        ti = _TI()
        arn = op.execute({"ti": ti})
        op.on_kill()
        (cancel,) = cleanrooms_emulator.control.requests("CancelTrainedModel")
        assert cancel["params"]["trainedModelArn"] == arn
        # The version the model got (none where botocore's model has no versions: 1.37, Airflow 3.0's pins).
        assert cancel["params"].get("versionIdentifier") == ti.xcoms.get("trained_model_version_identifier")
