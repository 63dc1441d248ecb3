"""
Durable execution, try by try, against the emulator: never a second job, always the first one found.

Each test plays the tries of one task instance: what the first try left behind (a job, a stored ARN,
or nothing because the worker died right after the start call) and what the next try does with it.
The emulator's request log proves how many jobs were started.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cleanrooms.compat import TaskDeferred
from airflow_cleanrooms.exceptions import CleanRoomsMLRequestError
from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)
from airflow_cleanrooms.operators.request import build_request
from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY, task_instance_identity
from airflow_cleanrooms.service_model import RESERVED_TAG_KEY_PREFIX, service_model, shape_limits
from tests.reliability.durable_support import FakeTaskInstance, FakeTaskStateStore, make_context

MEMBERSHIP = "0f3e5c1a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
START = "StartTrainedModelInferenceJob"

pytestmark = pytest.mark.integration


InferenceOperator = CleanRoomsMLStartTrainedModelInferenceJobOperator
TrainedModelOperator = CleanRoomsMLCreateTrainedModelOperator


@pytest.fixture
def seeded(cleanrooms_emulator: Any) -> dict[str, str]:
    cleanrooms_emulator.control.set_timings(pending_seconds=0.1, running_seconds=0.4)
    return cleanrooms_emulator.control.seed_membership(MEMBERSHIP, trained_model=True)


def arguments(seeded: dict[str, str], name: str = "durable-job", **overrides: Any) -> dict[str, Any]:
    base = {
        "membership_identifier": MEMBERSHIP,
        "name": name,
        "trained_model_arn": seeded["trained_model_arn"],
        "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "output_configuration": {"members": [{"accountId": "111122223333"}]},
        "data_source": {"mlInputChannelArn": seeded["ml_input_channel_arn"]},
        "tags": {"team": "growth"},
    }
    base.update(overrides)
    return base


def operator(emulator: Any, seeded: dict[str, str], **kwargs: Any) -> Any:
    args = arguments(seeded, **kwargs.pop("arg_overrides", {}))
    kwargs.setdefault("waiter_delay", 0)
    return InferenceOperator(task_id="start_inference", aws_conn_id=emulator.conn_id, **args, **kwargs)


def starts(emulator: Any) -> list[dict[str, Any]]:
    return [r for r in emulator.control.requests(START) if r["status"] == 200]


def start_tagged_job(emulator: Any, seeded: dict[str, str], ti: FakeTaskInstance, name: str) -> str:
    """What try 1 did before its worker died: the start call went through, nothing was stored."""
    identity = task_instance_identity(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
    request = build_request(START, arguments(seeded, name=name))
    request["tags"] = {**request["tags"], IDENTITY_TAG_KEY: identity}
    return emulator.client().start_trained_model_inference_job(**request)["trainedModelInferenceJobArn"]


def status_of(emulator: Any, arn: str) -> str:
    response = emulator.client().get_trained_model_inference_job(
        membershipIdentifier=MEMBERSHIP, trainedModelInferenceJobArn=arn
    )
    return str(response["status"])


def test_identity_tag_fits_the_model() -> None:
    tag_map = service_model().shape_for("TagMap")
    value = task_instance_identity("d" * 250, "t" * 250, "r" * 250, 7)
    assert not IDENTITY_TAG_KEY.lower().startswith(RESERVED_TAG_KEY_PREFIX)
    assert len(IDENTITY_TAG_KEY) <= shape_limits(tag_map.key)[1]
    assert len(value) <= shape_limits(tag_map.value)[1]
    assert value != task_instance_identity("d" * 250, "t" * 250, "r" * 250, 8)
    assert task_instance_identity("d", "t", "r", None) == task_instance_identity("d", "t", "r", -1)


def test_first_try_starts_one_tagged_job_and_stores_it(cleanrooms_emulator: Any, seeded: dict) -> None:
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    arn = operator(cleanrooms_emulator, seeded).execute(make_context(ti, store))

    assert [r["params"]["name"] for r in starts(cleanrooms_emulator)] == ["durable-job"]
    assert store.values["cleanrooms_ml_job"]["arn"] == arn
    tags = cleanrooms_emulator.client().list_tags_for_resource(resourceArn=arn)["tags"]
    assert tags == {
        "team": "growth",
        IDENTITY_TAG_KEY: task_instance_identity(ti.dag_id, ti.task_id, ti.run_id, -1),
    }
    assert status_of(cleanrooms_emulator, arn) == "ACTIVE"


def test_retry_reconnects_to_the_stored_running_job(cleanrooms_emulator: Any, seeded: dict) -> None:
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    first = operator(cleanrooms_emulator, seeded, wait_for_completion=False).execute(make_context(ti, store))
    assert status_of(cleanrooms_emulator, first) != "ACTIVE"

    ti.try_number = 2
    second = operator(cleanrooms_emulator, seeded).execute(make_context(ti, store))

    assert second == first
    assert len(starts(cleanrooms_emulator)) == 1
    assert status_of(cleanrooms_emulator, first) == "ACTIVE"


def test_retry_after_the_job_turned_active_succeeds_without_a_new_job(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    first = operator(cleanrooms_emulator, seeded).execute(make_context(ti, store))
    cleanrooms_emulator.control.clear_requests()

    ti.try_number = 2
    assert operator(cleanrooms_emulator, seeded).execute(make_context(ti, store)) == first
    operations = [r["operation"] for r in cleanrooms_emulator.control.requests()]
    assert operations == ["GetTrainedModelInferenceJob"]


def test_retry_after_a_failed_job_starts_a_fresh_one(cleanrooms_emulator: Any, seeded: dict) -> None:
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    cleanrooms_emulator.control.fail_job("durable-job", "ModelError", "the container exited with 1")
    with pytest.raises(Exception, match="ModelError: the container exited with 1"):
        operator(cleanrooms_emulator, seeded).execute(make_context(ti, store))
    failed = store.values["cleanrooms_ml_job"]["arn"]

    ti.try_number = 2
    fresh = operator(cleanrooms_emulator, seeded, arg_overrides={"name": "durable-job-2"}).execute(
        make_context(ti, store)
    )
    assert fresh != failed
    assert len(starts(cleanrooms_emulator)) == 2
    assert store.values["cleanrooms_ml_job"]["arn"] == fresh


def test_crash_between_start_and_store_write_is_recovered_by_the_identity_tag(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    orphan = start_tagged_job(cleanrooms_emulator, seeded, ti, "durable-job")
    cleanrooms_emulator.control.clear_requests()

    ti.try_number = 2
    assert operator(cleanrooms_emulator, seeded).execute(make_context(ti, store)) == orphan
    assert starts(cleanrooms_emulator) == []
    assert store.values["cleanrooms_ml_job"]["arn"] == orphan
    assert cleanrooms_emulator.control.requests("ListTagsForResource")


def test_crash_window_after_a_failed_try_prefers_the_running_job(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    """Try 1's job failed (stored); try 2 started another and died before storing it; try 3 finds it."""
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    cleanrooms_emulator.control.fail_job("try-1", "ModelError", "boom")
    with pytest.raises(Exception, match="boom"):
        operator(cleanrooms_emulator, seeded, arg_overrides={"name": "try-1"}).execute(
            make_context(ti, store)
        )
    ti.try_number = 2
    orphan = start_tagged_job(cleanrooms_emulator, seeded, ti, "try-2")
    cleanrooms_emulator.control.clear_requests()

    ti.try_number = 3
    result = operator(cleanrooms_emulator, seeded, arg_overrides={"name": "try-3"}).execute(
        make_context(ti, store)
    )
    assert result == orphan
    assert starts(cleanrooms_emulator) == []


