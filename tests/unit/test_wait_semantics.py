"""wait_semantics.py: transient errors, the trigger event, and what a task makes of it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError, CleanRoomsMLWaitTimeoutError
from airflow_cleanrooms.service_model import service_model
from airflow_cleanrooms.wait_semantics import (
    ML_INPUT_CHANNEL,
    PUBLISHING_MEMBERS,
    RESOURCE_KINDS,
    THROTTLING_ERROR_CODES,
    TRAINED_MODEL,
    TRAINED_MODEL_INFERENCE_JOB,
    TRANSIENT_ERROR_CODES,
    PollVerdict,
    ResourceState,
    count_poll,
    format_final_state,
    is_throttling,
    is_transient,
    judge_poll,
    load_waiter_config,
    publishing_fields,
    raise_for_wait_event,
    wait_event,
    waiter_acceptors,
)

ARN = "arn:job"
LOG = logging.getLogger("test")


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_error_codes_come_from_the_model_and_botocore() -> None:
    by_status = {
        shape.name: shape.metadata["error"]["httpStatusCode"] for shape in service_model().error_shapes
    }
    assert {name for name, status in by_status.items() if status == 429} <= THROTTLING_ERROR_CODES
    assert {name for name, status in by_status.items() if status >= 500} <= TRANSIENT_ERROR_CODES
    # botocore's standard retry mode: "RequestTimeout" is transient, "SlowDown" a throttle.
    assert {"RequestTimeout", "SlowDown"} <= TRANSIENT_ERROR_CODES
    assert not {name for name, status in by_status.items() if 400 <= status < 429} & TRANSIENT_ERROR_CODES


@pytest.mark.parametrize(
    ("error", "transient", "throttling"),
    [
        (client_error("ThrottlingException", 429), True, True),
        (client_error("TooManyRequestsException", 400), True, True),
        (client_error("InternalServiceException", 500), True, False),
        (client_error("Whatever", 503), True, False),
        (EndpointConnectionError(endpoint_url="http://x"), True, False),
        (ReadTimeoutError(endpoint_url="http://x"), True, False),
        (client_error("ValidationException", 400), False, False),
        (client_error("ResourceNotFoundException", 404), False, False),
        (client_error("ServiceQuotaExceededException", 402), False, False),
    ],
)
def test_classification(error: BaseException, transient: bool, throttling: bool) -> None:
    assert is_transient(error) is transient
    assert is_throttling(error) is throttling
    if isinstance(error, ClientError):  # the same answer for the error response a trigger sees
        assert is_transient(error.response) is transient


def test_events() -> None:
    assert wait_event("arn_key", ARN) == {"status": "success", "arn_key": ARN}
    assert wait_event("arn_key", ARN, message="m", status="CREATE_FAILED", status_details={"a": 1}) == {
        "status": "error",
        "message": "m",
        "arn_key": ARN,
        "job_status": "CREATE_FAILED",
        "status_details": {"a": 1},
    }


def _unread() -> ResourceState:
    raise AssertionError("the status is in the event: no read expected")


def test_success_event_returns() -> None:
    event = wait_event("k", ARN, status="ACTIVE", final={"logs_status": "PUBLISH_SUCCEEDED"})
    raise_for_wait_event(TRAINED_MODEL_INFERENCE_JOB, ARN, event, _unread, LOG)


def test_plain_success_event_reads_the_final_state_once() -> None:
    reads: list[int] = []

    def read_state() -> ResourceState:
        reads.append(1)
        return ResourceState.from_response({"status": "ACTIVE", "logsStatus": "PUBLISH_SUCCEEDED"})

    raise_for_wait_event(TRAINED_MODEL_INFERENCE_JOB, ARN, {"status": "success"}, read_state, LOG)
    assert reads == [1]


def test_a_success_event_whose_state_cannot_be_read_ends_in_the_waiters_done_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreadable() -> ResourceState:
        raise ConnectionError("gone")

    with caplog.at_level(logging.INFO, logger="test"):
        raise_for_wait_event(TRAINED_MODEL, ARN, {"status": "success"}, unreadable, LOG)
    assert f"status:           {TRAINED_MODEL.done_status}" in caplog.text
    # "done" is the waiter's one success acceptor, a status of the model's enum, for every kind.
    for kind in RESOURCE_KINDS:
        assert kind.success_statuses == {kind.done_status} and kind.done_status in kind.statuses


# ---- the final state block -----------------------------------------------------------------------


def test_publishing_members_come_from_the_installed_model() -> None:
    for kind in (TRAINED_MODEL_INFERENCE_JOB, TRAINED_MODEL):
        output = service_model().operation_model(kind.get_operation).output_shape
        assert kind.publishing_members == tuple(m for m in PUBLISHING_MEMBERS if m in output.members)
    assert TRAINED_MODEL_INFERENCE_JOB.publishing_members == PUBLISHING_MEMBERS  # the pinned botocore
    assert ML_INPUT_CHANNEL.publishing_members == ()


def test_publishing_fields_of_a_response() -> None:
    response = {"status": "ACTIVE", "logsStatus": "PUBLISH_FAILED", "logsStatusDetails": "why", "x": 1}
    assert publishing_fields(TRAINED_MODEL_INFERENCE_JOB, response) == {
        "logs_status": "PUBLISH_FAILED",
        "logs_status_details": "why",
    }
    assert publishing_fields(ML_INPUT_CHANNEL, response) == {}


def test_final_state_block_says_why_no_logs_will_be_found() -> None:
    state = ResourceState.from_response(
        {
            "status": "CREATE_FAILED",
            "statusDetails": {"statusCode": "AlgorithmError", "message": "exit 1"},
            "logsStatus": "PUBLISH_FAILED",
            "logsStatusDetails": "not allowed by the privacy configuration",
            "metricsStatus": "PUBLISH_SUCCEEDED",
        }
    )
    block = format_final_state(
        TRAINED_MODEL_INFERENCE_JOB, ARN, state.final_fields(TRAINED_MODEL_INFERENCE_JOB)
    )
    lines = block.splitlines()
    assert lines[0] == f"Trained model inference job {ARN} ended:"
    assert "status:           CREATE_FAILED" in lines[1]
    assert "AlgorithmError: exit 1" in lines[2]
    assert "logs status:      PUBLISH_FAILED" in block
    assert "logs details:     not allowed by the privacy configuration" in block
    assert "no container logs will be found" in block
    assert "trainedModelInferenceJobs.containerLogs" in block
    assert "metrics status:   PUBLISH_SUCCEEDED" in block
    assert "metricsStatus" not in block  # no explanation for a success


def test_final_state_block_of_a_trained_model_names_its_policy_and_unreported_members() -> None:
    block = format_final_state(TRAINED_MODEL, ARN, {"job_status": "ACTIVE", "logs_status": "PUBLISH_FAILED"})
    assert "trainedModels.containerLogs" in block
    assert "metrics status:   not reported" in block


def test_the_event_block_is_logged_at_the_end_of_a_deferred_wait(caplog: pytest.LogCaptureFixture) -> None:
    event = wait_event(
        "k",
        ARN,
        message="failed",
        status="CREATE_FAILED",
        status_details={"message": "oom"},
        final={"logs_status": "PUBLISH_FAILED", "logs_status_details": "no policy"},
    )
    with caplog.at_level(logging.INFO, logger="test"), pytest.raises(CleanRoomsMLJobFailedError):
        raise_for_wait_event(TRAINED_MODEL_INFERENCE_JOB, ARN, event, _unread, LOG)
    assert "logs status:      PUBLISH_FAILED" in caplog.text
    assert "no policy" in caplog.text


def test_failure_status_in_the_event_raises_with_details() -> None:
    event = wait_event("k", ARN, message="m", status="CREATE_FAILED", status_details={"message": "oom"})
    with pytest.raises(CleanRoomsMLJobFailedError, match="CREATE_FAILED: oom"):
        raise_for_wait_event(TRAINED_MODEL_INFERENCE_JOB, ARN, event, _unread, LOG)


@pytest.mark.parametrize(
    ("read", "outcome"),
    [
        ({"status": "ACTIVE"}, None),
        ({"status": "CANCEL_FAILED"}, CleanRoomsMLJobFailedError),
        ({"status": "CREATE_IN_PROGRESS"}, CleanRoomsMLWaitTimeoutError),
        (None, CleanRoomsMLWaitTimeoutError),  # the read failed: status unknown
    ],
)
def test_plain_error_event_reads_the_status_once(read: dict[str, Any] | None, outcome: type | None) -> None:
    reads: list[int] = []

    def read_state() -> ResourceState:
        reads.append(1)
        if read is None:
            raise client_error("InternalServiceException", 500)
        return ResourceState.from_response(read)

    event = {"status": "error", "message": "Waiter error"}
    if outcome is None:
        raise_for_wait_event(TRAINED_MODEL_INFERENCE_JOB, ARN, event, read_state, LOG)
    else:
        with pytest.raises(outcome):
            raise_for_wait_event(TRAINED_MODEL_INFERENCE_JOB, ARN, event, read_state, LOG)
    assert reads == [1]


# ---- the one judge of a poll -----------------------------------------------------------------------


def _acceptors() -> Any:
    from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook

    hook = CleanRoomsMLHook(aws_conn_id=None, region_name="us-east-1")
    return waiter_acceptors(load_waiter_config(hook, TRAINED_MODEL_INFERENCE_JOB.waiter_name))


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        ({"status": "ACTIVE"}, "success"),
        ({"status": "CREATE_FAILED"}, "failure"),
        ({"status": "CANCEL_PENDING"}, "failure"),
        ({"status": "CREATE_IN_PROGRESS"}, "retry"),
        ({"status": "A_STATUS_A_NEWER_MODEL_ADDS"}, "retry"),  # as botocore: no acceptor, keep going
        (client_error("ThrottlingException", 429), "transient"),
        (client_error("InternalServerException", 500), "transient"),
        (EndpointConnectionError(endpoint_url="http://x"), "transient"),
        (client_error("ResourceNotFoundException", 404), "error"),
        (client_error("AccessDeniedException", 403).response, "error"),
    ],
)
def test_judge_poll_is_botocores_waiter_with_our_transient_rule(outcome: Any, state: str) -> None:
    verdict = judge_poll(_acceptors(), outcome)
    assert verdict.state == state
    assert verdict.answered is (state in ("success", "failure", "retry"))


def test_judge_poll_raises_what_it_cannot_judge() -> None:
    with pytest.raises(KeyError):
        judge_poll(_acceptors(), KeyError("a bug, not a poll outcome"))


def test_count_poll_bounds_attempts_and_transient_streaks() -> None:
    bounds = {"max_attempts": 2, "max_transient": 1}
    going, flaky = PollVerdict("retry"), PollVerdict("transient", "InternalServerException: boom")
    assert count_poll(going, 0, 0, **bounds) == (1, 0, None)
    assert count_poll(flaky, 1, 0, **bounds) == (1, 1, None)  # no attempt used
    assert count_poll(flaky, 1, 1, **bounds) == (1, 2, "transient")  # more than 1 in a row
    assert count_poll(going, 1, 1, **bounds) == (2, 0, "attempts")  # an answer ends the streak
    assert count_poll(PollVerdict("success"), 1, 0, **bounds) == (2, 0, None)  # success ends the wait itself
    assert count_poll(PollVerdict("error", "AccessDenied"), 1, 0, **bounds) == (1, 0, None)
    # Throttling neither uses an attempt nor lengthens (or ends) a streak: it never ends a wait.
    throttled = judge_poll(_acceptors(), client_error("ThrottlingException", 429))
    assert throttled.throttled and throttled.state == "transient"
    assert count_poll(throttled, 1, 1, **bounds) == (1, 1, None)
