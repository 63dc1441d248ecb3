"""The emulator's CloudWatch Logs (moto's logs backend) and its simulated model container."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_cleanrooms.emulator.logs import LOG_GROUPS
from airflow_cleanrooms.emulator.resources import INFERENCE_JOB, TRAINED_MODEL

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle

INFERENCE_GROUP = LOG_GROUPS[INFERENCE_JOB]
TRAINING_GROUP = LOG_GROUPS[TRAINED_MODEL]


def _events(logs: Any, group: str, job_arn: str) -> list[str]:
    prefix = job_arn.rsplit("/", 1)[-1]
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=prefix)["logStreams"]
    messages: list[str] = []
    for stream in streams:
        response = logs.get_log_events(
            logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
        )
        messages += [event["message"] for event in response["events"]]
    return messages


def _job(client: Any, seeded: dict[str, str], arn: str) -> dict[str, Any]:
    return client.get_trained_model_inference_job(  # type: ignore[no-any-return]
        membershipIdentifier=seeded["membership_id"], trainedModelInferenceJobArn=arn
    )


def test_a_failing_job_writes_its_error_line_and_reports_publishing(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str], make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    control.fail_job("bad-scoring", "AlgorithmError", "division by zero in score()")
    arn = client.start_trained_model_inference_job(**make_inference_request(name="bad-scoring"))[
        "trainedModelInferenceJobArn"
    ]
    logs = cleanrooms_emulator.client("logs")
    assert "logsStatus" not in _job(client, seeded, arn)  # the container has not started yet
    control.advance_clock(60)
    job = _job(client, seeded, arn)
    assert job["status"] == "CREATE_FAILED"
    assert job["logsStatus"] == "PUBLISH_SUCCEEDED"
    messages = _events(logs, INFERENCE_GROUP, arn)
    assert messages[0].startswith("Starting inference container for 'bad-scoring'")
    assert "ERROR AlgorithmError: division by zero in score()" in messages
    assert messages[-1] == "Container exited with code 1"
    assert _events(logs, INFERENCE_GROUP, arn) == messages  # each line written once
    assert [r["operation"] for r in control.requests("GetLogEvents")] == ["GetLogEvents"] * 2


def test_lines_appear_as_the_job_runs(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str], make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    control.set_timings(pending_seconds=10, running_seconds=100)
    arn = client.start_trained_model_inference_job(**make_inference_request(name="slow"))[
        "trainedModelInferenceJobArn"
    ]
    logs = cleanrooms_emulator.client("logs")
    control.advance_clock(20)  # 10 s into CREATE_IN_PROGRESS: the first lines only
    first = _events(logs, INFERENCE_GROUP, arn)
    assert first and not any("Exiting" in m for m in first)
    control.advance_clock(200)
    assert _events(logs, INFERENCE_GROUP, arn)[-1].endswith("Exiting with code 0")


def test_an_association_without_a_logs_policy_publishes_nothing(
    cleanrooms_emulator: EmulatorHandle, client: Any, membership: str, make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    seeded = control.seed_membership(membership, trained_model=True, container_logs=False)
    request = make_inference_request(name="quiet")
    request.update(trainedModelArn=seeded["trained_model_arn"])
    request["dataSource"] = {"mlInputChannelArn": seeded["ml_input_channel_arn"]}
    arn = client.start_trained_model_inference_job(**request)["trainedModelInferenceJobArn"]
    control.advance_clock(60)
    job = _job(client, seeded, arn)
    assert job["logsStatus"] == "PUBLISH_FAILED"
    assert "trainedModelInferenceJobs.containerLogs is not set" in job["logsStatusDetails"]
    logs = cleanrooms_emulator.client("logs")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        _events(logs, INFERENCE_GROUP, arn)


def test_an_account_outside_allowed_account_ids_gets_publish_failed(
    cleanrooms_emulator: EmulatorHandle, client: Any, membership: str, make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    seeded = control.seed_membership(membership, trained_model=True, container_logs=["999999999999"])
    request = make_inference_request(name="elsewhere", trainedModelArn=seeded["trained_model_arn"])
    request["dataSource"] = {"mlInputChannelArn": seeded["ml_input_channel_arn"]}
    arn = client.start_trained_model_inference_job(**request)["trainedModelInferenceJobArn"]
    control.advance_clock(60)
    details = _job(client, seeded, arn)["logsStatusDetails"]
    assert "Account 123456789012 is not in the allowedAccountIds" in details


def test_the_filter_pattern_keeps_matching_lines_only(
    cleanrooms_emulator: EmulatorHandle, client: Any, membership: str, make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    seeded = control.seed_membership(membership, trained_model=True, logs_filter_pattern="ERROR|exited")
    control.fail_job("filtered", "AlgorithmError", "bad input row 7")
    request = make_inference_request(name="filtered", trainedModelArn=seeded["trained_model_arn"])
    request["dataSource"] = {"mlInputChannelArn": seeded["ml_input_channel_arn"]}
    arn = client.start_trained_model_inference_job(**request)["trainedModelInferenceJobArn"]
    control.advance_clock(60)
    assert _events(cleanrooms_emulator.client("logs"), INFERENCE_GROUP, arn) == [
        "ERROR AlgorithmError: bad input row 7",
        "Container exited with code 1",
    ]


def test_training_logs_go_to_the_trained_models_group_per_instance_and_version(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]
) -> None:
    created = client.create_trained_model(
        membershipIdentifier=seeded["membership_id"],
        name="churn",
        configuredModelAlgorithmAssociationArn=seeded["configured_model_algorithm_association_arn"],
        resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 2, "volumeSizeInGB": 10},
        dataChannels=[{"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}],
        environment={"EPOCHS": "2"},
    )
    cleanrooms_emulator.control.advance_clock(60)
    logs = cleanrooms_emulator.client("logs")
    model_id = created["trainedModelArn"].rsplit("/", 1)[-1]
    streams = logs.describe_log_streams(logGroupName=TRAINING_GROUP, logStreamNamePrefix=model_id)
    assert [s["logStreamName"] for s in streams["logStreams"]] == [
        f"{model_id}/{created['versionIdentifier']}/algo-1",
        f"{model_id}/{created['versionIdentifier']}/algo-2",
    ]
    messages = _events(logs, TRAINING_GROUP, created["trainedModelArn"])
    assert "[algo-2] Environment: EPOCHS=2" in messages
    assert "[algo-1] Model artifacts saved. Exiting with code 0" in messages


def test_reset_forgets_the_logs(
    cleanrooms_emulator: EmulatorHandle, client: Any, make_inference_request: Any
) -> None:
    arn = client.start_trained_model_inference_job(**make_inference_request(name="gone"))[
        "trainedModelInferenceJobArn"
    ]
    cleanrooms_emulator.control.advance_clock(60)
    logs = cleanrooms_emulator.client("logs")
    assert _events(logs, INFERENCE_GROUP, arn)
    cleanrooms_emulator.control.reset()
    assert logs.describe_log_groups()["logGroups"] == []


def test_last_lines_of_a_job_for_the_demo(
    cleanrooms_emulator: EmulatorHandle, client: Any, make_inference_request: Any
) -> None:
    from airflow_cleanrooms.wait_semantics import TRAINED_MODEL_INFERENCE_JOB
    from demo.run import last_lines

    cleanrooms_emulator.control.fail_job("tail", "AlgorithmError", "out of memory")
    arn = client.start_trained_model_inference_job(**make_inference_request(name="tail"))[
        "trainedModelInferenceJobArn"
    ]
    logs = cleanrooms_emulator.client("logs")
    assert last_lines(logs, TRAINED_MODEL_INFERENCE_JOB, arn) == []  # no group yet
    cleanrooms_emulator.control.advance_clock(60)
    assert last_lines(logs, TRAINED_MODEL_INFERENCE_JOB, arn, count=2) == [
        "ERROR AlgorithmError: out of memory",
        "Container exited with code 1",
    ]
