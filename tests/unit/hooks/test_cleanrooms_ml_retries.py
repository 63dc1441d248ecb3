"""
Sync waits retry throttling in botocore's adaptive mode; start calls make one attempt only.

Answers come from a ``before-send`` handler (botocore's retry handling, parsing and events run as
with a real endpoint; nothing leaves the process). ``time.sleep`` is patched out by the unit conftest,
so botocore's backoff and adaptive pacing cost no time here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from airflow_cleanrooms.hooks.cleanrooms_ml import SYNC_RETRIES, CleanRoomsMLHook
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL_INFERENCE_JOB
from tests.unit.unit_support import INFERENCE_REQUEST, JOB_ARN, MEMBERSHIP, job_response


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _answers(client: Any, script: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """Answer each attempt with the next (status, body) of ``script``; returns the operations sent."""
    sent: list[str] = []

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        sent.append(kwargs["event_name"].rsplit(".", 1)[-1])
        status, body = script.pop(0)
        headers = {"x-amzn-ErrorType": body["__type"]} if "__type" in body else {}
        payload = json.dumps(body, default=lambda value: value.timestamp()).encode()
        return AWSResponse(request.url, status, headers, _Raw(payload))

    client.meta.events.register("before-send.cleanroomsml", answer)
    return sent


THROTTLED = (429, {"__type": "ThrottlingException", "message": "Rate exceeded"})


def test_the_hooks_clients_use_adaptive_retries_unless_the_connection_sets_retries():
    hook = CleanRoomsMLHook(aws_conn_id=None, region_name="us-east-1")
    retries = hook.conn.meta.config.retries
    assert retries["mode"] == "adaptive"
    assert retries["total_max_attempts"] == SYNC_RETRIES["total_max_attempts"]
    own = CleanRoomsMLHook(
        aws_conn_id=None, region_name="us-east-1", config={"retries": {"mode": "standard", "max_attempts": 2}}
    )
    assert own.conn.meta.config.retries["mode"] == "standard"


def test_a_throttled_status_read_is_retried_by_botocore_not_by_the_wait_loop():
    hook = CleanRoomsMLHook(aws_conn_id=None, region_name="us-east-1")
    sent = _answers(hook.conn, [THROTTLED, THROTTLED, (200, job_response("ACTIVE"))])
    # No error streak is tolerated by wait_for itself: only botocore's retries can get it through.
    state = hook.wait_for(
        TRAINED_MODEL_INFERENCE_JOB,
        MEMBERSHIP,
        JOB_ARN,
        waiter_delay=0,
        waiter_max_attempts=1,
        max_error_streak=0,
    )
    assert state.status == "ACTIVE"
    assert sent == ["GetTrainedModelInferenceJob"] * 3


def test_a_throttled_start_call_is_sent_once_by_the_single_attempt_client():
    hook = CleanRoomsMLHook(aws_conn_id=None, region_name="us-east-1")
    client = hook.single_attempt_conn
    sent = _answers(client, [THROTTLED])
    with pytest.raises(ClientError, match="ThrottlingException"):  # not modeled in botocore 1.37
        hook.start(TRAINED_MODEL_INFERENCE_JOB, dict(INFERENCE_REQUEST), client=client)
    assert sent == ["StartTrainedModelInferenceJob"]
    assert client.meta.config.retries["total_max_attempts"] == 1
