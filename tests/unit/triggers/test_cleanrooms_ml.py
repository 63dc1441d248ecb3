"""Triggers: serialization round trip, error events with status details, cancel on kill."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.stub import Stubber

from airflow_cleanrooms.aio.poll_scheduler import Finished
from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS
from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook
from airflow_cleanrooms.triggers import base as trigger_base
from airflow_cleanrooms.triggers import cleanrooms_ml as trigger_module
from airflow_cleanrooms.triggers.base import (
    CleanRoomsMLBaseWaiterTrigger,
    _task_state_from_database,
    _WaitState,
)
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLInputChannelActiveTrigger,
    CleanRoomsMLTrainedModelCompleteTrigger,
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
)
from tests.unit.trigger_support import TriggererComms, write_task_instances
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
        self.expected: list[tuple[str, dict[str, Any] | str]] = []
        self.called = False

    async def __call__(self, hook: CleanRoomsMLHook) -> Any:
        client_cm = await self.original(hook)

        @contextlib.asynccontextmanager
        async def managed() -> Any:
            async with client_cm as client:
                with Stubber(client) as stubber:
                    for method, params in self.expected:
                        if isinstance(params, str):  # an error code, answered with HTTP 400
                            stubber.add_client_error(method, params, params)
                        else:
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


class _TaskStates:
    """
    The task states a trigger's state read finds, and the reads it made (``asked``).

    Airflow 3: stands in for ``RuntimeTaskInstance.get_task_states`` (the Task SDK's call to the API
    server), sending it the way Airflow 3.0's and 3.1's triggerer does (``comms``). Airflow 2.11: the
    states are rows of the test metadata database, which the trigger reads with a real query.
    """

    def __init__(self, states: dict[str, Any] | Exception) -> None:
        self.states = states
        self.asked: list[dict[str, Any]] = []
        self.comms = TriggererComms()

    def __call__(self, **query: Any) -> dict[str, Any]:
        self.asked.append(query)
        self.comms.send()
        if isinstance(self.states, Exception):
            raise self.states
        return self.states

    def read_database(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> Any:
        """Airflow 2.11: the real database read, recorded in the Task SDK call's terms."""
        query = {"dag_id": dag_id, "map_index": map_index, "task_ids": [task_id], "run_ids": [run_id]}
        self.asked.append(query)
        if isinstance(self.states, Exception):
            raise self.states
        return _task_state_from_database(dag_id, run_id, task_id, map_index)


def _deferred_trigger(map_index: int = -1) -> CleanRoomsMLTrainedModelInferenceJobCompleteTrigger:
    trigger = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier=MEMBERSHIP,
        trained_model_inference_job_arn=JOB_ARN,
        cancel_on_kill=True,
        aws_conn_id=None,
    )
    # What the triggerer sets on a trigger that a task deferred to.
    trigger.task_instance = SimpleNamespace(
        dag_id="scores", task_id="score", run_id="r1", map_index=map_index
    )
    return trigger


@pytest.fixture(autouse=True)
def _task_instance_table(request: pytest.FixtureRequest) -> None:
    """Airflow 2.11 reads task states from the metadata database: migrate it (once per session)."""
    if not AIRFLOW_V_3_0_PLUS:
        request.getfixturevalue("airflow_db")


def _task_states(monkeypatch: pytest.MonkeyPatch, states: dict[str, Any] | Exception) -> _TaskStates:
    fake = _TaskStates(states)
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(fake))
    else:
        if isinstance(states, dict):
            write_task_instances("scores", states)
        monkeypatch.setattr(trigger_base, "_task_state_from_database", fake.read_database)
    return fake


@pytest.mark.parametrize("state", ["failed", "success", "up_for_retry", "scheduled", None])
def test_on_kill_cancels_when_the_task_is_no_longer_deferred(async_stub, monkeypatch, capsys, state) -> None:
    async_stub.expected.append(("cancel_trained_model_inference_job", GET_JOB))
    states = _task_states(monkeypatch, {"r1": {"score": state}})
    trigger = _deferred_trigger()

    async def kill() -> asyncio.AbstractEventLoop:
        await trigger.on_kill()
        return asyncio.get_running_loop()

    loop = asyncio.run(kill())

    log = capsys.readouterr().out
    assert async_stub.called
    assert states.asked == [{"dag_id": "scores", "map_index": -1, "task_ids": ["score"], "run_ids": ["r1"]}]
    if AIRFLOW_V_3_0_PLUS:  # answered on the triggerer's loop, as Airflow 3.0 and 3.1 need
        assert states.comms.loops == [loop]
    assert f"Task killed while deferred (its state is now {state}): cancelling" in log


