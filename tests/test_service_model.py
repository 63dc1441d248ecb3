"""The validator reads its rules from the installed botocore model; these tests pin that behaviour."""

from __future__ import annotations

from pathlib import Path

import botocore
import pytest

from airflow_cleanrooms.service_model import (
    RequestValidationError,
    camel_to_snake,
    enum_values,
    find_input_issues,
    input_members,
    service_model,
)

OP = "StartTrainedModelInferenceJob"
MEMBERSHIP = "0b1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
MODEL_ARN = f"arn:aws:cleanrooms-ml:us-east-1:123456789012:membership/{MEMBERSHIP}/trained-model/m1"
CHANNEL_ARN = f"arn:aws:cleanrooms-ml:us-east-1:123456789012:membership/{MEMBERSHIP}/ml-input-channel/c1"


def valid_request() -> dict:
    return {
        "membershipIdentifier": MEMBERSHIP,
        "name": "churn-scores",
        "trainedModelArn": MODEL_ARN,
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "outputConfiguration": {"members": [{"accountId": "123456789012"}], "accept": "text/csv"},
        "dataSource": {"mlInputChannelArn": CHANNEL_ARN},
        "environment": {"MODEL_THRESHOLD": "0.5"},
        "tags": {"team": "growth"},
    }


def paths(request: dict) -> list[str]:
    return [issue.path for issue in find_input_issues(OP, request)]


def _pinned(name: str) -> str | None:
    """The version constraints.txt pins ``name`` to."""
    for line in (Path(__file__).parent.parent / "constraints.txt").read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    return None


def test_installed_model_has_every_member_the_provider_relies_on():
    """Guards the pinned botocore: aiobotocore's cap must not drop members we expose."""
    members = set(input_members(OP))
    assert {
        "membershipIdentifier",
        "name",
        "trainedModelArn",
        "configuredModelAlgorithmAssociationArn",
        "resourceConfig",
        "outputConfiguration",
        "dataSource",
        "description",
        "containerExecutionParameters",
        "environment",
        "kmsKeyArn",
        "tags",
    } <= members
    # Newer members: required of the botocore constraints.txt pins; an older botocore (the lowest
    # stage's 1.37.1) lacks them and the provider offers only what the installed model has.
    if botocore.__version__ == _pinned("botocore"):
        assert {"trainedModelVersionIdentifier", "mlModelInferencePayerAccountId"} <= members
    assert service_model().service_name == "cleanroomsml"


def test_valid_request_has_no_issues():
    assert find_input_issues(OP, valid_request()) == []


@pytest.mark.parametrize(
    ("mutate", "expected_path", "fragment"),
    [
        (lambda r: r.pop("name"), "name", "is required"),
        (lambda r: r.update(name="   "), "name", "does not match"),
        (lambda r: r.update(name="x" * 64), "name", "at most 63"),
        (lambda r: r.update(membershipIdentifier="not-a-uuid"), "membershipIdentifier", "pattern"),
        (lambda r: r["resourceConfig"].update(instanceCount=0), "resourceConfig.instanceCount", "1 to 10"),
        (lambda r: r["resourceConfig"].update(instanceCount="2"), "resourceConfig.instanceCount", "integer"),
        (
            lambda r: r["resourceConfig"].update(instanceType="ml.bogus"),
            "resourceConfig.instanceType",
            "not one of",
        ),
        (lambda r: r["outputConfiguration"].update(members=[]), "outputConfiguration.members", "at least 1"),
        (lambda r: r.update(tags={"aWs:team": "x"}), "tags['aWs:team'] (key)", "aws:"),
        (lambda r: r.update(tags={"k" * 129: "x"}), f"tags[{'k' * 129!r}] (key)", "at most 128"),
        (lambda r: r.update(environment={f"K{i}": "v" for i in range(17)}), "environment", "at most 16"),
        (lambda r: r.update(environment={"K": 1}), "environment['K']", "must be a string"),
        (lambda r: r.update(kmsKeyArn="arn:aws:s3:::bucket/key-of-20-chars"), "kmsKeyArn", "pattern"),
        (lambda r: r.update(resourceConfig="ml.m5.xlarge"), "resourceConfig", "must be an object"),
    ],
)
def test_each_rule_names_the_member(mutate, expected_path, fragment):
    request = valid_request()
    mutate(request)
    issues = find_input_issues(OP, request)
    matching = [i for i in issues if i.path == expected_path]
    assert matching, f"no issue at {expected_path}; got {[str(i) for i in issues]}"
    assert any(fragment in i.message for i in matching)


def test_misspelled_member_gets_a_suggestion():
    request = valid_request()
    request["resourceConfig"] = {"instancetype": "ml.m5.xlarge"}
    messages = [str(i) for i in find_input_issues(OP, request)]
    assert any("did you mean 'instanceType'" in m for m in messages)


def test_enum_and_limits_come_from_the_model():
    shape = service_model().shape_for("InferenceInstanceType")
    assert enum_values("InferenceInstanceType") == list(shape.enum)
    assert "ml.m5.xlarge" in enum_values("InferenceInstanceType")


def test_path_names_rename_top_level_members_and_error_lists_all():
    request = valid_request()
    request["membershipIdentifier"] = "bad"
    request["name"] = ""
    issues = find_input_issues(OP, request, {"membershipIdentifier": "membership_identifier", "name": "name"})
    assert {i.path for i in issues} >= {"membership_identifier", "name"}
    assert "membership_identifier" in str(RequestValidationError(OP, issues))


def test_sensitive_values_are_not_echoed():
    # ParameterMap is marked sensitive in the model; its values must never appear in messages.
    issues = find_input_issues("StartTrainedModelInferenceJob", {**valid_request(), "name": 12345})
    assert any("12345" in str(i) for i in issues)  # non-sensitive values are shown
    from airflow_cleanrooms.service_model import _Validator

    shape = service_model().shape_for("ParameterMap")
    if not shape.metadata.get("sensitive"):
        pytest.skip("ParameterMap is not marked sensitive in this botocore's model (it is from 1.38)")
    found = list(_Validator().value({"secret_key": 99999}, shape, "parameters"))
    assert found and all("99999" not in str(i) for i in found)


def test_camel_to_snake():
    assert camel_to_snake("mlModelInferencePayerAccountId") == "ml_model_inference_payer_account_id"
    assert camel_to_snake("maxPayloadInMB") == "max_payload_in_mb"
    assert camel_to_snake("kmsKeyArn") == "kms_key_arn"
