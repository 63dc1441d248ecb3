"""
Quota-aware starts (CleanRoomsMLQuotaWaitMixin in operators/start.py, and CleanRoomsMLJobQuotaSlotTrigger)
against botocore's Stubber.

A refused start answers ``ServiceQuotaExceededException`` as the service does (402, ``quotaName``,
``quotaValue``). Each test queues exactly the calls the operator should make, so a second start, a
missing count or a start after giving up fails the test. Time is a fake clock that ``time.sleep``
advances.
"""

from __future__ import annotations

import importlib
import random
import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_cleanrooms.compat import TaskDeferred
from airflow_cleanrooms.exceptions import CleanRoomsMLQuotaUnreachableError, CleanRoomsMLQuotaWaitTimeoutError
from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)
from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLJobQuotaSlotTrigger,
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
)
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL, TRAINED_MODEL_INFERENCE_JOB
from tests.unit.unit_support import (
    ACCOUNT,
    CREATED,
    INFERENCE_REQUEST,
    JOB_ARN,
    MEMBERSHIP,
    MODEL_ARN,
    QUOTA_ERROR_MEMBERS,
    TRAINING_ARGS,
    VERSION,
    FakeTaskInstance,
    make_operator,
    needs_quota_value,
)

# botocore 1.37 (Airflow 3.0's pins) models ServiceQuotaExceededException with ``message`` only: the
# quota's name and value these tests read and assert on are not in the answer there.
pytestmark = pytest.mark.skipif(
    not {"quotaName", "quotaValue"} <= QUOTA_ERROR_MEMBERS,
    reason="the installed botocore's ServiceQuotaExceededException has no quotaName/quotaValue members",
)


LIST = "list_trained_model_inference_jobs"
START = "start_trained_model_inference_job"
LIST_REQUEST = {"membershipIdentifier": MEMBERSHIP, "maxResults": TRAINED_MODEL_INFERENCE_JOB.list_page_size}
MEMBERSHIP_QUOTA = "Pending/in progress custom model inference jobs per membership"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake clock: ``time.time()`` reads it and ``time.sleep(s)`` advances it; the sleeps are recorded."""
    now = [1_000_000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(time, "sleep", sleep)
    return slept


def make(cls: type = CleanRoomsMLStartTrainedModelInferenceJobOperator, **overrides: Any) -> Any:
    return make_operator(cls, **{"wait_for_completion": False, "quota_poll_interval": 30, **overrides})


def summary(index: int, status: str) -> dict[str, Any]:
    return {
        "trainedModelInferenceJobArn": JOB_ARN.replace("job-1", f"other-{index}"),
        "membershipIdentifier": MEMBERSHIP,
        "trainedModelArn": MODEL_ARN,
        "collaborationIdentifier": "99999999-2222-3333-4444-555555555555",
        "status": status,
        "outputConfiguration": {"members": [{"accountId": ACCOUNT}]},
        "name": f"other-{index}",
        "createTime": CREATED,
        "updateTime": CREATED,
    }


def holding(n: int, done: int = 0) -> dict[str, Any]:
    """A listing with ``n`` jobs holding the membership's slots and ``done`` finished ones."""
    jobs = [summary(i, "CREATE_IN_PROGRESS" if i % 2 else "CREATE_PENDING") for i in range(n)]
    jobs += [summary(n + i, "ACTIVE") for i in range(done)]
    return {"trainedModelInferenceJobs": jobs}


def refuse(stubber: Any, operation: str, params: dict[str, Any], value: float = 5.0, name: str = "") -> None:
    stubber.add_client_error(
        operation,
        "ServiceQuotaExceededException",
        "You have exceeded your service quota",
        402,
        expected_params=params,
        modeled_fields={
            member: given
            for member, given in {
                "message": "You have exceeded your service quota",
                "quotaName": name or MEMBERSHIP_QUOTA,
                "quotaValue": value,
            }.items()
            if member in QUOTA_ERROR_MEMBERS  # botocore 1.37's shape has only ``message``
        },
    )