@pytest.mark.parametrize(
    ("triggerer_calls_on_kill", "state", "cancelled"),
    [(False, "failed", True), (False, "deferred", False), (True, "failed", False)],
    ids=["below-3.3-killed", "below-3.3-handed-over-or-stopped", "3.3-calls-on_kill-itself"],
)
def test_a_cancelled_wait_runs_on_kill_where_the_triggerer_does_not(
    async_stub, monkeypatch, triggerer_calls_on_kill, state, cancelled
) -> None:
    """
    Airflow 2.11 to 3.2 only cancel a trigger's ``run`` (a killed task, a hand-over, a triggerer that
    stops): the wait calls ``on_kill`` itself then. 3.3 calls ``on_kill``, so the wait must not.
    """
    monkeypatch.setattr(trigger_module, "TRIGGERER_CALLS_ON_KILL", triggerer_calls_on_kill)
    if cancelled:
        async_stub.expected.append(("cancel_trained_model_inference_job", GET_JOB))
    _task_states(monkeypatch, {"r1": {"score": state}})
    waiting = asyncio.Event()

    async def wait_forever(self: Any) -> Any:
        waiting.set()
        await asyncio.Event().wait()
        yield  # pragma: no cover - an async generator that never yields

    monkeypatch.setattr(CleanRoomsMLBaseWaiterTrigger, "run", wait_forever)
    trigger = _deferred_trigger()

    async def cancel_while_waiting() -> None:
        task = asyncio.ensure_future(anext(aiter(trigger.run())))
        await waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_while_waiting())

    assert async_stub.called is cancelled


def test_on_kill_of_a_handed_over_trigger_does_not_cancel(async_stub, monkeypatch, capsys) -> None:
    """Airflow 3.3: a triggerer that stalled and recovered kills triggers another triggerer now runs."""
    _task_states(monkeypatch, {"r1": {"score": "deferred"}})

    asyncio.run(_deferred_trigger().on_kill())

    log = capsys.readouterr().out
    assert not async_stub.called
    assert "Trigger handed over: the task is still deferred and another triggerer waits on" in log


def test_on_kill_reads_a_mapped_task_instance_under_its_map_index(async_stub, monkeypatch) -> None:
    states = _task_states(monkeypatch, {"r1": {"score_3": "deferred", "score_4": "failed"}})

    asyncio.run(_deferred_trigger(map_index=3).on_kill())

    assert not async_stub.called  # score_3 is still deferred (score_4 is another task instance)
    assert states.asked[0]["map_index"] == 3


@pytest.mark.parametrize(
    "answer", [ConnectionError("api-server unreachable"), {"r1": {}}], ids=["lookup-fails", "not-found"]
)
def test_on_kill_does_not_cancel_when_the_task_state_is_unknown(
    async_stub, monkeypatch, capsys, answer
) -> None:
    _task_states(monkeypatch, answer)

    asyncio.run(_deferred_trigger().on_kill())

    log = capsys.readouterr().out
    assert not async_stub.called
    assert f"trained model inference job {JOB_ARN} is NOT cancelled" in log
    command = (
        "aws cleanroomsml cancel-trained-model-inference-job "
        f"--membership-identifier {MEMBERSHIP} --trained-model-inference-job-arn {JOB_ARN}"
    )
    assert command in log


def test_a_throttled_cancel_is_retried(async_stub, monkeypatch, capsys) -> None:
    """A run marked failed kills many waits at once: their cancel calls exceed the request rate."""
    monkeypatch.setattr(trigger_module, "CANCEL_FIRST_RETRY_SECONDS", 0.0)  # retry at once
    cancel = "cancel_trained_model_inference_job"
    async_stub.expected += [
        (cancel, "ThrottlingException"),
        (cancel, "ThrottlingException"),
        (cancel, GET_JOB),
    ]
    _task_states(monkeypatch, {"r1": {"score": "failed"}})

    asyncio.run(_deferred_trigger().on_kill())

    assert f"Cancel requested for trained model inference job {JOB_ARN}" in capsys.readouterr().out


def test_a_cancel_refused_for_good_is_not_retried_and_says_how_to_cancel(
    async_stub, monkeypatch, capsys
) -> None:
    async_stub.expected.append(("cancel_trained_model_inference_job", "AccessDeniedException"))
    _task_states(monkeypatch, {"r1": {"score": "failed"}})

    asyncio.run(_deferred_trigger().on_kill())

    log = capsys.readouterr().out
    assert f"Could not cancel trained model inference job {JOB_ARN}" in log
    assert "Cancel it with aws cleanroomsml cancel-trained-model-inference-job" in log
    assert "Cancel requested" not in log


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
