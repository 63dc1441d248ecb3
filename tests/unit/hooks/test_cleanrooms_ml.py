"""CleanRoomsMLHook: status sets from the model, packaged waiters, reads, cancels and the wait loop."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError, CleanRoomsMLWaitTimeoutError
from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook
from airflow_cleanrooms.service_model import enum_values
from airflow_cleanrooms.wait_semantics import (
    ML_INPUT_CHANNEL,
    RESOURCE_KINDS,
    TRAINED_MODEL,
    TRAINED_MODEL_INFERENCE_JOB,
    WAITERS_FILE,
    format_duration,
)
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
)


class TestStatusSets:
    def test_inference_job_statuses_come_from_the_model(self) -> None:
        kind = TRAINED_MODEL_INFERENCE_JOB
        assert set(kind.statuses) == set(enum_values("TrainedModelInferenceJobStatus"))
        assert kind.success_statuses == {"ACTIVE"}
        assert kind.pending_statuses == {"CREATE_PENDING", "CREATE_IN_PROGRESS"}
        assert kind.failure_statuses == {
            "CREATE_FAILED",
            "CANCEL_PENDING",
            "CANCEL_IN_PROGRESS",
            "CANCEL_FAILED",
            "INACTIVE",
        }

    def test_trained_model_also_fails_on_delete_statuses(self) -> None:
        assert {"DELETE_PENDING", "DELETE_IN_PROGRESS", "DELETE_FAILED"} <= TRAINED_MODEL.failure_statuses
        assert set(TRAINED_MODEL.statuses) == set(enum_values("TrainedModelStatus"))

    def test_channel_statuses(self) -> None:
        assert ML_INPUT_CHANNEL.success_statuses == {"ACTIVE"}
        assert "CREATE_FAILED" in ML_INPUT_CHANNEL.failure_statuses

    def test_a_status_no_acceptor_names_keeps_the_wait_going(self) -> None:
        # botocore's waiter semantics: a status a newer model adds is neither done nor failed.
        assert not TRAINED_MODEL_INFERENCE_JOB.is_failure("SOMETHING_NEW")
        assert not TRAINED_MODEL_INFERENCE_JOB.is_success("SOMETHING_NEW")
        assert not TRAINED_MODEL_INFERENCE_JOB.is_failure(None)

    @pytest.mark.parametrize("kind", RESOURCE_KINDS, ids=lambda k: k.waiter_name)
    def test_packaged_waiter_names_every_status_of_the_model_once(self, kind) -> None:
        waiter = json.loads(WAITERS_FILE.read_text())["waiters"][kind.waiter_name]
        assert waiter["operation"] == kind.get_operation
        named = [a["expected"] for a in waiter["acceptors"] if a["argument"] == "status"]
        assert sorted(named) == sorted(kind.statuses)
        sets = (kind.success_statuses, kind.pending_statuses, kind.failure_statuses)
        assert sum(len(group) for group in sets) == len(kind.statuses)
        assert set().union(*sets) == set(kind.statuses)


class TestHook:
    def test_client_and_waiters(self) -> None:
        hook = CleanRoomsMLHook(aws_conn_id=None, region_name="us-east-1")
        assert hook.client_type == "cleanroomsml"
        assert hook.conn.meta.service_model.service_name == "cleanroomsml"
        assert hook.waiter_path == WAITERS_FILE
        assert WAITERS_FILE.parent.name == "waiters"
        assert {k.waiter_name for k in RESOURCE_KINDS} <= set(hook.list_waiters())

    def test_custom_waiter_runs_against_the_real_model(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        stubber.add_response("get_trained_model_inference_job", job_response("CREATE_IN_PROGRESS"), GET_JOB)
        stubber.add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
        waiter = hook.get_waiter("trained_model_inference_job_complete")
        waiter.wait(**GET_JOB, WaiterConfig={"Delay": 0, "MaxAttempts": 3})

    def test_get_state_returns_status_and_details(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        details = {"statusCode": "E", "message": "m"}
        stubber.add_response(
            "get_trained_model_inference_job", job_response("CREATE_FAILED", details), GET_JOB
        )
        state = hook.get_state(TRAINED_MODEL_INFERENCE_JOB, MEMBERSHIP, JOB_ARN)
        assert state.status == "CREATE_FAILED"
        assert state.status_details == details
        assert state.age_seconds() is not None

    @needs_model_versions
    def test_get_trained_model_with_version(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        stubber.add_response(
            "get_trained_model", model_response("ACTIVE"), {**GET_MODEL, "versionIdentifier": VERSION}
        )
        assert (
            hook.get_state(TRAINED_MODEL, MEMBERSHIP, MODEL_ARN, versionIdentifier=VERSION).status == "ACTIVE"
        )

    def test_cancel_helpers(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        stubber.add_response("cancel_trained_model_inference_job", {}, GET_JOB)
        stubber.add_response("cancel_trained_model", {}, GET_MODEL)
        hook.cancel(TRAINED_MODEL_INFERENCE_JOB, MEMBERSHIP, JOB_ARN)
        hook.cancel(TRAINED_MODEL, MEMBERSHIP, MODEL_ARN)

    def test_a_channel_cannot_be_cancelled(self, stubbed_hook) -> None:
        hook, _ = stubbed_hook
        with pytest.raises(ValueError, match="cannot be cancelled"):
            hook.cancel(ML_INPUT_CHANNEL, MEMBERSHIP, "arn")


class TestWaitFor:
    def test_success(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        stubber.add_response("get_trained_model", model_response("CREATE_PENDING"), GET_MODEL)
        stubber.add_response("get_trained_model", model_response("ACTIVE"), GET_MODEL)
        state = hook.wait_for(TRAINED_MODEL, MEMBERSHIP, MODEL_ARN, waiter_delay=0, waiter_max_attempts=5)
        assert state.status == "ACTIVE"

    @pytest.mark.parametrize("status", sorted(TRAINED_MODEL.failure_statuses))
    def test_each_failure_status(self, stubbed_hook, status) -> None:
        hook, stubber = stubbed_hook
        stubber.add_response(
            "get_trained_model", model_response(status, {"statusCode": "C", "message": "M"}), GET_MODEL
        )
        with pytest.raises(CleanRoomsMLJobFailedError, match=f"{status}: C: M"):
            hook.wait_for(TRAINED_MODEL, MEMBERSHIP, MODEL_ARN, waiter_delay=0, waiter_max_attempts=5)

    def test_the_final_state_block_is_logged(self, stubbed_hook, caplog) -> None:
        hook, stubber = stubbed_hook
        response = model_response("CREATE_FAILED", {"statusCode": "C", "message": "M"})
        response.update(logsStatus="PUBLISH_FAILED", logsStatusDetails="no containerLogs policy")
        stubber.add_response("get_trained_model", response, GET_MODEL)
        hook._log = logging.getLogger("test.hook")  # a logger caplog sees (Airflow's may not propagate)
        with caplog.at_level("INFO", logger="test.hook"), pytest.raises(CleanRoomsMLJobFailedError):
            hook.wait_for(TRAINED_MODEL, MEMBERSHIP, MODEL_ARN, waiter_delay=0, waiter_max_attempts=5)
        assert f"Trained model {MODEL_ARN} ended:" in caplog.text
        assert "logs status:      PUBLISH_FAILED" in caplog.text
        assert "logs details:     no containerLogs policy" in caplog.text
        assert "no container logs will be found" in caplog.text

    def test_a_status_no_acceptor_names_is_waited_past(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        stubber.add_response("get_trained_model", model_response("SOMETHING_NEW"), GET_MODEL)
        stubber.add_response("get_trained_model", model_response("ACTIVE"), GET_MODEL)
        state = hook.wait_for(TRAINED_MODEL, MEMBERSHIP, MODEL_ARN, waiter_delay=0, waiter_max_attempts=5)
        assert state.status == "ACTIVE"

    def test_max_attempts(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        for _ in range(2):
            stubber.add_response("get_trained_model", model_response("CREATE_IN_PROGRESS"), GET_MODEL)
        with pytest.raises(CleanRoomsMLWaitTimeoutError, match="after 2 checks"):
            hook.wait_for(TRAINED_MODEL, MEMBERSHIP, MODEL_ARN, waiter_delay=0, waiter_max_attempts=2)

    def test_error_streak_is_bounded(self, stubbed_hook) -> None:
        hook, stubber = stubbed_hook
        for _ in range(3):
            stubber.add_client_error(
                "get_trained_model", "InternalServerException", "boom", 500, expected_params=GET_MODEL
            )
        with pytest.raises(Exception, match="InternalServerException"):
            hook.wait_for(
                TRAINED_MODEL,
                MEMBERSHIP,
                MODEL_ARN,
                waiter_delay=0,
                waiter_max_attempts=50,
                max_error_streak=2,
            )

    def test_throttling_never_ends_the_wait(self, stubbed_hook) -> None:
        """Many workers' sync waits share the account's request rate: a throttled read is no failure."""
        hook, stubber = stubbed_hook
        for _ in range(6):
            stubber.add_client_error(
                "get_trained_model", "ThrottlingException", "slow", 400, expected_params=GET_MODEL
            )
        stubber.add_response("get_trained_model", model_response("ACTIVE"), GET_MODEL)
        state = hook.wait_for(
            TRAINED_MODEL, MEMBERSHIP, MODEL_ARN, waiter_delay=0, waiter_max_attempts=2, max_error_streak=2
        )
        assert state.status == "ACTIVE"
        stubber.assert_no_pending_responses()


def test_format_duration() -> None:
    assert format_duration(None) == "?"
    assert format_duration(2.25) == "2.2s"
    assert format_duration(75) == "1m15s"
    assert format_duration(3725) == "1h02m05s"