def test_other_task_instances_jobs_are_not_reused(cleanrooms_emulator: Any, seeded: dict) -> None:
    other = FakeTaskInstance(run_id="another-run")
    start_tagged_job(cleanrooms_emulator, seeded, other, "other-run-job")

    ti = FakeTaskInstance(try_number=2)
    arn = operator(cleanrooms_emulator, seeded).execute(make_context(ti, FakeTaskStateStore()))
    assert len(starts(cleanrooms_emulator)) == 2
    assert starts(cleanrooms_emulator)[-1]["params"]["name"] == "durable-job"
    assert status_of(cleanrooms_emulator, arn) == "ACTIVE"


def test_name_of_a_running_job_of_another_task_fails_before_any_start(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    cleanrooms_emulator.control.set_timings(running_seconds=30)
    other = FakeTaskInstance(task_id="another_task")
    taken = start_tagged_job(cleanrooms_emulator, seeded, other, "shared-name")
    cleanrooms_emulator.control.clear_requests()

    op = operator(cleanrooms_emulator, seeded, arg_overrides={"name": "shared-name"})
    with pytest.raises(CleanRoomsMLRequestError) as raised:
        op.execute(make_context(FakeTaskInstance(), FakeTaskStateStore()))
    assert raised.value.issues[0].path == "name"
    assert taken in str(raised.value)
    assert "another task instance" in str(raised.value)
    assert cleanrooms_emulator.control.requests(START) == []


def test_durable_false_starts_a_new_job_on_every_try(cleanrooms_emulator: Any, seeded: dict) -> None:
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    first = operator(cleanrooms_emulator, seeded, durable=False).execute(make_context(ti, store))
    ti.try_number = 2
    second = operator(cleanrooms_emulator, seeded, durable=False).execute(make_context(ti, store))

    assert first != second
    assert len(starts(cleanrooms_emulator)) == 2
    assert store.values == {}
    tags = cleanrooms_emulator.client().list_tags_for_resource(resourceArn=second)["tags"]
    assert IDENTITY_TAG_KEY not in tags


def test_deferrable_retry_defers_on_the_job_found_by_tag(cleanrooms_emulator: Any, seeded: dict) -> None:
    cleanrooms_emulator.control.set_timings(running_seconds=30)
    ti = FakeTaskInstance()
    orphan = start_tagged_job(cleanrooms_emulator, seeded, ti, "durable-job")

    ti.try_number = 2
    store = FakeTaskStateStore()
    with pytest.raises(TaskDeferred) as deferred:
        operator(cleanrooms_emulator, seeded, deferrable=True).execute(make_context(ti, store))
    assert deferred.value.trigger.arn == orphan
    assert store.values["cleanrooms_ml_job"]["arn"] == orphan
    assert len(starts(cleanrooms_emulator)) == 1

    # The next try reads the store first and defers on the same job without any listing.
    ti.try_number = 3
    cleanrooms_emulator.control.clear_requests()
    with pytest.raises(TaskDeferred) as again:
        operator(cleanrooms_emulator, seeded, deferrable=True).execute(make_context(ti, store))
    assert again.value.trigger.arn == orphan
    assert [r["operation"] for r in cleanrooms_emulator.control.requests()] == ["GetTrainedModelInferenceJob"]


def test_without_task_state_store_the_tag_lookup_still_reconnects(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    """Airflow < 3.3 (no task_state_store in the context): the identity tag is the only memory."""
    ti = FakeTaskInstance()
    cleanrooms_emulator.control.set_timings(running_seconds=1.0)
    first = operator(cleanrooms_emulator, seeded, wait_for_completion=False).execute(make_context(ti, None))
    ti.try_number = 2
    assert operator(cleanrooms_emulator, seeded).execute(make_context(ti, None)) == first
    assert len(starts(cleanrooms_emulator)) == 1


def model_arguments(seeded: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "membership_identifier": MEMBERSHIP,
        "name": name,
        "configured_model_algorithm_association_arn": seeded["configured_model_algorithm_association_arn"],
        "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 10},
        "data_channels": [{"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}],
    }


def test_trained_model_crash_window_reuses_the_model_and_its_version(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    cleanrooms_emulator.control.set_timings(training_seconds=0.5)
    ti = FakeTaskInstance(task_id="create_trained_model")
    request = build_request("CreateTrainedModel", model_arguments(seeded, "durable-model"))
    request["tags"] = {IDENTITY_TAG_KEY: task_instance_identity(ti.dag_id, ti.task_id, ti.run_id, -1)}
    created = cleanrooms_emulator.client().create_trained_model(**request)

    ti.try_number = 2
    # A poll a second outlasts the 0.5 s training whatever the machine's speed (waiter_delay=0 spent
    # its attempts in a burst that could end before the emulator's clock moved the model on).
    op = TrainedModelOperator(
        task_id="create_trained_model",
        aws_conn_id=cleanrooms_emulator.conn_id,
        waiter_delay=1,
        **model_arguments(seeded, "durable-model"),
    )
    assert op.execute(make_context(ti, FakeTaskStateStore())) == created["trainedModelArn"]
    assert ti.xcoms["trained_model_version_identifier"] == created["versionIdentifier"]
    assert [r for r in cleanrooms_emulator.control.requests("CreateTrainedModel") if r["status"] == 200] == [
        r for r in cleanrooms_emulator.control.requests("CreateTrainedModel") if r["status"] == 200
    ][:1]


def test_deferrable_retry_finding_its_job_active_succeeds_without_deferring(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    ti = FakeTaskInstance()
    orphan = start_tagged_job(cleanrooms_emulator, seeded, ti, "durable-job")
    cleanrooms_emulator.control.force_status(orphan, "ACTIVE")

    ti.try_number = 2
    result = operator(cleanrooms_emulator, seeded, deferrable=True).execute(
        make_context(ti, FakeTaskStateStore())
    )
    assert result == orphan
    assert len(starts(cleanrooms_emulator)) == 1


def test_a_start_whose_answer_was_lost_continues_with_the_job_it_created(
    cleanrooms_emulator: Any, seeded: dict
) -> None:
    """
    The emulator creates the job, then answers too late: the client times out.

    botocore's own retry would now send the start again and, once the first job is no longer in
    flight, start a second one (the API has no idempotency token). The durable start makes single
    attempts and looks the job up by its identity tag after an ambiguous failure instead.
    """
    cleanrooms_emulator.control.set_faults(operations=[START], latency_seconds=1.0)
    ti, store = FakeTaskInstance(), FakeTaskStateStore()
    op = operator(
        cleanrooms_emulator,
        seeded,
        botocore_config={"read_timeout": 0.4, "retries": {"mode": "standard", "total_max_attempts": 2}},
    )
    arn = op.execute(make_context(ti, store))

    assert len(cleanrooms_emulator.control.requests(START)) == 1
    jobs = cleanrooms_emulator.client().list_trained_model_inference_jobs(membershipIdentifier=MEMBERSHIP)
    assert [j["trainedModelInferenceJobArn"] for j in jobs["trainedModelInferenceJobs"]] == [arn]
    assert store.values["cleanrooms_ml_job"]["arn"] == arn


@pytest.mark.parametrize("fault", ["throttle_next", "error_next", "drop_next"])
def test_start_refused_by_transient_faults_is_retried_and_starts_one_job(
    cleanrooms_emulator: Any, seeded: dict, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_cleanrooms.hooks.cleanrooms_ml as hook_module

    monkeypatch.setattr(hook_module, "start_backoff", lambda retry: 0.01)
    cleanrooms_emulator.control.set_faults(operations=[START], **{fault: 3})
    arn = operator(cleanrooms_emulator, seeded).execute(
        make_context(FakeTaskInstance(), FakeTaskStateStore())
    )

    attempts = cleanrooms_emulator.control.requests(START)
    assert len(attempts) == 4 and attempts[-1]["status"] == 200
    jobs = cleanrooms_emulator.client().list_trained_model_inference_jobs(membershipIdentifier=MEMBERSHIP)
    assert [j["trainedModelInferenceJobArn"] for j in jobs["trainedModelInferenceJobs"]] == [arn]


def test_durable_is_on_by_default_and_default_args_can_turn_it_off() -> None:
    from datetime import datetime

    from airflow.sdk import DAG

    assert InferenceOperator(task_id="a").durable is True
    with DAG(
        "durable_defaults", schedule=None, start_date=datetime(2024, 1, 1), default_args={"durable": False}
    ):
        inference = InferenceOperator(task_id="inference")
        training = TrainedModelOperator(task_id="training")
        explicit = InferenceOperator(task_id="explicit", durable=True)
    assert (inference.durable, training.durable, explicit.durable) == (False, False, True)