def tagged(ti: FakeTaskInstance, request: dict[str, Any] = INFERENCE_REQUEST) -> dict[str, Any]:
    return {**request, "tags": {IDENTITY_TAG_KEY: ti.identity}}


# ---- sync: the wait runs in the worker ---------------------------------------------------------


def test_sync_refused_start_waits_for_a_slot_then_starts(stub_for, context, ti, clock, capsys) -> None:
    op = make()
    stubber = stub_for(op)
    stubber.add_response(LIST, holding(0), LIST_REQUEST)  # durable lookup: nothing of this task yet
    refuse(stubber, START, tagged(ti))
    stubber.add_response(LIST, holding(5, done=2), LIST_REQUEST)  # the count for the log
    refuse(stubber, START, tagged(ti))
    stubber.add_response(LIST, holding(5), LIST_REQUEST)
    stubber.add_response(START, {"trainedModelInferenceJobArn": JOB_ARN}, tagged(ti))

    assert op.execute(context) == JOB_ARN

    assert ti.xcoms["trained_model_inference_job_arn"] == JOB_ARN
    assert len(clock) == 2
    assert all(15 <= seconds <= 30 for seconds in clock), clock  # jittered within the interval's second half
    waits = [line for line in capsys.readouterr().out.splitlines() if "refused by the service quota" in line]
    assert len(waits) == 2
    assert MEMBERSHIP_QUOTA in waits[0] and "quota value 5" in waits[0]
    assert "5 trained model inference jobs are pending or in progress" in waits[0]


def test_sync_wait_gives_up_after_the_bound_naming_the_quota(
    stub_for, context, ti, clock, monkeypatch
) -> None:
    import airflow_cleanrooms.operators.start as start_module

    monkeypatch.setattr(start_module._RNG, "uniform", lambda _low, high: high)  # every wait a full interval
    op = make(quota_wait_timeout="70")  # as rendered from a template
    stubber = stub_for(op)
    stubber.add_response(LIST, holding(0), LIST_REQUEST)
    # Refused at t=0, 30, 60 and, the last wait capped at the bound, at t=70: then the task gives up.
    for _ in range(3):
        refuse(stubber, START, tagged(ti))
        stubber.add_response(LIST, holding(5), LIST_REQUEST)
    refuse(stubber, START, tagged(ti))
    with pytest.raises(CleanRoomsMLQuotaWaitTimeoutError, match=MEMBERSHIP_QUOTA.replace("/", ".")) as raised:
        op.execute(context)
    assert "quota_wait_timeout=1m10s" in str(raised.value)
    assert "no trained model inference job was started" in str(raised.value)
    assert clock == [30, 30, 10]


@needs_quota_value
@pytest.mark.parametrize("value", [0.0, 0.5])
def test_a_quota_below_one_fails_at_once(stub_for, context, ti, clock, value) -> None:
    op = make()
    stubber = stub_for(op)
    stubber.add_response(LIST, holding(0), LIST_REQUEST)
    refuse(
        stubber,
        START,
        tagged(ti),
        value=value,
        name="Pending/in progress custom model inference jobs per account",
    )
    with pytest.raises(CleanRoomsMLQuotaUnreachableError, match="per account") as raised:
        op.execute(context)
    assert "below 1" in str(raised.value)
    assert clock == []  # no wait at all


def test_timedelta_bound_and_zero_bound(stub_for, context, ti, clock) -> None:
    op = make(quota_wait_timeout=timedelta(0))
    stubber = stub_for(op)
    stubber.add_response(LIST, holding(0), LIST_REQUEST)
    refuse(stubber, START, tagged(ti))
    with pytest.raises(CleanRoomsMLQuotaWaitTimeoutError):
        op.execute(context)
    assert clock == []


