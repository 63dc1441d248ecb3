"""The validator reads its rules from the installed botocore model; these tests pin that behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from airflow_cleanrooms.service_model import (
    RequestValidationError,
    botocore_version,
    camel_to_snake,
    enum_values,
    find_input_issues,
    find_shape_issues,
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
    if botocore_version() == _pinned("botocore"):
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
    shape = service_model().shape_for("ParameterMap")
    if not shape.metadata.get("sensitive"):
        pytest.skip("ParameterMap is not marked sensitive in this botocore's model (it is from 1.38)")
    found = find_shape_issues("ParameterMap", {"secret_key": 99999}, "parameters")
    assert found and all("99999" not in str(i) for i in found)


def test_camel_to_snake():
    assert camel_to_snake("mlModelInferencePayerAccountId") == "ml_model_inference_payer_account_id"
    assert camel_to_snake("maxPayloadInMB") == "max_payload_in_mb"
    assert camel_to_snake("kmsKeyArn") == "kms_key_arn"


# ---- the model's history: what a newer botocore added, so a refusal names the release to upgrade to ----


def _history() -> dict:
    """``model_history.json`` as the installed package ships it (the wheel's package data in MWAA stages)."""
    import json

    import airflow_cleanrooms

    return json.loads(Path(airflow_cleanrooms.__file__).with_name("model_history.json").read_text())


def _installed_has(shape_name: str, name: str) -> bool | None:
    """Whether the installed model's shape has the member or enum value; ``None`` if it lacks the shape."""
    model = service_model()
    if shape_name not in model.shape_names:
        return None
    shape = model.shape_for(shape_name)
    return name in getattr(shape, "members", {}) or name in (getattr(shape, "enum", None) or [])


def _newer_than_installed() -> list[tuple[str, str, str]]:
    """``(shape, name, release)`` the history records after the installed botocore, in shapes it has."""
    installed = Version(botocore_version())
    return [
        (shape, name, release)
        for shape, names in sorted(_history()["added"].items())
        for name, release in sorted(names.items())
        if Version(release) > installed and _installed_has(shape, name) is False
    ]


def test_model_history_agrees_with_the_installed_botocore():
    """Every CI stage runs another botocore (1.37.1 to the newest): each checks the history at its own."""
    history = _history()
    installed = Version(botocore_version())
    assert Version(history["from"]) <= installed <= Version(history["to"]), (
        f"botocore {installed} is outside the history's {history['from']}..{history['to']}: "
        "run scripts/model-history after moving botocore in a lock"
    )
    wrong = []
    for shape, names in history["added"].items():
        for name, release in names.items():
            has = _installed_has(shape, name)
            if has is None:  # the shape itself is newer than the installed model
                if installed >= Version(release):
                    wrong.append(f"{shape} (needed for {name}, added in {release}) is missing")
            elif has != (installed >= Version(release)):
                wrong.append(f"{shape}.{name}: recorded as added in {release}, installed has it: {has}")
    assert wrong == []
    # Two that users of MWAA's images meet (3.3.1 pins botocore 1.43.56), as the issue names them.
    added = history["added"]
    assert added["StartTrainedModelInferenceJobRequest"]["mlModelInferencePayerAccountId"] == "1.43.13"
    assert added["WorkerComputeType"]["CR.8X"] == "1.43.57"


def test_a_value_or_member_a_newer_botocore_added_is_refused_naming_that_release():
    newer = _newer_than_installed()
    if not newer:
        pytest.skip(f"botocore {botocore_version()} has everything the history records")
    model = service_model()
    for shape_name, name, release in newer:
        shape = model.shape_for(shape_name)
        value = {name: "x"} if shape.type_name == "structure" else name
        # A structure also reports its required members; the issue about ``name`` is the one at its path.
        at = f"field.{name}" if shape.type_name == "structure" else "field"
        (issue,) = [issue for issue in find_shape_issues(shape_name, value, "field") if issue.path == at]
        assert f"botocore {release} added {name!r}" in issue.message, issue
        assert f"this is botocore {botocore_version()}" in issue.message, issue
        assert f"to {release} or later" in issue.message, issue


def test_an_operator_argument_a_newer_botocore_added_names_the_release():
    from airflow_cleanrooms.compat import reject_arguments_the_model_lacks
    from airflow_cleanrooms.operators.request import argument_members

    operations = ("StartTrainedModelInferenceJob", "CreateTrainedModel", "CreateMLInputChannel")
    lacking = [
        (operation, name, release)
        for operation in operations
        for shape, name, release in _newer_than_installed()
        if shape == f"{operation}Request"
    ]
    if not lacking:
        pytest.skip(f"botocore {botocore_version()} has every argument the operators offer")
    for operation, name, release in lacking:
        with pytest.raises(TypeError) as raised:
            arguments = {camel_to_snake(name): "x"}
            reject_arguments_the_model_lacks(operation, arguments, argument_members(operation))
        message = str(raised.value)
        assert f"has no {camel_to_snake(name)} (botocore {release} added {name})" in message
        assert f"upgrade botocore (and aiobotocore) to {release} or later to use it" in message
