"""wait_semantics.py: transient errors, the trigger event, and what a task makes of it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError, CleanRoomsMLWaitTimeoutError
from airflow_cleanrooms.service_model import service_model
from airflow_cleanrooms.wait_semantics import (
    THROTTLING_ERROR_CODES,
    TRAINED_MODEL_INFERENCE_JOB,
    TRANSIENT_ERROR_CODES,
    ResourceState,
    is_throttling,
    is_transient,
    raise_for_wait_event,
    wait_event,
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
    raise_for_wait_event(TRAINED_MODEL_INFERENCE_JOB, ARN, {"status": "success"}, _unread, LOG)


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
