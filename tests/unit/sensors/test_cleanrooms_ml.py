"""The inference-job and trained-model sensors: poke, deferral and resume, with the Stubber."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cleanrooms.compat import AirflowException, TaskDeferred
from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError
from airflow_cleanrooms.sensors.cleanrooms_ml import (
    CleanRoomsMLTrainedModelInferenceJobSensor,
    CleanRoomsMLTrainedModelSensor,
)
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLTrainedModelCompleteTrigger,
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
)
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL, TRAINED_MODEL_INFERENCE_JOB
from tests.unit.unit_support import (
    GET_JOB,
    GET_MODEL,
    JOB_ARN,
    MEMBERSHIP,
    MODEL_ARN,
    VERSION,
    job_response,
    model_response,
    needs_model_versions,
    with_version,
)

DETAILS = {"statusCode": "InternalError", "message": "the container crashed"}


def job_sensor(**overrides: Any) -> CleanRoomsMLTrainedModelInferenceJobSensor:
    arguments: dict[str, Any] = {
        "task_id": "wait_inference",
        "membership_identifier": MEMBERSHIP,
        "trained_model_inference_job_arn": JOB_ARN,
        "aws_conn_id": None,
        "region_name": "us-east-1",
        "deferrable": False,
    }
    arguments.update(overrides)
    return CleanRoomsMLTrainedModelInferenceJobSensor(**arguments)


def model_sensor(**overrides: Any) -> CleanRoomsMLTrainedModelSensor:
    arguments: dict[str, Any] = {
        "task_id": "wait_trained_model",
        "membership_identifier": MEMBERSHIP,
        "trained_model_arn": MODEL_ARN,
        "aws_conn_id": None,
        "region_name": "us-east-1",
        "deferrable": False,
    }
    arguments.update(overrides)
    return CleanRoomsMLTrainedModelSensor(**arguments)


class TestInferenceJobSensor:
    def test_template_fields(self) -> None:
        sensor = job_sensor()
        assert {
            "membership_identifier",
            "trained_model_inference_job_arn",
            "aws_conn_id",
            "region_name",
        } <= set(sensor.template_fields)

    def test_poke_pending_then_active(self, stub_for, context, capsys) -> None:
        sensor = job_sensor()
        stubber = stub_for(sensor)
        stubber.add_response("get_trained_model_inference_job", job_response("CREATE_PENDING"), GET_JOB)
        stubber.add_response("get_trained_model_inference_job", job_response("CREATE_IN_PROGRESS"), GET_JOB)
        stubber.add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
        assert sensor.poke(context) is False
        assert sensor.poke(context) is False
        assert sensor.poke(context) is True
        out = capsys.readouterr().out
        assert "is CREATE_IN_PROGRESS (was CREATE_PENDING) (age" in out
        assert "is ACTIVE (was CREATE_IN_PROGRESS)" in out

    @pytest.mark.parametrize("status", sorted(TRAINED_MODEL_INFERENCE_JOB.failure_statuses))
    def test_fails_at_once_on_each_failure_status(self, stub_for, context, status) -> None:
        sensor = job_sensor()
        stub_for(sensor).add_response(
            "get_trained_model_inference_job", job_response(status, DETAILS), GET_JOB
        )
        with pytest.raises(CleanRoomsMLJobFailedError) as raised:
            sensor.poke(context)
        assert raised.value.status == status
        assert "InternalError: the container crashed" in str(raised.value)

    def test_deferrable_defers_without_cancel_on_kill(self, stub_for, context) -> None:
        sensor = job_sensor(deferrable=True, poke_interval=5, max_retries=7)
        stub_for(sensor)
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(context)
        trigger = deferred.value.trigger
        assert isinstance(trigger, CleanRoomsMLTrainedModelInferenceJobCompleteTrigger)
        _, kwargs = trigger.serialize()
        assert kwargs["waiter_delay"] == 5
        assert kwargs["waiter_max_attempts"] == 7
        assert kwargs["cancel_on_kill"] is False  # the sensor only watches: it never cancels

    def test_execute_complete_success(self, stub_for, context) -> None:
        sensor = job_sensor(deferrable=True)
        stub_for(sensor)
        assert (
            sensor.execute_complete(
                context, {"status": "success", "trained_model_inference_job_arn": JOB_ARN}
            )
            == JOB_ARN
        )

    def test_execute_complete_rich_error(self, stub_for, context) -> None:
        sensor = job_sensor(deferrable=True)
        stub_for(sensor)
        event = {"status": "error", "message": "m", "job_status": "CANCEL_FAILED", "status_details": DETAILS}
        with pytest.raises(CleanRoomsMLJobFailedError, match="CANCEL_FAILED: InternalError"):
            sensor.execute_complete(context, event)

    def test_execute_complete_plain_error_reads_status(self, stub_for, context) -> None:
        sensor = job_sensor(deferrable=True)
        stub_for(sensor).add_response(
            "get_trained_model_inference_job", job_response("CREATE_FAILED", DETAILS), GET_JOB
        )
        with pytest.raises(CleanRoomsMLJobFailedError, match="CREATE_FAILED"):
            sensor.execute_complete(context, {"status": "error", "message": "Waiter error"})

    def test_execute_complete_timeout_while_running(self, stub_for, context) -> None:
        sensor = job_sensor(deferrable=True)
        stub_for(sensor).add_response(
            "get_trained_model_inference_job", job_response("CREATE_IN_PROGRESS"), GET_JOB
        )
        with pytest.raises(AirflowException, match="max attempts reached"):
            sensor.execute_complete(
                context, {"status": "error", "message": "Waiter error: max attempts reached"}
            )


class TestTrainedModelSensor:
    @pytest.mark.parametrize("status", sorted(TRAINED_MODEL.failure_statuses))
    def test_fails_on_each_failure_status_including_delete(self, stub_for, context, status) -> None:
        sensor = model_sensor()
        stub_for(sensor).add_response("get_trained_model", model_response(status, DETAILS), GET_MODEL)
        with pytest.raises(CleanRoomsMLJobFailedError, match=status):
            sensor.poke(context)

    @needs_model_versions
    def test_version_is_passed_through(self, stub_for, context) -> None:
        sensor = model_sensor(version_identifier=VERSION)
        stub_for(sensor).add_response(
            "get_trained_model", model_response("ACTIVE"), {**GET_MODEL, "versionIdentifier": VERSION}
        )
        assert sensor.poke(context) is True

    def test_deferrable(self, stub_for, context) -> None:
        sensor = model_sensor(deferrable=True, version_identifier=VERSION)
        stub_for(sensor)
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(context)
        trigger = deferred.value.trigger
        assert isinstance(trigger, CleanRoomsMLTrainedModelCompleteTrigger)
        assert trigger.waiter_args == with_version(GET_MODEL)