def test_training_operator_waits_too(stub_for, context, ti, clock) -> None:
    op = make(CleanRoomsMLCreateTrainedModelOperator)
    stubber = stub_for(op)
    list_request = {"membershipIdentifier": MEMBERSHIP, "maxResults": TRAINED_MODEL.list_page_size}
    request = {
        "membershipIdentifier": MEMBERSHIP,
        "name": "churn-model",
        "configuredModelAlgorithmAssociationArn": TRAINING_ARGS["configured_model_algorithm_association_arn"],
        "resourceConfig": TRAINING_ARGS["resource_config"],
        "dataChannels": TRAINING_ARGS["data_channels"],
        "tags": {IDENTITY_TAG_KEY: ti.identity},
    }
    stubber.add_response("list_trained_models", {"trainedModels": []}, list_request)
    refuse(
        stubber,
        "create_trained_model",
        request,
        name="Pending/in progress custom model training jobs per membership",
    )
    stubber.add_response("list_trained_models", {"trainedModels": []}, list_request)
    stubber.add_response(
        "create_trained_model", {"trainedModelArn": MODEL_ARN, "versionIdentifier": VERSION}, request
    )
    assert op.execute(context) == MODEL_ARN
    assert len(clock) == 1


def test_other_errors_are_not_waited_on(stub_for, context, ti, clock) -> None:
    op = make()
    stubber = stub_for(op)
    stubber.add_response(LIST, holding(0), LIST_REQUEST)
    stubber.add_client_error(START, "AccessDeniedException", "no", 403, expected_params=tagged(ti))
    with pytest.raises(Exception, match="AccessDenied"):
        op.execute(context)
    assert clock == []


# ---- deferrable: the wait runs in the triggerer ------------------------------------------------


def test_deferrable_refusal_defers_to_the_quota_trigger_then_starts(stub_for, ti, clock) -> None:
    op = make(deferrable=True, wait_for_completion=True, quota_wait_timeout=3600)
    stubber = stub_for(op)
    stubber.add_response(LIST, holding(0), LIST_REQUEST)
    refuse(stubber, START, tagged(ti))
    stubber.add_response(LIST, holding(5), LIST_REQUEST)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    trigger = deferred.value.trigger
    assert isinstance(trigger, CleanRoomsMLJobQuotaSlotTrigger)
    assert deferred.value.method_name == "execute_after_quota_wait"
    started = deferred.value.kwargs["quota_wait_started"]
    assert trigger.deadline == started + 3600
    assert (trigger.quota_name, trigger.quota_value) == (MEMBERSHIP_QUOTA, 5.0)
    assert trigger.waiter_args == LIST_REQUEST
    assert trigger.max_requests_per_second == op.max_requests_per_second  # the triggerer's shared limiter
    assert clock == []  # nothing slept in the worker

    # The trigger fired: a fresh task process resumes at its start call (no second lookup: nothing
    # was started since the first), starts, then defers on the completion trigger.
    clock_before = time.time()
    resumed = make(deferrable=True, wait_for_completion=True, quota_wait_timeout=3600)
    stubber = stub_for(resumed)
    stubber.add_response(START, {"trainedModelInferenceJobArn": JOB_ARN}, tagged(ti))
    with pytest.raises(TaskDeferred) as deferred:
        resumed.execute_after_quota_wait(
            {"ti": ti}, event={"status": "success", "pending_jobs": 4}, quota_wait_started=started
        )
    assert isinstance(deferred.value.trigger, CleanRoomsMLTrainedModelInferenceJobCompleteTrigger)
    assert ti.xcoms["trained_model_inference_job_arn"] == JOB_ARN
    assert time.time() == clock_before


def test_deferrable_bound_is_counted_across_deferrals(stub_for, ti, clock) -> None:
    op = make(deferrable=True, quota_wait_timeout=600)
    stubber = stub_for(op)
    refuse(stubber, START, tagged(ti))  # resumed at the start call: no lookup first
    # The first refusal was 601 s ago (carried in the deferral's kwargs): this refusal ends the wait.
    with pytest.raises(CleanRoomsMLQuotaWaitTimeoutError, match="10m01s"):
        op.execute_after_quota_wait(
            {"ti": ti}, event={"status": "success"}, quota_wait_started=time.time() - 601
        )


