"""
Durable execution (CleanRoomsMLDurableMixin in operators/start.py, and the hook's lookup) against
botocore's Stubber.

Each test queues exactly the calls the decision should make; the Stubber fails the test on any
other call (a second start included) and on any queued call left unmade.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cleanrooms.compat import TaskDeferred
from airflow_cleanrooms.exceptions import CleanRoomsMLRequestError
from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY, context_identity, task_instance_identity
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL_INFERENCE_JOB
from tests.unit.unit_support import (
    ACCOUNT,
    CREATED,
    GET_JOB,
    INFERENCE_REQUEST,
    JOB_ARN,
    MEMBERSHIP,
    MODEL_ARN,
    FakeTaskInstance,
    expect_durable_start,
    job_response,
    make_operator,
)

LIST = "list_trained_model_inference_jobs"
LIST_REQUEST = {"membershipIdentifier": MEMBERSHIP, "maxResults": TRAINED_MODEL_INFERENCE_JOB.list_page_size}
OTHER_ARN = JOB_ARN.replace("job-1", "job-0")


def make(**overrides: Any) -> CleanRoomsMLStartTrainedModelInferenceJobOperator:
    return make_operator(CleanRoomsMLStartTrainedModelInferenceJobOperator, **overrides)


def summary(arn: str, status: str, name: str = "churn-scores", model: str = MODEL_ARN) -> dict[str, Any]:
    """A ListTrainedModelInferenceJobs summary that satisfies the model."""
    return {
        "trainedModelInferenceJobArn": arn,
        "membershipIdentifier": MEMBERSHIP,
        "trainedModelArn": model,
        "collaborationIdentifier": "99999999-2222-3333-4444-555555555555",
        "status": status,
        "outputConfiguration": {"members": [{"accountId": ACCOUNT}]},
        "name": name,
        "createTime": CREATED,
        "updateTime": CREATED,
    }


def expect_tags(stubber: Any, arn: str, tags: dict[str, str]) -> None:
    stubber.add_response("list_tags_for_resource", {"tags": tags}, {"resourceArn": arn})


def test_identity_is_the_task_instance_key_hashed() -> None:
    ti = FakeTaskInstance("task")
    assert context_identity({"ti": ti}) == task_instance_identity(ti.dag_id, "task", ti.run_id, -1)
    assert context_identity({"ti": ti}) != task_instance_identity(ti.dag_id, "task", ti.run_id, 0)
    assert context_identity({}) is None


def test_a_running_job_of_this_task_instance_is_reconnected_not_started_again(stub_for, context, ti) -> None:
    op = make()
    stubber = stub_for(op)
    stubber.add_response(
        LIST, {"trainedModelInferenceJobs": [summary(JOB_ARN, "CREATE_IN_PROGRESS")]}, LIST_REQUEST
    )
    expect_tags(stubber, JOB_ARN, {IDENTITY_TAG_KEY: ti.identity})
    stubber.add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
    assert op.execute(context) == JOB_ARN
    assert ti.xcoms["trained_model_inference_job_arn"] == JOB_ARN


def test_the_name_of_another_task_instances_running_job_fails_before_any_start(stub_for, context) -> None:
    op = make()
    stubber = stub_for(op)
    stubber.add_response(
        LIST, {"trainedModelInferenceJobs": [summary(OTHER_ARN, "CREATE_PENDING")]}, LIST_REQUEST
    )
    expect_tags(stubber, OTHER_ARN, {IDENTITY_TAG_KEY: "someone-else"})
    with pytest.raises(CleanRoomsMLRequestError, match=r"name.*another task instance.*run_id"):
        op.execute(context)


def test_a_finished_job_with_the_same_name_is_no_collision(stub_for, context) -> None:
    op = make(wait_for_completion=False)
    stubber = stub_for(op)
    expect_durable_start(
        stubber,
        context["ti"],
        INFERENCE_REQUEST,
        {"trainedModelInferenceJobArn": JOB_ARN},
        listed=[summary(OTHER_ARN, "CREATE_FAILED")],
    )
    assert op.execute(context) == JOB_ARN


def test_a_retry_finds_its_active_job_under_another_name_and_succeeds_without_a_call_more(
    stub_for, context
) -> None:
    ti = FakeTaskInstance("task", try_number=2)
    context = {"ti": ti}
    op = make()
    stubber = stub_for(op)
    listed = [
        summary(OTHER_ARN, "ACTIVE", name="other-model-job", model=MODEL_ARN.replace("model-1", "model-2")),
        summary(JOB_ARN, "ACTIVE", name="churn-scores-rendered-differently"),
    ]
    stubber.add_response(LIST, {"trainedModelInferenceJobs": listed}, LIST_REQUEST)
    # The job of another model is skipped without a tag lookup; this one carries the identity.
    expect_tags(stubber, JOB_ARN, {IDENTITY_TAG_KEY: ti.identity})
    assert op.execute(context) == JOB_ARN


def test_durable_false_adds_no_tag_and_claims_no_job(stub_for, context, ti) -> None:
    op = make(durable=False, wait_for_completion=False)
    stubber = stub_for(op)
    stubber.add_response(LIST, {"trainedModelInferenceJobs": []}, LIST_REQUEST)
    stubber.add_response(
        "start_trained_model_inference_job", {"trainedModelInferenceJobArn": JOB_ARN}, INFERENCE_REQUEST
    )
    assert op.execute(context) == JOB_ARN


def test_without_permission_to_list_the_job_is_started_with_a_warning(stub_for, context, ti, capsys) -> None:
    op = make(wait_for_completion=False)
    stubber = stub_for(op)
    stubber.add_client_error(LIST, "AccessDeniedException", "no", 403, expected_params=LIST_REQUEST)
    tagged = {**INFERENCE_REQUEST, "tags": {IDENTITY_TAG_KEY: ti.identity}}
    stubber.add_response(
        "start_trained_model_inference_job", {"trainedModelInferenceJobArn": JOB_ARN}, tagged
    )
    assert op.execute(context) == JOB_ARN
    assert "Grant ListTrainedModelInferenceJobs" in capsys.readouterr().out


def test_a_start_whose_answer_was_lost_continues_with_the_job_it_started(stub_for, context, ti) -> None:
    op = make(wait_for_completion=False)
    stubber = stub_for(op)
    tagged = {**INFERENCE_REQUEST, "tags": {IDENTITY_TAG_KEY: ti.identity}}
    stubber.add_response(LIST, {"trainedModelInferenceJobs": []}, LIST_REQUEST)
    stubber.add_client_error(
        "start_trained_model_inference_job", "InternalServiceException", "lost", 500, expected_params=tagged
    )
    # The lookup after the ambiguous failure finds the job the lost attempt created: no second start.
    stubber.add_response(
        LIST, {"trainedModelInferenceJobs": [summary(JOB_ARN, "CREATE_PENDING")]}, LIST_REQUEST
    )
    expect_tags(stubber, JOB_ARN, {IDENTITY_TAG_KEY: ti.identity})
    assert op.execute(context) == JOB_ARN
    assert ti.xcoms["trained_model_inference_job_arn"] == JOB_ARN


def test_a_refused_start_is_raised_without_a_lookup(stub_for, context, ti) -> None:
    op = make(wait_for_completion=False)
    stubber = stub_for(op)
    tagged = {**INFERENCE_REQUEST, "tags": {IDENTITY_TAG_KEY: ti.identity}}
    stubber.add_response(LIST, {"trainedModelInferenceJobs": []}, LIST_REQUEST)
    stubber.add_client_error(
        "start_trained_model_inference_job", "ValidationException", "bad", 400, expected_params=tagged
    )
    with pytest.raises(Exception, match="ValidationException"):
        op.execute(context)


class _Store:
    def __init__(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


@pytest.mark.skipif(
    not __import__("airflow_cleanrooms.operators.start", fromlist=["x"]).AIRFLOW_V_3_3_PLUS,
    reason="the task state store arrived in Airflow 3.3",
)
class TestTaskStateStore:
    def test_deferrable_retry_defers_on_the_stored_running_job_without_a_lookup(self, stub_for, ti) -> None:
        store = _Store(cleanrooms_ml_job={"arn": JOB_ARN, "version": None})
        op = make(deferrable=True)
        stub_for(op).add_response(
            "get_trained_model_inference_job", job_response("CREATE_IN_PROGRESS"), GET_JOB
        )
        with pytest.raises(TaskDeferred) as deferred:
            op.execute({"ti": ti, "task_state_store": store})
        assert deferred.value.trigger.serialize()[1]["trained_model_inference_job_arn"] == JOB_ARN

    def test_a_fresh_start_is_stored(self, stub_for, ti) -> None:
        store = _Store()
        op = make(deferrable=True)
        expect_durable_start(stub_for(op), ti, INFERENCE_REQUEST, {"trainedModelInferenceJobArn": JOB_ARN})
        with pytest.raises(TaskDeferred):
            op.execute({"ti": ti, "task_state_store": store})
        assert store.values["cleanrooms_ml_job"] == {"arn": JOB_ARN, "version": None}

    def test_sync_retry_of_a_stored_active_job_succeeds_without_a_new_job(self, stub_for, ti) -> None:
        store = _Store(cleanrooms_ml_job={"arn": JOB_ARN, "version": None})
        op = make()
        stub_for(op).add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
        assert op.execute({"ti": ti, "task_state_store": store}) == JOB_ARN
