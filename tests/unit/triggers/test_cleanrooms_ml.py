"""Triggers: serialization round trip, error events with status details, cancel on kill."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any

import pytest
from botocore.stub import Stubber

from airflow_cleanrooms.aio.poll_scheduler import Finished
from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook
from airflow_cleanrooms.triggers.base import CleanRoomsMLBaseWaiterTrigger, _WaitState
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLInputChannelActiveTrigger,
    CleanRoomsMLTrainedModelCompleteTrigger,
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
)
from tests.unit.unit_support import GET_JOB, JOB_ARN, MEMBERSHIP, MODEL_ARN, VERSION, needs_model_versions

AWS = {
    "aws_conn_id": "my_aws",
    "region_name": "eu-west-1",
    "verify": False,
    "botocore_config": {"retries": {"mode": "standard"}},
}

TRIGGERS = [
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier=MEMBERSHIP,
        trained_model_inference_job_arn=JOB_ARN,
        waiter_delay=5,
        waiter_max_attempts=10,
        cancel_on_kill=True,
        **AWS,
    ),
    CleanRoomsMLTrainedModelCompleteTrigger(
        membership_identifier=MEMBERSHIP, trained_model_arn=MODEL_ARN, version_identifier=VERSION, **AWS
    ),
    CleanRoomsMLTrainedModelCompleteTrigger(membership_identifier=MEMBERSHIP, trained_model_arn=MODEL_ARN),
    CleanRoomsMLInputChannelActiveTrigger(
        membership_identifier=MEMBERSHIP, ml_input_channel_arn="arn:x", **AWS
    ),
]


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: type(t).__name__)
def test_serialization_round_trip(trigger) -> None:
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.waiter_args == trigger.waiter_args
    assert rebuilt.cancel_on_kill == trigger.cancel_on_kill
    assert isinstance(rebuilt, CleanRoomsMLBaseWaiterTrigger)


def test_serialized_kwargs_survive_airflow_serde() -> None:
    try:
        from airflow.sdk.serde import deserialize, serialize
    except ImportError:  # Airflow < 3.2
        from airflow.serialization.serde import deserialize, serialize  # type: ignore[no-redef]

    _, kwargs = TRIGGERS[0].serialize()
    assert deserialize(serialize(kwargs)) == kwargs


def test_inference_trigger_shape() -> None:
    trigger = TRIGGERS[0]
    assert trigger.waiter_name == "trained_model_inference_job_complete"
    assert trigger.waiter_args == GET_JOB
    assert trigger.return_key == "trained_model_inference_job_arn"
    assert trigger.return_value == JOB_ARN
    assert trigger.attempts == 10
    hook = trigger.hook()
    assert isinstance(hook, CleanRoomsMLHook)
    assert hook.aws_conn_id == "my_aws"
    assert hook._region_name == "eu-west-1"


class _StubbedAsyncConn:
    """Stands in for ``CleanRoomsMLHook.get_async_conn``: a real aiobotocore client under a Stubber."""

    def __init__(self, original: Any) -> None:
        self.original = original
        self.expected: list[tuple[str, dict[str, Any]]] = []
        self.called = False

    async def __call__(self, hook: CleanRoomsMLHook) -> Any:
        client_cm = await self.original(hook)

        @contextlib.asynccontextmanager
        async def managed() -> Any:
            async with client_cm as client:
                with Stubber(client) as stubber:
                    for method, params in self.expected:
                        stubber.add_response(method, {}, params)
                    self.called = True
                    yield client
                    stubber.assert_no_pending_responses()

        return managed()


@pytest.fixture
def async_stub(monkeypatch: pytest.MonkeyPatch) -> _StubbedAsyncConn:
    stub = _StubbedAsyncConn(CleanRoomsMLHook.get_async_conn)

    async def get_async_conn(self: CleanRoomsMLHook) -> Any:
        return await stub(self)

    monkeypatch.setattr(CleanRoomsMLHook, "get_async_conn", get_async_conn)
    return stub


def test_on_kill_cancels_when_asked(async_stub) -> None:
    async_stub.expected.append(("cancel_trained_model_inference_job", GET_JOB))
    trigger = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier=MEMBERSHIP,
        trained_model_inference_job_arn=JOB_ARN,
        cancel_on_kill=True,
        aws_conn_id=None,
    )
    asyncio.run(trigger.on_kill())
    assert async_stub.called


@needs_model_versions
def test_on_kill_passes_the_model_version(async_stub) -> None:
    async_stub.expected.append(
        (
            "cancel_trained_model",
            {"membershipIdentifier": MEMBERSHIP, "trainedModelArn": MODEL_ARN, "versionIdentifier": VERSION},
        )
    )
    trigger = CleanRoomsMLTrainedModelCompleteTrigger(
        membership_identifier=MEMBERSHIP,
        trained_model_arn=MODEL_ARN,
        version_identifier=VERSION,
        cancel_on_kill=True,
        aws_conn_id=None,
    )
    asyncio.run(trigger.on_kill())
    assert async_stub.called


def test_on_kill_does_nothing_for_watchers(async_stub) -> None:
    trigger = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier=MEMBERSHIP, trained_model_inference_job_arn=JOB_ARN, aws_conn_id=None
    )
    asyncio.run(trigger.on_kill())
    assert not async_stub.called


@pytest.mark.parametrize(
    ("status", "outcome"), [("ACTIVE", "success"), ("CREATE_FAILED", "error")], ids=["active", "failed"]
)
def test_final_event_carries_logs_and_metrics_status(status: str, outcome: str) -> None:
    from airflow_cleanrooms.wait_semantics import load_waiter_config, waiter_acceptors

    trigger = TRIGGERS[0]
    acceptors = waiter_acceptors(load_waiter_config(trigger.hook(), trigger.waiter_name))
    response = {
        "status": status,
        "statusDetails": {"statusCode": "AlgorithmError", "message": "boom"} if outcome == "error" else None,
        "logsStatus": "PUBLISH_FAILED",
        "logsStatusDetails": "The association does not allow container logs",
        "metricsStatus": "PUBLISH_SUCCEEDED",
    }
    finished = trigger._step(_WaitState(trigger, acceptors), response)
    assert isinstance(finished, Finished)
    event = finished.result
    assert event.payload["status"] == outcome
    assert event.payload["job_status"] == status
    assert event.payload["logs_status"] == "PUBLISH_FAILED"
    assert event.payload["logs_status_details"] == "The association does not allow container logs"
    assert event.payload["metrics_status"] == "PUBLISH_SUCCEEDED"
    assert "metrics_status_details" not in event.payload