def test_a_resumed_task_refused_again_defers_again_without_listing(stub_for, ti, clock, capsys) -> None:
    op = make(deferrable=True, quota_wait_timeout=3600)
    stubber = stub_for(op)
    refuse(stubber, START, tagged(ti))  # the only call: no lookup, and no listing for the log
    event = {"status": "success", "pending_jobs": 5, "quota_name": MEMBERSHIP_QUOTA, "quota_value": 5.0}
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_after_quota_wait({"ti": ti}, event=event, quota_wait_started=time.time() - 60)
    assert isinstance(deferred.value.trigger, CleanRoomsMLJobQuotaSlotTrigger)
    assert "5 trained model inference jobs are pending or in progress" in capsys.readouterr().out


def test_a_task_retried_after_a_start_during_its_wait_finds_that_job(stub_for, ti, clock) -> None:
    """Durable: try 1 was killed right after its start call got through (after a quota wait)."""
    retry = FakeTaskInstance(try_number=2)
    own = {**summary(9, "CREATE_IN_PROGRESS"), "name": "churn-scores", "trainedModelInferenceJobArn": JOB_ARN}
    op = make(deferrable=True)
    stubber = stub_for(op)
    stubber.add_response(LIST, {"trainedModelInferenceJobs": [own]}, LIST_REQUEST)
    stubber.add_response(
        "list_tags_for_resource", {"tags": {IDENTITY_TAG_KEY: retry.identity}}, {"resourceArn": JOB_ARN}
    )
    # No start call queued: a second job would fail the test.
    assert op.execute({"ti": retry}) == JOB_ARN


# ---- the trigger -------------------------------------------------------------------------------


def quota_trigger(**overrides: Any) -> CleanRoomsMLJobQuotaSlotTrigger:
    arguments: dict[str, Any] = {
        "resource": "trained_model_inference_job_arn",
        "membership_identifier": MEMBERSHIP,
        "quota_name": MEMBERSHIP_QUOTA,
        "quota_value": 5.0,
        "deadline": time.time() + 3600,
        "poll_interval": 60,
        "aws_conn_id": "my_aws",
        "region_name": "eu-west-1",
    }
    arguments.update(overrides)
    return CleanRoomsMLJobQuotaSlotTrigger(**arguments)


def test_quota_trigger_serialization_round_trip() -> None:
    trigger = quota_trigger(poll_interval=2.5)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.check_interval == 2.5
    assert rebuilt.kind is TRAINED_MODEL_INFERENCE_JOB


def test_quota_trigger_fires_only_when_a_slot_is_free(clock) -> None:
    trigger = quota_trigger()
    waiting = trigger._check(holding(5, done=3))
    assert isinstance(waiting, float) and 30 <= waiting <= 60
    fired = trigger._check(holding(4, done=3))
    assert fired.result.payload == {  # type: ignore[union-attr]
        "status": "success",
        "pending_jobs": 4,
        "quota_name": MEMBERSHIP_QUOTA,
        "quota_value": 5.0,
    }


def test_quota_trigger_fires_at_the_deadline_and_on_a_failed_listing(clock) -> None:
    transient = quota_trigger()._check(OSError("connection reset"))
    assert isinstance(transient, float)  # a passing fault or throttling: check again later
    trigger = quota_trigger(deadline=time.time() + 10)
    assert trigger.check_delay() <= 10
    time.sleep(10)
    assert trigger._check(holding(5)).result.payload["pending_jobs"] == 5  # type: ignore[union-attr]
    assert trigger._check(ValueError("not a listing")).result.payload["pending_jobs"] is None  # type: ignore[union-attr]


def test_first_checks_of_triggers_deferred_together_are_spread_over_the_second_half(monkeypatch) -> None:
    import airflow_cleanrooms.triggers.cleanrooms_ml as triggers_module

    # A seeded generator: twelve distinct draws every run (unseeded, two may round alike now and then).
    monkeypatch.setattr(triggers_module, "_RNG", random.Random(20261206))
    delays = [quota_trigger().check_delay() for _ in range(12)]
    assert all(30 <= d <= 60 for d in delays)
    assert len({round(d, 3) for d in delays}) == 12
