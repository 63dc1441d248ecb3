"""Every supported operation, driven with unmodified boto3 against the emulator."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cleanrooms.service_model import service_model

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle

ROLE = "arn:aws:iam::123456789012:role/ml"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/algo:1"


def pattern(shape_name: str) -> re.Pattern[str]:
    return re.compile(service_model().shape_for(shape_name).metadata["pattern"])


def test_inference_job_with_every_option_round_trips(
    client: Any, seeded: dict[str, str], make_inference_request: Any, required_check: Any
) -> None:
    request = make_inference_request(
        trainedModelVersionIdentifier=seeded["trained_model_version_identifier"],
        configuredModelAlgorithmAssociationArn=seeded["configured_model_algorithm_association_arn"],
        description="scores yesterday's users",
        containerExecutionParameters={"maxPayloadInMB": 10},
        environment={"MODE": "batch", "RUN_ID": "manual__2026"},
        kmsKeyArn="arn:aws:kms:us-east-1:123456789012:key/abcd-1234",
        tags={"team": "ads", "run": "42"},
        mlModelInferencePayerAccountId="123456789012",
    )
    started = client.start_trained_model_inference_job(**request)
    arn = started["trainedModelInferenceJobArn"]
    assert pattern("TrainedModelInferenceJobArn").fullmatch(arn)
    assert f":membership/{seeded['membership_id']}/trained-model-inference-job/" in arn

    job = client.get_trained_model_inference_job(
        membershipIdentifier=seeded["membership_id"], trainedModelInferenceJobArn=arn
    )
    assert required_check("GetTrainedModelInferenceJob", job) == []
    assert job["status"] == "CREATE_PENDING"
    assert isinstance(job["createTime"], datetime) and isinstance(job["updateTime"], datetime)
    for member in (
        "name",
        "trainedModelArn",
        "trainedModelVersionIdentifier",
        "configuredModelAlgorithmAssociationArn",
        "resourceConfig",
        "outputConfiguration",
        "dataSource",
        "description",
        "containerExecutionParameters",
        "environment",
        "kmsKeyArn",
        "tags",
        "mlModelInferencePayerAccountId",
    ):
        assert job[member] == request[member], member
    assert job["membershipIdentifier"] == seeded["membership_id"]

    listed = client.list_trained_model_inference_jobs(membershipIdentifier=seeded["membership_id"])
    assert required_check("ListTrainedModelInferenceJobs", listed) == []
    assert [j["trainedModelInferenceJobArn"] for j in listed["trainedModelInferenceJobs"]] == [arn]


def test_inference_job_lifecycle_follows_the_clock(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str], make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    control.set_timings(pending_seconds=100, running_seconds=1000)
    arn = client.start_trained_model_inference_job(**make_inference_request())["trainedModelInferenceJobArn"]

    def status() -> str:
        job = client.get_trained_model_inference_job(
            membershipIdentifier=seeded["membership_id"], trainedModelInferenceJobArn=arn
        )
        return str(job["status"])

    seen = [status()]
    control.advance_clock(150)
    seen.append(status())
    control.advance_clock(1000)
    seen.append(status())
    assert seen == ["CREATE_PENDING", "CREATE_IN_PROGRESS", "ACTIVE"]


def test_cancel_goes_through_cancel_states_to_inactive(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str], make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    control.set_timings(pending_seconds=100, running_seconds=1000, cancel_seconds=10)
    arn = client.start_trained_model_inference_job(**make_inference_request())["trainedModelInferenceJobArn"]
    key = {"membershipIdentifier": seeded["membership_id"], "trainedModelInferenceJobArn": arn}
    client.cancel_trained_model_inference_job(**key)
    seen = [client.get_trained_model_inference_job(**key)["status"]]
    control.advance_clock(15)
    seen.append(client.get_trained_model_inference_job(**key)["status"])
    control.advance_clock(10)
    seen.append(client.get_trained_model_inference_job(**key)["status"])
    assert seen == ["CANCEL_PENDING", "CANCEL_IN_PROGRESS", "INACTIVE"]
    # A finished job cannot be cancelled again.
    with pytest.raises(client.exceptions.ConflictException):
        client.cancel_trained_model_inference_job(**key)


def test_trained_model_versions(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str], required_check: Any
) -> None:
    membership = seeded["membership_id"]
    cleanrooms_emulator.control.set_timings(pending_seconds=0, training_seconds=100)
    create = {
        "membershipIdentifier": membership,
        "name": "churn",
        "configuredModelAlgorithmAssociationArn": seeded["configured_model_algorithm_association_arn"],
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "volumeSizeInGB": 20, "instanceCount": 1},
        "dataChannels": [{"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}],
        "hyperparameters": {"epochs": "3"},
        "environment": {"LOG": "debug"},
        "stoppingCondition": {"maxRuntimeInSeconds": 3600},
        "trainingInputMode": "File",
        "description": "v1",
        "tags": {"team": "ads"},
    }
    first = client.create_trained_model(**create)
    arn = first["trainedModelArn"]
    assert pattern("TrainedModelArn").fullmatch(arn)
    model = client.get_trained_model(membershipIdentifier=membership, trainedModelArn=arn)
    assert required_check("GetTrainedModel", model) == []
    assert model["status"] == "CREATE_IN_PROGRESS"
    assert model["versionIdentifier"] == first["versionIdentifier"]
    assert model["hyperparameters"] == {"epochs": "3"}

    # Same name while the first is training: refused.
    with pytest.raises(client.exceptions.ConflictException):
        client.create_trained_model(**create)
    # Incremental training on a model that is not ACTIVE yet: refused.
    incremental = {
        **create,
        "incrementalTrainingDataChannels": [{"trainedModelArn": arn, "channelName": "base"}],
    }
    with pytest.raises(client.exceptions.ConflictException):
        client.create_trained_model(**incremental)

    cleanrooms_emulator.control.advance_clock(200)
    second = client.create_trained_model(**{**incremental, "description": "v2"})
    assert second["trainedModelArn"] == arn
    assert second["versionIdentifier"] != first["versionIdentifier"]

    versions = client.list_trained_model_versions(membershipIdentifier=membership, trainedModelArn=arn)
    assert required_check("ListTrainedModelVersions", versions) == []
    by_version = {v["versionIdentifier"]: v["status"] for v in versions["trainedModels"]}
    assert by_version == {
        first["versionIdentifier"]: "ACTIVE",
        second["versionIdentifier"]: "CREATE_IN_PROGRESS",
    }
    only_active = client.list_trained_model_versions(
        membershipIdentifier=membership, trainedModelArn=arn, status="ACTIVE"
    )
    assert [v["versionIdentifier"] for v in only_active["trainedModels"]] == [first["versionIdentifier"]]

    old = client.get_trained_model(
        membershipIdentifier=membership, trainedModelArn=arn, versionIdentifier=first["versionIdentifier"]
    )
    assert old["description"] == "v1"
    latest = client.get_trained_model(membershipIdentifier=membership, trainedModelArn=arn)
    assert latest["description"] == "v2"
    assert latest["incrementalTrainingDataChannels"] == [
        {"channelName": "base", "versionIdentifier": first["versionIdentifier"], "modelName": "churn"}
    ]

    models = client.list_trained_models(membershipIdentifier=membership)["trainedModels"]
    assert required_check("ListTrainedModels", {"trainedModels": models}) == []
    assert sorted(m["trainedModelArn"] for m in models) == sorted({arn, seeded["trained_model_arn"]})

    client.cancel_trained_model(
        membershipIdentifier=membership, trainedModelArn=arn, versionIdentifier=second["versionIdentifier"]
    )
    latest = client.get_trained_model(membershipIdentifier=membership, trainedModelArn=arn)
    assert latest["status"] == "CANCEL_PENDING"
    old = client.get_trained_model(
        membershipIdentifier=membership, trainedModelArn=arn, versionIdentifier=first["versionIdentifier"]
    )
    assert old["status"] == "ACTIVE"


def test_inference_on_a_specific_model_version(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str], make_inference_request: Any
) -> None:
    request = make_inference_request(trainedModelVersionIdentifier=seeded["trained_model_version_identifier"])
    arn = client.start_trained_model_inference_job(**request)["trainedModelInferenceJobArn"]
    jobs = client.list_trained_model_inference_jobs(
        membershipIdentifier=seeded["membership_id"],
        trainedModelArn=seeded["trained_model_arn"],
        trainedModelVersionIdentifier=seeded["trained_model_version_identifier"],
    )["trainedModelInferenceJobs"]
    assert [j["trainedModelInferenceJobArn"] for j in jobs] == [arn]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.start_trained_model_inference_job(
            **make_inference_request(name="other", trainedModelVersionIdentifier=seeded["membership_id"])
        )


def test_algorithm_association_and_channel(
    cleanrooms_emulator: EmulatorHandle, client: Any, membership: str, required_check: Any
) -> None:
    algorithm = client.create_configured_model_algorithm(
        name="algo",
        roleArn=ROLE,
        trainingContainerConfig={"imageUri": IMAGE, "entrypoint": ["python"], "arguments": ["train.py"]},
        inferenceContainerConfig={"imageUri": IMAGE},
        tags={"k": "v"},
    )["configuredModelAlgorithmArn"]
    assert pattern("ConfiguredModelAlgorithmArn").fullmatch(algorithm)
    got = client.get_configured_model_algorithm(configuredModelAlgorithmArn=algorithm)
    assert required_check("GetConfiguredModelAlgorithm", got) == []
    assert got["trainingContainerConfig"]["entrypoint"] == ["python"]
    assert got["tags"] == {"k": "v"}

    association = client.create_configured_model_algorithm_association(
        membershipIdentifier=membership, configuredModelAlgorithmArn=algorithm, name="assoc"
    )["configuredModelAlgorithmAssociationArn"]
    assert pattern("ConfiguredModelAlgorithmAssociationArn").fullmatch(association)
    got = client.get_configured_model_algorithm_association(
        membershipIdentifier=membership, configuredModelAlgorithmAssociationArn=association
    )
    assert required_check("GetConfiguredModelAlgorithmAssociation", got) == []
    assert got["configuredModelAlgorithmArn"] == algorithm

    cleanrooms_emulator.control.set_timings(pending_seconds=0, channel_seconds=0)
    channel = client.create_ml_input_channel(
        membershipIdentifier=membership,
        configuredModelAlgorithmAssociations=[association],
        inputChannel={
            "dataSource": {"protectedQueryInputParameters": {"sqlParameters": {"queryString": "SELECT 1"}}},
            "roleArn": ROLE,
        },
        name="users",
        retentionInDays=7,
    )["mlInputChannelArn"]
    assert pattern("MLInputChannelArn").fullmatch(channel)
    got = client.get_ml_input_channel(membershipIdentifier=membership, mlInputChannelArn=channel)
    assert required_check("GetMLInputChannel", got) == []
    assert got["status"] == "ACTIVE"
    assert got["retentionInDays"] == 7
    listed = client.list_ml_input_channels(membershipIdentifier=membership)
    assert required_check("ListMLInputChannels", listed) == []
    assert [c["mlInputChannelArn"] for c in listed["mlInputChannelsList"]] == [channel]


def test_tags(client: Any, seeded: dict[str, str], make_inference_request: Any) -> None:
    arn = client.start_trained_model_inference_job(**make_inference_request(tags={"a": "1"}))[
        "trainedModelInferenceJobArn"
    ]
    client.tag_resource(resourceArn=arn, tags={"b": "2", "c": "3"})
    client.untag_resource(resourceArn=arn, tagKeys=["a", "c"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}
    job = client.get_trained_model_inference_job(
        membershipIdentifier=seeded["membership_id"], trainedModelInferenceJobArn=arn
    )
    assert job["tags"] == {"b": "2"}
    missing = arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(resourceArn=missing)


@pytest.mark.emulator_limits(
    "off", reason="7 jobs and 7 models in flight in one membership, started back to back, to fill 3 pages"
)
@pytest.mark.parametrize(
    ("operation", "result_key"),
    [
        ("list_trained_model_inference_jobs", "trainedModelInferenceJobs"),
        ("list_trained_models", "trainedModels"),
    ],
)
def test_pagination(
    cleanrooms_emulator: EmulatorHandle,
    client: Any,
    seeded: dict[str, str],
    make_inference_request: Any,
    operation: str,
    result_key: str,
) -> None:
    membership = seeded["membership_id"]
    for index in range(7):
        client.start_trained_model_inference_job(**make_inference_request(name=f"job-{index}"))
        client.create_trained_model(
            membershipIdentifier=membership,
            name=f"model-{index}",
            configuredModelAlgorithmAssociationArn=seeded["configured_model_algorithm_association_arn"],
            resourceConfig={"instanceType": "ml.m5.xlarge", "volumeSizeInGB": 1},
            dataChannels=[{"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}],
        )
    pages = [
        page[result_key]
        for page in client.get_paginator(operation).paginate(
            membershipIdentifier=membership, PaginationConfig={"PageSize": 3}
        )
    ]
    expected_total = 7 if operation == "list_trained_model_inference_jobs" else 8  # + the seeded model
    assert [len(page) for page in pages] == [3, 3, expected_total - 6]
    names = [item["name"] for page in pages for item in page]
    assert len(set(names)) == expected_total

    first = getattr(client, operation)(membershipIdentifier=membership, maxResults=3)
    assert "nextToken" in first
    everything = getattr(client, operation)(membershipIdentifier=membership, maxResults=100)
    assert "nextToken" not in everything
    assert len(everything[result_key]) == expected_total


def test_list_algorithms_and_associations(client: Any, seeded: dict[str, str], required_check: Any) -> None:
    algorithms = client.list_configured_model_algorithms()
    assert required_check("ListConfiguredModelAlgorithms", algorithms) == []
    assert [a["configuredModelAlgorithmArn"] for a in algorithms["configuredModelAlgorithms"]] == [
        seeded["configured_model_algorithm_arn"]
    ]
    associations = client.list_configured_model_algorithm_associations(
        membershipIdentifier=seeded["membership_id"]
    )
    assert required_check("ListConfiguredModelAlgorithmAssociations", associations) == []
    assert [
        a["configuredModelAlgorithmAssociationArn"]
        for a in associations["configuredModelAlgorithmAssociations"]
    ] == [seeded["configured_model_algorithm_association_arn"]]


def test_ml_configuration_put_get_delete(client: Any, membership: str, required_check: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException, match=membership):
        client.get_ml_configuration(membershipIdentifier=membership)
    location = {"destination": {"s3Destination": {"s3Uri": "s3://scores/weekly/"}}, "roleArn": ROLE}
    client.put_ml_configuration(membershipIdentifier=membership, defaultOutputLocation=location)
    config = client.get_ml_configuration(membershipIdentifier=membership)
    assert required_check("GetMLConfiguration", config) == []
    assert config["defaultOutputLocation"] == location
    assert config["membershipIdentifier"] == membership
    moved = {**location, "destination": {"s3Destination": {"s3Uri": "s3://scores/daily/"}}}
    client.put_ml_configuration(membershipIdentifier=membership, defaultOutputLocation=moved)
    again = client.get_ml_configuration(membershipIdentifier=membership)
    assert again["defaultOutputLocation"] == moved
    assert again["createTime"] == config["createTime"] and again["updateTime"] >= config["updateTime"]
    client.delete_ml_configuration(membershipIdentifier=membership)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.delete_ml_configuration(membershipIdentifier=membership)


def test_operations_the_emulator_does_not_serve_say_so(client: Any, membership: str) -> None:
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.list_audience_models()
    assert excinfo.value.response["Error"]["Code"] == "NotImplemented"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_a_trained_model_name_is_free_again_once_the_model_has_finished(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]
) -> None:
    request = {
        "membershipIdentifier": seeded["membership_id"],
        "name": "weekly",
        "configuredModelAlgorithmAssociationArn": seeded["configured_model_algorithm_association_arn"],
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "volumeSizeInGB": 1},
        "dataChannels": [{"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}],
    }
    first = client.create_trained_model(**request)["trainedModelArn"]
    with pytest.raises(client.exceptions.ConflictException):
        client.create_trained_model(**request)
    cleanrooms_emulator.control.advance_clock(3600)
    second = client.create_trained_model(**request)["trainedModelArn"]
    assert second != first
